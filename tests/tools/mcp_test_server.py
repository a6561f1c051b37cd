"""An MCP stdio server written with the `mcp` package, started by the tests as a subprocess. Every
call it receives is written as a JSON line to the file named by `OMNIDESK_TEST_MCP_LOG`, so a test
sees what reached the server process."""

from __future__ import annotations

import json
import os
import time

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

app = MCPServer("omnidesk-test")
READ_ONLY = ToolAnnotations(read_only_hint=True)


def _log(name: str, arguments: dict[str, object]) -> None:
    with open(os.environ["OMNIDESK_TEST_MCP_LOG"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"tool": name, "arguments": arguments}) + "\n")


@app.tool(annotations=READ_ONLY)
def add(a: int, b: int) -> str:
    """Add two integers."""
    _log("add", {"a": a, "b": b})
    return str(a + b)


@app.tool()
def write_note(text: str) -> str:
    """Write a note (acts: the user is asked first)."""
    _log("write_note", {"text": text})
    return "noted"


@app.tool(annotations=READ_ONLY)
def broken() -> str:
    """Always fails."""
    _log("broken", {})
    raise RuntimeError("the disk is on fire")


@app.tool(annotations=READ_ONLY)
def slow(seconds: float) -> str:
    """Answers after `seconds`."""
    _log("slow", {"seconds": seconds})
    time.sleep(seconds)
    return "late"


if __name__ == "__main__":
    app.run()
