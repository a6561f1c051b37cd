"""The assistant's tool calls as the app runs them: each call the engine reports is checked (its
JSON, its tool), asked of the user first when the tool acts, run (a built-in in a worker thread or
on the GUI thread, an MCP server's tool on its server) within the time limit, and its outcome told
to the user (`ToolCallFinished`) and to the model. When the reply that made the calls has ended and
every call has its result, the results go back to the engine as the same turn, and the reply goes on.

Tools run in the app for every engine: they touch the user's desktop (clipboard, screen, the
user's yes or no), and over the Realtime protocol the server emits the call and the client returns
its output, which is how vLLM-Omni carries tools too. Lives on the Qt thread.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.builtin_tools import builtin_tools
from app.mcp_hub import McpHub
from app.still_running import StillRunning
from app.tool_catalog import Tool, ToolFailed, ToolOutput, merged
from app.tool_config import McpServerSettings, ToolSettings
from app.tool_voice import SAY_YES_OR_NO, VOICE_ASK, asked_again, spoken_answer
from events import (
    AsideAnswer,
    Problem,
    ToolCallFinished,
    ToolCallRequested,
    ToolCallStarted,
    ToolConfirmationNeeded,
)
from model.tool_format import ToolResult, ToolSpec, tool_response_text

CUT_RUNNING = "Interrupted while it ran: its result was not used."
TOLD_ASKING = "Cancelled: the user interrupted the reply before allowing this tool; it did not run."
TOLD_RUNNING = "Cancelled: the user interrupted the reply while this tool ran; its result was not used."


@dataclass
class _Outcome:
    result: str  # what the model is told
    ok: bool
    message: str = ""  # what the user is told when it went wrong
    images: tuple[Any, ...] = ()


@dataclass
class _TurnCalls:
    """The calls of one reply, in order, and the outcomes they have so far."""

    calls: list[ToolCallRequested] = field(default_factory=list)
    outcomes: dict[str, _Outcome] = field(default_factory=dict)
    ended: bool = False  # the reply that made them is over


class ToolFlow(QObject):
    """Runs the calls of each reply on `engine` (an `EngineClient`: it is told the tools with
    `set_tools` and gets the results with `respond`); what the user should see goes to `report`,
    which the session that uses the flow sets to its own."""

    _done = Signal(object)  # (call, outcome or exception), from worker and MCP threads
    _problem = Signal(str)
    _arrived = Signal()

    def __init__(
        self,
        engine: Any,
        settings: ToolSettings,
        servers: tuple[McpServerSettings, ...] = (),
        *,
        builtins: list[Tool] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.report: Callable[[object], None] = lambda event: None  # the session reports for it
        self.settings = settings
        own = builtin_tools() if settings.builtins else []
        self.builtins = own if builtins is None else builtins
        self.mcp = McpHub(servers, on_problem=self._problem.emit, on_tools=self._arrived.emit)
        self.turns: dict[int, _TurnCalls] = {}
        self.asking: dict[str, tuple[ToolCallRequested, Tool, dict[str, Any]]] = {}
        self.questions: dict[str, str] = {}  # what each waiting call asks
        self.voice = False  # the user can answer aloud (the session has a microphone)
        self.hearing: dict[int, str] = {}  # spoken answers being heard aside: key -> call id
        self._asides = 0
        self.started_s: dict[str, float] = {}
        self.still = StillRunning(engine, settings.while_running, self._running, self)  # said aloud
        self.workers = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="tool")
        self._done.connect(self._on_done)
        self._problem.connect(self._on_problem)
        self._arrived.connect(self.declare)

    def start(self) -> None:
        """Tell the engine the built-ins now, and each MCP server's tools once it has connected."""
        self.declare()
        self.mcp.start()

    def catalog(self) -> dict[str, Tool]:
        return merged(self.builtins, self.mcp.tools())

    def specs(self) -> tuple[ToolSpec, ...]:
        """What the model is told it may call."""
        return tuple(tool.spec for tool in self.catalog().values())

    @Slot()
    def declare(self) -> None:
        self.engine.set_tools(self.specs())

    @Slot(str)
    def _on_problem(self, message: str) -> None:
        self.report(Problem(message))

    def close(self) -> None:
        self.workers.shutdown(wait=False, cancel_futures=True)
        self.mcp.stop()

    # -- from the session (Qt thread) ---------------------------------------------------------------

    def on_call(self, call: ToolCallRequested) -> None:
        self.turns.setdefault(call.turn_id, _TurnCalls()).calls.append(call)
        if not call.name:
            shown = call.arguments if len(call.arguments) <= 80 else call.arguments[:77] + "..."
            why = f"The assistant's tool call was not valid JSON ({shown!r}); it was told so."
            told = 'Error: that tool call was not valid JSON. Write {"name": ..., "arguments": {...}}.'
            self._finish(call, _Outcome(told, False, why))
            return
        catalog = self.catalog()
        tool = catalog.get(call.name)
        if tool is None:
            names = ", ".join(catalog) or "none"
            why = f"The assistant asked for a tool that does not exist: {call.name!r} (tools: {names})."
            self._finish(
                call, _Outcome(f"Error: there is no tool named {call.name!r}. Tools: {names}.", False, why)
            )
            return
        arguments = json.loads(call.arguments)
        if not tool.spec.read_only and self.settings.ask_before_acting:
            self.asking[call.call_id] = (call, tool, arguments)
            question = f"Let the assistant run {tool.name} ({tool.where}) with {_shown(arguments)}?"
            self.questions[call.call_id] = f"{question} {SAY_YES_OR_NO}" if self.voice else question
            self._ask(call, self.questions[call.call_id])
            return
        self._start(call, tool, arguments)

    def reply_ended(self, turn_id: int) -> None:
        """The reply that made `turn_id`'s calls is over: once every call is done, the reply goes on."""
        self.turns.setdefault(turn_id, _TurnCalls()).ended = True
        self._go_on(turn_id)

    def _ask(self, call: ToolCallRequested, question: str) -> None:
        self.report(ToolConfirmationNeeded(call.turn_id, call.call_id, call.name, call.arguments, question))

    def hear_answer(self, audio: Any) -> bool:
        """A spoken turn while a question waits is its answer (False: no question, or no voice): the
        engine gives its words aside, out of the conversation, and `on_aside` takes them."""
        if not self.voice or not self.asking:
            return False
        from model.media_input import UserTurn

        self._asides += 1
        self.hearing[self._asides] = next(iter(self.asking))  # the first question asked
        self.engine.answer_aside(self._asides, UserTurn(audio=audio, text=VOICE_ASK))
        return True

    def on_aside(self, heard: AsideAnswer) -> None:
        """The words of a spoken answer: a yes or a no answers the question, anything else asks again."""
        call_id = self.hearing.pop(heard.key, None)
        if call_id is None or call_id not in self.asking:
            return  # answered meanwhile (a button), or withdrawn
        allowed = spoken_answer(heard.text) if not heard.failed else None
        if allowed is None:
            question = self.questions[call_id]
            again = (
                f"I could not hear the answer. {question}"
                if heard.failed
                else asked_again(question, heard.text)
            )
            self._ask(self.asking[call_id][0], again)
            return
        self.answer(call_id, allowed)

    @Slot(str, bool)
    def answer(self, call_id: str, allowed: bool) -> None:
        """The user's yes or no to a tool that acts (a button, or said aloud)."""
        asked = self.asking.pop(call_id, None)
        self.questions.pop(call_id, None)
        if asked is None:
            return
        call, tool, arguments = asked
        if allowed:
            self._start(call, tool, arguments)
        else:
            why = f"You declined {tool.name}: it did not run, and the assistant was told."
            self._finish(call, _Outcome("The user declined: the tool was not run.", False, why))

    def cancel(self, turn_id: int) -> None:
        """The turn was interrupted: no question waits, and each call of its reply is answered in the
        model's context with what became of it (its result if it had one, else that the user cut
        it), without a reply: the call stays in the context (model.tool_format.kept_of_cut_reply),
        and the conversation goes on from a call with its answer."""
        turn = self.turns.pop(turn_id, None)
        self.still.round_over(turn_id)
        results: list[ToolResult] = []
        for call in turn.calls if turn is not None else []:
            outcome = turn.outcomes.get(call.call_id) if turn is not None else None
            if outcome is not None:
                results.append(ToolResult(call.call_id, call.name, outcome.result))
                continue
            asked = self.asking.pop(call.call_id, None) is not None
            self.questions.pop(call.call_id, None)
            self.started_s.pop(call.call_id, None)
            why = "Interrupted before you answered: it did not run." if asked else CUT_RUNNING
            self.report(ToolCallFinished(turn_id, call.call_id, call.name, call.arguments, "", False, why))
            results.append(ToolResult(call.call_id, call.name, TOLD_ASKING if asked else TOLD_RUNNING))
        if results:
            from app.client_history import Exchange

            self.engine.restore([Exchange(-turn_id, text=tool_response_text(tuple(results)), reply="")])

    # -- running -------------------------------------------------------------------------------------

    def _running(self, turn_id: int) -> bool:
        turn = self.turns.get(turn_id)
        return turn is not None and any(c.call_id in self.started_s for c in turn.calls)

    def _start(self, call: ToolCallRequested, tool: Tool, arguments: dict[str, Any]) -> None:
        self.started_s[call.call_id] = time.perf_counter()
        self.still.started(call)
        self.report(ToolCallStarted(call.turn_id, call.call_id, tool.name, call.arguments))
        timeout_s = self.settings.timeout_s
        if tool.on_gui and tool.run is not None:
            self._on_done((call, _run(tool.run, arguments)))
            return
        if tool.server:
            future = self.mcp.call(tool, arguments, timeout_s)
        else:
            assert tool.run is not None
            future = self.workers.submit(tool.run, arguments)
        future.add_done_callback(lambda done: self._done.emit((call, _outcome_of(done))))
        QTimer.singleShot(int(timeout_s * 1000), self, lambda: self._on_done((call, TimeoutError())))

    @Slot(object)
    def _on_done(self, done: tuple[ToolCallRequested, Any]) -> None:
        call, outcome = done
        turn = self.turns.get(call.turn_id)
        if turn is None or call.call_id in turn.outcomes:
            return  # the turn was interrupted, or the call already timed out
        where = self.catalog().get(call.name)
        name = f"{call.name!r} ({where.where})" if where is not None else repr(call.name)
        if isinstance(outcome, ToolOutput):
            self._finish(call, _Outcome(outcome.text, True, images=outcome.images))
        elif isinstance(outcome, TimeoutError):
            limit = f"{self.settings.timeout_s:g} s"
            why = f"The tool {name} did not answer within {limit}; the assistant was told."
            self._finish(call, _Outcome(f"Error: the tool did not answer within {limit}.", False, why))
        else:
            text = str(outcome) if isinstance(outcome, ToolFailed) else f"{type(outcome).__name__}: {outcome}"
            self._finish(
                call, _Outcome(f"Error: the tool failed: {text}", False, f"The tool {name} failed: {text}")
            )

    def _finish(self, call: ToolCallRequested, outcome: _Outcome) -> None:
        turn = self.turns.get(call.turn_id)
        if turn is None:
            return
        turn.outcomes[call.call_id] = outcome
        started = self.started_s.pop(call.call_id, None)
        self.still.settled(call.turn_id)  # a notice being said for this round stops
        took = time.perf_counter() - started if started is not None else 0.0
        self.report(
            ToolCallFinished(
                call.turn_id,
                call.call_id,
                call.name,
                call.arguments,
                outcome.result,
                outcome.ok,
                outcome.message,
                took,
            )
        )
        self._go_on(call.turn_id)

    def _go_on(self, turn_id: int) -> None:
        turn = self.turns.get(turn_id)
        if turn is None or not turn.ended or len(turn.outcomes) < len(turn.calls):
            return
        del self.turns[turn_id]
        self.still.round_over(turn_id)
        if not turn.calls:
            return
        from model.media_input import UserTurn

        results = tuple(ToolResult(c.call_id, c.name, turn.outcomes[c.call_id].result) for c in turn.calls)
        images = tuple(image for c in turn.calls for image in turn.outcomes[c.call_id].images)
        self.engine.respond(turn_id, UserTurn(tool_results=results, images=images))


def _run(run: Callable[[dict[str, Any]], ToolOutput], arguments: dict[str, Any]) -> Any:
    try:
        return run(arguments)
    except Exception as error:
        return error


def _outcome_of(future: concurrent.futures.Future[ToolOutput]) -> Any:
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        return ToolFailed("cancelled")
    except Exception as error:
        return error


def _shown(arguments: dict[str, Any]) -> str:
    text = json.dumps(arguments, ensure_ascii=False)
    return "no arguments" if text == "{}" else text if len(text) <= 120 else text[:117] + "..."
