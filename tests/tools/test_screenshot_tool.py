"""The built-in screenshot tool under Xvfb: the model asks for a window by part of its title, the
window's pixels (a known pattern) go back with the result as an image the model sees."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.builtin_tools import builtin_tools
from app.engine_worker import EngineThread, EngineWorker, LoadRequest
from app.session import Session
from app.tool_config import ToolSettings
from app.tool_flow import ToolFlow
from events import ToolCallFinished, TurnFinished
from tests.app.helpers import SHORT_PROMPT
from tests.app.test_e2e import display
from tests.screen_pattern import FIRST, PatternWindow, shows
from tests.tools.forcing import force_reply

__all__ = ["display"]  # the Xvfb fixture
CALL = '<tool_call>\n{"name": "screenshot", "arguments": {"window": "Tool pattern"}}\n</tool_call><|im_end|>'


@pytest.fixture
def on_display(display: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    yield display


def test_a_screenshot_of_a_window_reaches_the_model(
    qtbot: Any, demo: Any, on_display: str, monkeypatch: Any
) -> None:
    engine = EngineThread(EngineWorker(None, loader=lambda source, **kw: demo))
    sent: list[Any] = []
    respond = engine.respond

    def recording(turn_id: int, turn: Any) -> None:
        sent.append(turn)
        respond(turn_id, turn)

    monkeypatch.setattr(engine, "respond", recording)
    flow = ToolFlow(engine, ToolSettings(), builtins=builtin_tools())
    session = Session(engine, tools=flow)
    seen: list[object] = []
    session.reported.connect(seen.append)
    session.load(LoadRequest("demo", system_prompt=SHORT_PROMPT, engine_options={"max_text_tokens": 90}))
    flow.start()
    qtbot.waitUntil(lambda: session.model_info is not None, timeout=60_000)
    try:
        with PatternWindow("Tool pattern", x=300, y=200):
            force_reply(monkeypatch, demo.processor.tokenizer, CALL)
            session.send_text("what is in that window?")
            qtbot.waitUntil(lambda: any(isinstance(e, TurnFinished) for e in seen), timeout=60_000)
        (result,) = [e for e in seen if isinstance(e, ToolCallFinished)]
        assert result.ok and result.result.startswith("A screenshot of the window 'Tool pattern' (320x240)")
        (going_on,) = [t for t in sent if t.tool_results]
        (picture,) = going_on.images
        assert shows(picture, FIRST, tolerance=0)
        segments = engine.worker.engine.context.segments
        assert any(
            "pixel_values" in s.media
            for s in segments
            if "<tool_response>" in demo.processor.tokenizer.decode(s.ids)
        )
    finally:
        flow.close()
        assert session.close()
