"""A decode step with static shapes, replayed as a CUDA graph on a GPU and run eagerly elsewhere.

`StepGraph(name, fn, device)` calls `fn(*tensors)` with the tensors on `device` (small inputs such as
positions may come from the host). On CUDA (unless graphs are switched off) the first call
warms `fn` up on a side stream and captures it; later calls copy their inputs into the captured
inputs, replay the graph (one launch from Python) and return copies of its outputs. A call whose
input shapes differ captures again (the code predictor's region never does). Elsewhere `fn` runs
eagerly inside `op_count.captured_region(name)`, so counting on the CPU or the meta device sees
which operations a GPU would replay as one graph.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

from model.op_count import captured_region

WARMUP_RUNS = 2
_graphs_enabled = os.environ.get("OMNIDESK_CUDA_GRAPHS", "1") != "0"


def set_cuda_graphs(enabled: bool) -> None:
    """Switch graph capture on or off for steps built afterwards (bench.gpu compares both)."""
    global _graphs_enabled
    _graphs_enabled = enabled


def cuda_graphs_enabled() -> bool:
    return _graphs_enabled


Outputs = tuple[torch.Tensor, ...]


class StepGraph:
    """`fn` as one captured region; `fn` must take and return tensors and never read values back."""

    def __init__(self, name: str, fn: Callable[..., Outputs], device: torch.device) -> None:
        self.name = name
        self.fn = fn
        self.device = device
        self.capture = device.type == "cuda" and _graphs_enabled
        self._graph: torch.cuda.CUDAGraph | None = None
        self._inputs: list[torch.Tensor] = []
        self._outputs: Outputs = ()
        self._shapes: list[torch.Size] = []

    def __call__(self, *inputs: torch.Tensor) -> Outputs:
        if not self.capture:
            with captured_region(self.name):
                return self.fn(*(t.to(self.device) for t in inputs))
        if self._graph is None or [t.shape for t in inputs] != self._shapes:
            self._record(inputs)
        for static, value in zip(self._inputs, inputs, strict=True):
            static.copy_(value)
        assert self._graph is not None
        self._graph.replay()
        return tuple(t.clone() for t in self._outputs)

    def _record(self, inputs: Sequence[torch.Tensor]) -> None:
        """Warm up on a side stream, then capture `fn` on static copies of `inputs`."""
        self._inputs = [t.to(self.device, copy=True) for t in inputs]
        self._shapes = [t.shape for t in inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_RUNS):
                self.fn(*self._inputs)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._outputs = self.fn(*self._inputs)
        self._graph = graph
