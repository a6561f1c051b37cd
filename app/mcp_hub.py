"""The MCP servers of `config.toml`, through the `mcp` package's `Client` (stdio: the server is our
child process; streamable HTTP: a URL). One asyncio loop in its own thread holds every connection;
each server lives in a task of its own, which enters and leaves its client (anyio's scopes want
that), and calls from the app's threads come in as coroutines on that loop.

A server that will not start is reported once, in words naming its `[mcp.NAME]` table; its tools
are simply absent (a call to one is an unknown tool), and the others work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

from app.tool_catalog import Tool, ToolFailed, ToolOutput
from app.tool_config import McpServerSettings
from model.tool_format import ToolSpec

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


class McpHub:
    """Connects to `servers` in the background; `tools()` lists what has connected so far."""

    def __init__(
        self,
        servers: tuple[McpServerSettings, ...],
        *,
        on_problem: Callable[[str], None],
        on_tools: Callable[[], None] = lambda: None,
    ) -> None:
        self.servers = servers
        self.on_problem = on_problem  # any thread
        self.on_tools = on_tools  # a server's tools arrived (any thread)
        self._clients: dict[str, Any] = {}
        self._tools: dict[str, list[Tool]] = {}
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()  # bound to the loop that first waits on it (the hub's)
        self._thread = threading.Thread(target=self._run, name="mcp-hub", daemon=True)
        self._tasks: list[concurrent.futures.Future[None]] = []

    def start(self) -> None:
        if not self.servers:
            return
        self._thread.start()
        self._tasks = [asyncio.run_coroutine_threadsafe(self._serve(s), self._loop) for s in self.servers]

    def tools(self) -> list[Tool]:
        return [tool for server in self.servers for tool in self._tools.get(server.name, [])]

    def call(
        self, tool: Tool, arguments: dict[str, Any], timeout_s: float
    ) -> concurrent.futures.Future[ToolOutput]:
        """Run `tool` on its server; the future's result is its output, or ToolFailed / TimeoutError."""
        return asyncio.run_coroutine_threadsafe(self._call(tool, arguments, timeout_s), self._loop)

    def stop(self, timeout_s: float = 3.0) -> None:
        """Close every connection (the SDK ends the stdio servers it started), cancelling one still
        starting, then end the loop's thread."""
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        _done, pending = concurrent.futures.wait(self._tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        concurrent.futures.wait(pending, timeout=timeout_s)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)

    # -- on the loop's thread ---------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _serve(self, server: McpServerSettings) -> None:
        from mcp import Client

        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                client = await Client(_target(server)).__aenter__()
                listed = await client.list_tools()
        except BaseException as error:  # the SDK raises ExceptionGroups from its task groups
            if isinstance(error, asyncio.CancelledError):
                raise
            self.on_problem(
                f"MCP server {server.name!r} ({server.where} in config.toml) would not start: {_why(error)}"
            )
            return
        self._clients[server.name] = client
        self._tools[server.name] = [_tool(server.name, t) for t in listed.tools]
        log.info("MCP server %s: %d tools", server.name, len(listed.tools))
        self.on_tools()
        await self._stop.wait()
        try:
            await client.__aexit__(None, None, None)
        except BaseException as error:
            log.info("MCP server %s closed with %s", server.name, _why(error))

    async def _call(self, tool: Tool, arguments: dict[str, Any], timeout_s: float) -> ToolOutput:
        client = self._clients.get(tool.server)
        if client is None:
            raise ToolFailed(f"MCP server {tool.server!r} is not connected")
        async with asyncio.timeout(timeout_s):
            result = await client.call_tool(tool.name, arguments)
        text = "\n".join(_content_text(part) for part in result.content)
        if result.is_error:
            raise ToolFailed(text or "the server reported an error without a message")
        return ToolOutput(text)


def _target(server: McpServerSettings) -> Any:
    if server.url:
        return server.url
    from mcp.client.stdio import StdioServerParameters

    return StdioServerParameters(command=server.command, args=list(server.args), env=server.env or None)


def _tool(server: str, listed: Any) -> Tool:
    """A server's tool as the model is told of it; read-only when the server says so."""
    annotations = getattr(listed, "annotations", None)
    read_only = bool(getattr(annotations, "read_only_hint", False)) if annotations is not None else False
    schema = dict(getattr(listed, "input_schema", None) or {"type": "object", "properties": {}})
    schema.pop("title", None)
    spec = ToolSpec(listed.name, listed.description or "", schema, read_only)
    return Tool(spec, server=server)


def _content_text(part: Any) -> str:
    text = getattr(part, "text", None)
    return text if isinstance(text, str) else f"[{getattr(part, 'type', 'content')}]"


def _why(error: BaseException) -> str:
    """The innermost cause of a failure, in one line (ExceptionGroups unwrapped)."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, TimeoutError):
        return f"no answer within {START_TIMEOUT_S:.0f} s"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
