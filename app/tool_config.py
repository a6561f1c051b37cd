"""The tool settings of `config.toml`: `[tools]` (built-ins, time limit) and one `[mcp.NAME]` table
per MCP server, either a command started as a stdio server or the URL of a streamable HTTP one:

    [mcp.files]
    command = "npx"
    args = ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/Documents"]

    [mcp.search]
    url = "http://localhost:8000/mcp"

The app never writes `[mcp]` (the user does); a wrong entry is named by its table and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STILL_RUNNING_AFTER_S = 1.5  # a tool running longer than this is "still running" to the user
WHILE_RUNNING = ("voice", "window")


@dataclass(frozen=True)
class ToolSettings:
    """`builtins`: the date and time, the clipboard's text and screenshots; `timeout_s`: a call
    that has not answered by then is given up and the model told; `ask_before_acting`: a tool not
    marked read-only runs only after the user says yes; `while_running`: how the user learns that
    a tool still runs after STILL_RUNNING_AFTER_S: "voice", the assistant says so briefly (once a
    round of calls; the window shows it too), or "window", only the transcript's "running…". Voice
    by default: the user of a voice assistant often is not looking at the window, and silence
    that lasts seconds sounds like a hang."""

    builtins: bool = True
    timeout_s: float = 30.0
    ask_before_acting: bool = True
    while_running: str = "voice"


@dataclass(frozen=True)
class McpServerSettings:
    """One MCP server: `command` (with `args`, `env`) for stdio, or `url` for streamable HTTP."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""

    @property
    def where(self) -> str:
        return f"[mcp.{self.name}]"


class McpConfigProblem(ValueError):
    """What is wrong with an `[mcp.NAME]` table: (table or key, problem)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


def parse_mcp_servers(table: Any) -> tuple[McpServerSettings, ...]:
    """The `[mcp]` table's servers, or McpConfigProblem naming the entry that cannot be used."""
    if not isinstance(table, dict):
        raise McpConfigProblem("mcp", "mcp must be a table of servers: [mcp.NAME]")
    return tuple(_server(name, entry) for name, entry in table.items())


def _server(name: str, entry: Any) -> McpServerSettings:
    if not isinstance(entry, dict):
        raise McpConfigProblem(name, f"mcp.{name} must be a table with a command or a url")
    known = {"command", "args", "env", "url"}
    unknown = [key for key in entry if key not in known]
    if unknown:
        raise McpConfigProblem(
            unknown[0], f"unknown setting mcp.{name}.{unknown[0]} (known: {', '.join(known)})"
        )
    command, url = entry.get("command", ""), entry.get("url", "")
    if not isinstance(command, str) or not isinstance(url, str):
        raise McpConfigProblem(name, f"mcp.{name}: command and url must be strings")
    if bool(command) == bool(url):
        raise McpConfigProblem(name, f"mcp.{name} needs either a command (stdio) or a url (streamable HTTP)")
    if url and not url.startswith(("http://", "https://")):
        raise McpConfigProblem("url", f"mcp.{name}.url must start with http:// or https://, not {url!r}")
    args, env = entry.get("args", []), entry.get("env", {})
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise McpConfigProblem("args", f"mcp.{name}.args must be a list of strings")
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise McpConfigProblem("env", f"mcp.{name}.env must be a table of strings")
    return McpServerSettings(name, command, tuple(args), dict(env), url)
