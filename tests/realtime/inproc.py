"""`run_server` in a thread of the test process, on a model the test already holds, so a test can
look at the server's engine (its token ids and codec codes) beside an engine of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from realtime.host import LoadOptions, ModelHost
from realtime.server import ServerState, run_server


def greedy_host(demo: Any, max_text_tokens: int = 80, max_codec_frames: int = 6) -> ModelHost:
    """The demo model served greedily with short replies, as the tool tests serve it."""
    from model.sampling import SamplingPlan

    plan = SamplingPlan.from_generation_config(demo.model.generation_config).greedy()
    limits = {"sampling": plan, "max_text_tokens": max_text_tokens, "max_codec_frames": max_codec_frames}
    return ModelHost(demo.model, demo.processor, {"source": "demo"}, limits)


@contextmanager
def server_thread(host: ModelHost, api_key: str | None = None) -> Iterator[tuple[str, ServerState]]:
    state = ServerState(LoadOptions(), api_key, host=host, status="ready")
    loop = asyncio.new_event_loop()
    bound: list[int] = []
    started = threading.Event()

    def ready(port: int) -> None:
        bound.append(port)
        started.set()

    task: list[Any] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        task.append(loop.create_task(run_server(state, "127.0.0.1", 0, ready)))
        with suppress(asyncio.CancelledError):
            loop.run_until_complete(task[0])

    thread = threading.Thread(target=run, name="test-server", daemon=True)
    thread.start()
    assert started.wait(30), "the server did not start"
    try:
        yield f"ws://127.0.0.1:{bound[0]}/v1/realtime", state
    finally:
        loop.call_soon_threadsafe(task[0].cancel)
        thread.join(10)
