"""The app's own tools: the date and time, the clipboard's text, a screenshot of the screen or of a
window. All only read (none asks before it runs); they touch the user's desktop, so they run in
the app, never in the engine process."""

from __future__ import annotations

import datetime
from typing import Any

from app.tool_catalog import Tool, ToolFailed, ToolOutput
from model.tool_format import ToolSpec

NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}
SCREENSHOT_ARGUMENTS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "window": {
            "type": "string",
            "description": "Part of the title of the window to capture; leave out for the whole screen.",
        }
    },
}


def date_time(_arguments: dict[str, Any]) -> ToolOutput:
    now = datetime.datetime.now().astimezone()
    return ToolOutput(now.strftime("%A %d %B %Y, %H:%M:%S %Z (UTC%z)"))


def clipboard_text(_arguments: dict[str, Any]) -> ToolOutput:
    """The clipboard's text (Qt's clipboard lives on the GUI thread: this tool runs there)."""
    from PySide6.QtGui import QGuiApplication

    clipboard = QGuiApplication.clipboard()
    text = clipboard.text() if clipboard is not None else ""
    return ToolOutput(text if text else "(the clipboard holds no text)")


def screenshot(arguments: dict[str, Any]) -> ToolOutput:
    """The screen (or the window whose title contains `window`) as a picture the model sees."""
    from app.screen_capture import WHOLE_SCREEN, capture_problem, find_window, grab

    problem = capture_problem()
    if problem:
        raise ToolFailed(problem)
    title = str(arguments.get("window") or "").strip()
    target = WHOLE_SCREEN
    if title:
        found = find_window(title)
        if found is None:
            raise ToolFailed(f"no window's title contains {title!r}")
        target = found
    try:
        picture = grab(target)
    except Exception as error:
        raise ToolFailed(f"the screen could not be captured: {error}") from error
    height, width = picture.shape[:2]
    return ToolOutput(
        f"A screenshot of {target.label} ({width}x{height}) is attached as an image.", (picture,)
    )


def builtin_tools() -> list[Tool]:
    return [
        Tool(
            ToolSpec("date_time", "The current local date, time and time zone.", NO_ARGUMENTS, True),
            run=date_time,
        ),
        Tool(
            ToolSpec("clipboard_text", "The text on the user's clipboard.", NO_ARGUMENTS, True),
            run=clipboard_text,
            on_gui=True,
        ),
        Tool(
            ToolSpec(
                "screenshot", "A picture of the user's screen, or of one window.", SCREENSHOT_ARGUMENTS, True
            ),
            run=screenshot,
        ),
    ]
