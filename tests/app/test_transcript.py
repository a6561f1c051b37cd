"""The transcript: what it shows, and that rendering only the changed tail equals a full render."""

from __future__ import annotations

from typing import Any

from ui.transcript import TranscriptView


def test_incremental_rendering_equals_a_full_render(qtbot: Any) -> None:
    view = TranscriptView()
    qtbot.addWidget(view)
    view.add_greeting("Hi, I'm listening.")
    for turn in range(1, 40):
        view.add_user(turn, "" if turn % 2 else f"typed {turn}", 1.25 * (turn % 2))
        for word in ("one ", "two ", "three <b>&amp;</b> "):
            view.append_reply(turn, word)
            if turn % 7 == 0:
                view.render_now()
        if turn % 3 == 0:
            view.mark_interrupted(turn, "one tw")
        else:
            view.finish_reply(turn)
        view.set_latency(turn, f"→ text {turn} ms")
    view.set_latency(5, "late news for an old turn")
    text = view.plain_text()
    assert text == view.full_render_text()
    assert "You (1.2 s): (spoken)" in text and "You: typed 2" in text
    assert "Assistant: one tw o three <b>&amp;</b> [interrupted]" in text
    assert "one two three <b>&amp;</b>" in text
    assert "late news for an old turn" in text and text.count("Assistant:") == 40
    view.clear_entries()
    view.add_note("new conversation")
    assert view.plain_text() == "new conversation"


def test_entries_added_after_a_render_are_appended(qtbot: Any) -> None:
    view = TranscriptView()
    qtbot.addWidget(view)
    view.add_user(1, "first", 0.0)
    view.render_now()
    view.add_user(2, "second", 0.0)
    view.append_reply(2, "answer")
    assert view.plain_text() == view.full_render_text()
    assert view.plain_text().splitlines() == ["You: first", "You: second", "Assistant: answer …"]
