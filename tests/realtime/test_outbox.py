"""A client that stops reading cannot make the server buffer without bound: the engine thread waits
at the outbox's limit and gives up after the send timeout, and the connection is marked stalled."""

from __future__ import annotations

import asyncio
import threading

import pytest

from realtime import server


def test_the_outbox_is_bounded_and_gives_up_on_a_client_that_stopped_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "SEND_TIMEOUT_S", 0.2)
    loop = asyncio.new_event_loop()
    outbox: list[server.Outbox] = []

    async def make() -> None:
        outbox.append(server.Outbox(asyncio.get_running_loop()))

    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    asyncio.run_coroutine_threadsafe(make(), loop).result(5)  # made on the loop's thread, as in the server
    sent, failure = 0, None
    try:
        for i in range(server.OUTGOING_EVENTS + 10):  # nobody pumps: the client reads nothing
            outbox[0].send({"type": "response.output_audio.delta", "delta": "AAAA", "n": i})
            sent += 1
    except ConnectionError as error:
        failure = error
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
    assert sent == server.OUTGOING_EVENTS and failure is not None
    assert outbox[0].queue.qsize() == server.OUTGOING_EVENTS
    assert outbox[0].stalled.is_set()
