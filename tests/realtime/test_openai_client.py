"""The `openai` package's own Realtime client against `omnidesk serve --model DEMO`: a spoken turn,
a typed turn, a cancel and a truncate; every server event checked against the package's models."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from tests.engine_helpers import tone
from tests.realtime.conformance import check
from tests.realtime.conftest import Served, text_item

pytestmark = pytest.mark.timeout(300)


@contextmanager
def openai_connection(served: Served) -> Iterator[Any]:
    from openai import OpenAI

    client = OpenAI(api_key=served.api_key or "unused", websocket_base_url=served.base_url)
    with client.realtime.connect(model="omnidesk") as connection:
        yield connection


def events_until(connection: Any, last: str) -> list[dict[str, Any]]:
    """Raw server events up to and including the first of type `last`, each checked."""
    events: list[dict[str, Any]] = []
    while True:
        event = json.loads(connection.recv_bytes())
        check(event, "server")
        events.append(event)
        if event["type"] == last:
            return events
        assert event["type"] != "error", event


def ready(connection: Any) -> dict[str, Any]:
    return events_until(connection, "session.created")[-1]


def pcm24(seconds: float) -> str:
    samples = np.interp(
        np.arange(int(seconds * 24_000)) / 1.5, np.arange(int(seconds * 16_000)), tone(seconds)
    )
    return base64.b64encode((samples * 32767).astype("<i2").tobytes()).decode()


def reply_audio(events: list[dict[str, Any]]) -> np.ndarray:
    raw = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    return np.frombuffer(raw, "<i2")


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_spoken_turn_gets_speech_and_its_transcript(served: Served) -> None:
    with openai_connection(served) as connection:
        session = ready(connection)["session"]
        assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24_000}
        audio = pcm24(2.0)
        for i in range(0, len(audio), 16_000):
            connection.input_audio_buffer.append(audio=audio[i : i + 16_000])
        connection.input_audio_buffer.commit()
        committed = events_until(connection, "conversation.item.done")
        assert types(committed)[0] == "input_audio_buffer.committed"
        connection.response.create()
        events = events_until(connection, "response.done")
    done = events[-1]["response"]
    assert done["status"] == "completed"
    transcript = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    final = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
    assert transcript and final["transcript"] == transcript
    speech = reply_audio(events)
    assert speech.size >= 1920 and np.abs(speech).max() > 100  # at least a codec frame of sound
    assert done["output"][0]["content"][0] == {"type": "output_audio", "transcript": transcript}
    order = types(events)
    assert order.index("response.output_item.added") < order.index("response.output_audio.delta")


def test_typed_turn_and_text_only_replies(served: Served) -> None:
    with openai_connection(served) as connection:
        ready(connection)
        connection.conversation.item.create(item=text_item("Hello!"))
        connection.response.create()
        spoken = events_until(connection, "response.done")
        assert reply_audio(spoken).size > 0
        connection.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        assert events_until(connection, "session.updated")[-1]["session"]["output_modalities"] == ["text"]
        connection.conversation.item.create(item=text_item("And now?"))
        connection.response.create()
        written = events_until(connection, "response.done")
    assert "response.output_text.delta" in types(written)
    assert reply_audio(written).size == 0
    assert written[-1]["response"]["usage"]["input_tokens"] > spoken[-1]["response"]["usage"]["input_tokens"]


def test_cancel_then_truncate_keep_what_was_heard(served: Served) -> None:
    with openai_connection(served) as connection:
        ready(connection)
        connection.conversation.item.create(item=text_item("Talk."))
        connection.response.create()
        created = events_until(connection, "response.created")[-1]["response"]
        connection.response.cancel(response_id=created["id"])
        events = events_until(connection, "response.done")
        assert events[-1]["response"]["status"] == "cancelled"
        item_id = events[-1]["response"]["output"][0]["id"]
        connection.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=0)
        truncated = events_until(connection, "conversation.item.truncated")[-1]
        assert truncated["item_id"] == item_id and truncated["audio_end_ms"] == 0
        assert truncated["transcript"] == ""  # nothing was heard, so nothing of the reply stays
        connection.conversation.item.create(item=text_item("Again."))
        connection.response.create()
        assert events_until(connection, "response.done")[-1]["response"]["status"] == "completed"


@pytest.fixture(scope="module")
def served_text_only(demo_text_dir: Any) -> Iterator[Served]:
    from tests.realtime.conftest import start_server, stop_server

    server = start_server(demo_text_dir)
    yield server
    stop_server(server)


def test_a_text_only_checkpoint_answers_in_text(served_text_only: Served) -> None:
    """Thinking and Captioner have no Talker: the session says text, and asking for audio is refused."""
    with openai_connection(served_text_only) as connection:
        session = ready(connection)["session"]
        assert session["output_modalities"] == ["text"]
        connection.session.update(session={"type": "realtime", "output_modalities": ["audio"]})
        event = json.loads(connection.recv_bytes())
        check(event, "server")
        assert event["type"] == "error" and "text only" in event["error"]["message"]
        connection.conversation.item.create(item=text_item("Hi"))
        connection.response.create()
        events = events_until(connection, "response.done")
    assert "response.output_text.delta" in types(events) and reply_audio(events).size == 0
    assert events[-1]["response"]["output"][0]["content"][0]["type"] == "output_text"


def spoken_turn(connection: Any, seconds: float) -> tuple[str, list[dict[str, Any]]]:
    """Send a spoken turn and ask for a reply: the user item's id and the events up to response.done."""
    audio = pcm24(seconds)
    for i in range(0, len(audio), 16_000):
        connection.input_audio_buffer.append(audio=audio[i : i + 16_000])
    connection.input_audio_buffer.commit()
    item_id = events_until(connection, "input_audio_buffer.committed")[-1]["item_id"]
    events_until(connection, "conversation.item.done")
    connection.response.create()
    return item_id, events_until(connection, "response.done")


def test_the_users_words_come_back_as_input_transcription_unless_turned_off(served: Served) -> None:
    """Input transcription is on by default (the session says so); `transcription: null` turns it off."""
    completed = "conversation.item.input_audio_transcription.completed"
    with openai_connection(served) as connection:
        session = ready(connection)["session"]
        assert session["audio"]["input"]["transcription"] is not None
        item_id, events = spoken_turn(connection, 2.0)
        words = [e for e in events if e["type"] == completed]
        assert len(words) == 1 and words[0]["item_id"] == item_id and words[0]["content_index"] == 0
        assert isinstance(words[0]["transcript"], str) and words[0]["usage"]["seconds"] == 2.0
        order = types(events)
        assert (
            order.index("response.output_audio.delta") < order.index(completed) < order.index("response.done")
        )
        audio_input = {"transcription": None}
        connection.session.update(session={"type": "realtime", "audio": {"input": audio_input}})
        updated = events_until(connection, "session.updated")[-1]["session"]
        assert updated["audio"]["input"]["transcription"] is None
        _, quiet = spoken_turn(connection, 1.5)
        assert completed not in types(quiet) and quiet[-1]["response"]["status"] == "completed"
        connection.session.update(session={"type": "realtime", "audio": {"input": {"transcription": {}}}})
        assert events_until(connection, "session.updated")[-1]["session"]["audio"]["input"]["transcription"]
        _, heard = spoken_turn(connection, 1.5)
        assert completed in types(heard)
