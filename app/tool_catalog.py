"""The tools the assistant can call, wherever they run: the app's own (built-in) and those of MCP
servers, as one list the engine is told about and the tool flow runs from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from model.tool_format import ToolSpec


class ToolFailed(Exception):
    """A tool ran and failed; the message says why, in words (the user sees it, the model is told)."""


@dataclass(frozen=True)
class ToolOutput:
    """What a tool gave back: its text, and pictures the model should see (a screenshot)."""

    text: str
    images: tuple[Any, ...] = field(default_factory=tuple)  # (h, w, 3) uint8 RGB arrays


@dataclass(frozen=True)
class Tool:
    """One callable tool: `server` names the MCP server that runs it ("" for a built-in, which
    `run` runs in a worker thread, or on the GUI thread with `on_gui`: Qt's clipboard lives there)."""

    spec: ToolSpec
    server: str = ""
    run: Callable[[dict[str, Any]], ToolOutput] | None = None
    on_gui: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def where(self) -> str:
        return f"MCP server {self.server!r}" if self.server else "built in"


def merged(*groups: list[Tool]) -> dict[str, Tool]:
    """Tools by name; a name already taken keeps its first tool (built-ins come first)."""
    tools: dict[str, Tool] = {}
    for group in groups:
        for tool in group:
            tools.setdefault(tool.name, tool)
    return tools
