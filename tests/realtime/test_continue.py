"""A past conversation continued through the app's engine client (`RealtimeEngine.restore`) against a
real `omnidesk serve`: the exchanges go in as `conversation.item.create` (checked against the
protocol's models), the engine prefills them without generating, and the next reply reads them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from app.client_history import Exchange
from app.engine_client import LoadRequest
from app.realtime_client import RealtimeEngine
from model.media_input import UserTurn
from tests.app.helpers import SHORT_PROMPT
from tests.engine_helpers import tone
from tests.realtime.conformance import check
from tests.realtime.conftest import Served
from tests.realtime.test_app_client import finished, loaded, make_client

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def remote(qtbot: Any, served: Served) -> Iterator[tuple[RealtimeEngine, Any, list[Any]]]:
    traced: list[Any] = []
    client, collector, _speaker = make_client(served.url, traced)
    loaded(qtbot, client, collector, LoadRequest(source="", system_prompt=SHORT_PROMPT))
    yield client, collector, traced
    assert client.stop()


def test_restored_exchanges_are_the_context_of_the_next_reply(qtbot: Any, remote: Any) -> None:
    client, collector, traced = remote
    client.respond(1, UserTurn(text="hello"))
    fresh = finished(qtbot, collector, 1)
    spoken = (tone(2.0) * 32767).astype(np.int16)
    past = [
        Exchange(2, "", spoken, (), "a reply that was spoken to", False),
        Exchange(3, "tell me about pelicans", None, (np.zeros((64, 64, 3), np.uint8),), "they fly", False),
        Exchange(4, "and quinces?", None, (), "they are fruit", True),
    ]
    client.new_conversation()
    client.restore(past)
    client.respond(5, UserTurn(text="hello"))
    after = finished(qtbot, collector, 5)
    # the same turn as the first, now after three exchanges (2 s of audio alone is 25 tokens)
    assert after.prompt_tokens >= fresh.prompt_tokens + 25 + 3 * 8
    assert [(m.role, m.turn_id) for m in client.history()] == [
        ("user", 2), ("assistant", 2), ("user", 3), ("assistant", 3), ("user", 4), ("assistant", 4),
        ("user", 5), ("assistant", 5),
    ]  # fmt: skip
    created = [e for side, e in traced if side == "sent" and e["type"] == "conversation.item.create"]
    assert [e["item"]["role"] for e in created][-7:] == ["user", "assistant"] * 3 + ["user"]
    for side, event in traced:
        check(event, "client" if side == "sent" else "server")
