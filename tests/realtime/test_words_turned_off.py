"""The app's setting `[conversation] transcribe = false` over the Realtime protocol (issue 16): the
client's load asks `omnidesk serve` for no input transcription (`audio.input.transcription: null`),
the server says so, and a spoken turn brings no transcription event; its history keeps "(spoken)"."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.engine_client import LoadRequest
from model.media_input import UserTurn
from tests.app.helpers import SHORT_PROMPT
from tests.engine_helpers import tone
from tests.realtime.conformance import check
from tests.realtime.conftest import Served
from tests.realtime.test_app_client import finished, loaded, make_client

pytestmark = pytest.mark.timeout(300)


def test_no_words_come_back_when_the_setting_is_off(qtbot: Any, served: Served) -> None:
    traced: list[tuple[str, dict[str, Any]]] = []
    client, collector, _speaker = make_client(served.url, traced)
    try:
        loaded(qtbot, client, collector, LoadRequest(source="", system_prompt=SHORT_PROMPT, transcribe=False))
        client.respond(1, UserTurn(audio=(tone(2.0) * 32767).astype(np.int16)))
        finished(qtbot, collector, 1)
    finally:
        assert client.stop()
    (update,) = [e for side, e in traced if side == "sent" and e["type"] == "session.update"]
    assert update["session"]["audio"]["input"] == {"transcription": None}
    confirmed = [e for side, e in traced if side == "received" and e["type"] == "session.updated"]
    assert confirmed and confirmed[-1]["session"]["audio"]["input"]["transcription"] is None
    assert not [e for _, e in traced if e["type"].startswith("conversation.item.input_audio_transcription")]
    assert collector.of("transcript") == []
    user = client.history()[0]
    assert (user.role, user.text) == ("user", "(spoken)")
    for side, event in traced:
        check(event, "client" if side == "sent" else "server")
