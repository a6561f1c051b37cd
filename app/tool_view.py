"""Tool calls as the window shows them: a collapsed entry per call in the transcript (its state, and
on a click its arguments and result or what went wrong), and the yes-or-no row for a tool that acts."""

from __future__ import annotations

from typing import Any

from events import ToolCallFinished, ToolCallRequested, ToolCallStarted, ToolConfirmationNeeded


def show_tool_event(window: Any, event: object) -> None:
    """`window` is the `MainWindow` (its `transcript` and `tool_prompt`)."""
    transcript, prompt = window.transcript, window.tool_prompt
    match event:
        case ToolCallRequested(turn_id, call_id, name, arguments):
            transcript.add_tool_call(turn_id, call_id, name, arguments)
        case ToolConfirmationNeeded(call_id=call_id, question=question):
            transcript.set_tool_state(call_id, "asking")
            prompt.ask(call_id, question)
        case ToolCallStarted(call_id=call_id):
            prompt.withdraw(call_id)  # allowed by a yes said aloud
            transcript.set_tool_state(call_id, "running")
        case ToolCallFinished(call_id=call_id, result=result, ok=ok, message=message):
            prompt.withdraw(call_id)
            transcript.set_tool_state(call_id, "done" if ok else "failed", result if ok else message)
