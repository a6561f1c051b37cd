"""Counting what a step costs a GPU without one: ATen operations dispatched, host syncs, and which of
them fall inside regions the engine captures as CUDA graphs.

`OpCounter` is a `TorchDispatchMode`: every operation the engine dispatches passes through it. On the
meta device (the real model's sizes, no memory) it also stands in for the values a host sync would
read back, so data-dependent Python code keeps running. `captured_region` marks the code a
`model.step_graph.StepGraph` replays as one graph on CUDA; the counter keeps those ops apart, since
Python launches the whole region with one call there.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_REGION: contextvars.ContextVar[tuple[str, object] | None] = contextvars.ContextVar(
    "captured_region", default=None
)


@contextlib.contextmanager
def captured_region(name: str) -> Iterator[None]:
    """Mark the code inside as one captured region (one CUDA graph replay on a GPU)."""
    token = _REGION.set((name, object()))
    try:
        yield
    finally:
        _REGION.reset(token)


def _sync_ops() -> frozenset[Any]:
    """Operations whose result the host must wait for (a value or a data-dependent shape)."""
    aten = torch.ops.aten
    return frozenset(
        {
            aten._local_scalar_dense.default,
            aten.item.default,
            aten.nonzero.default,
            aten.nonzero_numpy.default,
            aten.where.default,
            aten._unique2.default,
            aten.unique_dim.default,
            aten.unique_consecutive.default,
            aten.masked_select.default,
            aten.equal.default,
            aten.is_nonzero.default,
            aten.repeat_interleave.Tensor,
        }
    )


@dataclass
class OpCount:
    """What one counted span dispatched; `launches` leaves out views (no kernel)."""

    ops: int = 0
    launches: int = 0
    syncs: int = 0
    captured_launches: int = 0
    captured_syncs: int = 0
    region_calls: int = 0
    sync_ops: Counter[str] = field(default_factory=Counter)
    signature: list[tuple[str, tuple[tuple[int, ...], ...]]] = field(default_factory=list)

    @property
    def python_launches(self) -> int:
        """Launches Python still makes one by one: those outside captured regions plus one per replay."""
        return self.launches - self.captured_launches + self.region_calls


class OpCounter(TorchDispatchMode):
    """Count dispatched ATen ops and host syncs; on meta tensors, fake what a sync would read back.

    `signature=True` records each launch's op name and input shapes (to check that a step's shapes do
    not change from step to step).
    """

    def __init__(self, signature: bool = False) -> None:
        super().__init__()
        self.count = OpCount()
        self._record = signature
        self._syncs = _sync_ops()
        self._last_region: tuple[str, object] | None = None

    def __enter__(self) -> OpCounter:
        _ACTIVE.append(self)
        return super().__enter__()  # type: ignore[no-any-return]

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.remove(self)
        super().__exit__(*exc)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        on_host = all(a.device.type == "cpu" for a in args if isinstance(a, torch.Tensor))
        sync = (func in self._syncs and not on_host) or _is_readback(func, args, kwargs)
        self._tally(func, args, sync)
        fake = _meta_stand_in(func, args, kwargs, sync)
        if fake is _NOT_FAKED:
            return func(*args, **kwargs)
        # A stand-in never reaches the counters outside this one: count it there too.
        for outer in _ACTIVE[: _ACTIVE.index(self)]:
            outer._tally(func, args, sync)
        return fake

    def _tally(self, func: Any, args: Any, sync: bool) -> None:
        region = _REGION.get()
        count = self.count
        count.ops += 1
        if region is not None and region is not self._last_region:
            count.region_calls += 1
        self._last_region = region
        if not getattr(func, "is_view", False):
            count.launches += 1
            if region is not None:
                count.captured_launches += 1
            if self._record:
                shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
                count.signature.append((str(func), shapes))
        if sync:
            count.syncs += 1
            count.sync_ops[str(func)] += 1
            if region is not None:
                count.captured_syncs += 1


_ACTIVE: list[OpCounter] = []
_NOT_FAKED = object()


def _meta_stand_in(func: Any, args: Any, kwargs: Any, sync: bool) -> Any:
    """On the meta device: a stand-in result for ops whose meta kernel cannot run, else `_NOT_FAKED`."""
    if not any(isinstance(a, torch.Tensor) and a.is_meta for a in args):
        return _NOT_FAKED
    if sync:
        return _fake_sync(func, args, kwargs)
    if func is torch.ops.aten.exponential_.default:  # no generator on the meta device
        return args[0]
    if func is torch.ops.aten.multinomial.default:  # its meta kernel reads the values
        x, samples = args[0], args[1]
        return torch.zeros((*x.shape[:-1], samples), dtype=torch.long, device=x.device)
    return _NOT_FAKED


_COPIES = (torch.ops.aten._to_copy.default, torch.ops.aten.to.dtype_layout, torch.ops.aten.copy_.default)


def _is_readback(func: Any, args: Any, kwargs: Any) -> bool:
    """A copy from an accelerator (or the meta device) to host memory."""
    if func not in _COPIES:
        return False
    source = args[1] if func is torch.ops.aten.copy_.default else args[0]
    target_device = args[0].device if func is torch.ops.aten.copy_.default else kwargs.get("device")
    if not isinstance(source, torch.Tensor) or target_device is None:
        return False
    return source.device.type != "cpu" and torch.device(target_device).type == "cpu"


def _fake_sync(func: Any, args: Any, kwargs: Any) -> Any:
    """Plausible stand-ins for values a meta tensor does not have: zeros, every element distinct
    for `unique`, one hit for `nonzero` (one token of a decode step picked each expert once)."""
    aten = torch.ops.aten
    x = args[0]
    if func in (aten._local_scalar_dense.default, aten.item.default):
        return False if x.dtype == torch.bool else (0 if not x.is_floating_point() else 0.0)
    if func is aten.nonzero.default:
        return torch.zeros((1, x.dim()), dtype=torch.long, device=x.device)
    if func in (aten.nonzero_numpy.default, aten.where.default):
        return tuple(torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(x.dim()))
    if func in (aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default):
        empty = torch.empty(0, dtype=torch.long, device=x.device)
        return torch.empty(x.numel(), dtype=x.dtype, device=x.device), empty, empty
    if func is aten.equal.default or func is aten.is_nonzero.default:
        return False
    if func in _COPIES:
        source = args[1] if func is aten.copy_.default else x
        values = torch.arange(source.numel()).view(source.shape)
        dtype = kwargs.get("dtype") or source.dtype
        values = values.to(dtype)
        if func is aten.copy_.default:
            return x.copy_(values)
        return values
    return torch.empty(0, dtype=x.dtype, device=x.device)


@contextlib.contextmanager
def counting(signature: bool = False) -> Iterator[OpCount]:
    """`with counting() as count:` counts everything dispatched inside."""
    counter = OpCounter(signature=signature)
    with counter:
        yield counter.count
