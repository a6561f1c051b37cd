"""`omnidesk --text` where no window can open: type a line, read the reply as it streams.

The same engine, personas and journal as the window, without Qt: the model runs in this thread,
since the terminal has nothing else to keep responsive. Ctrl+C during a reply stops it; Ctrl+C at
the prompt, Ctrl+D or /quit ends.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from app.config import config_dir
from app.history_log import HistoryLog
from app.journal_feed import JournalFeed
from app.launch import Launch
from app.personas import PersonaLibrary
from events import ConversationReset, EngineError, TextDelta, TurnFinished, UserTurnSent
from facts import DEMO_LABEL


def load_for_terminal(launch: Launch, out: TextIO, loader: Any = None, demo_dir: Any = None) -> Any:
    """The configured model, or the demo model (said clearly) when it is not on this computer."""
    from model.loading import ModelLoadError, load_model

    load = loader or load_model
    model = launch.config.model

    def say(message: str) -> None:
        print(f"… {message}", file=out, flush=True)

    how: dict[str, Any] = {
        "device": model.device,
        "dtype": model.dtype,
        "quantization": model.quantization,
        "status": say,
    }
    if not launch.demo:
        try:
            return load(model.source, **how)
        except ModelLoadError as error:
            print(f"omnidesk: {error}", file=out)
            print(f"omnidesk: running the {DEMO_LABEL}", file=out, flush=True)
    if demo_dir is None:
        from model.demo import demo_checkpoint_dir

        demo_dir = demo_checkpoint_dir
    say(f"preparing the {DEMO_LABEL}")
    return load(str(demo_dir()), **how)


def run_terminal_chat(
    launch: Launch,
    *,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    loader: Any = None,
    demo_dir: Any = None,
    engine_options: dict[str, Any] | None = None,
) -> int:
    from model.engine import Engine, EngineSettings
    from model.loading import ModelLoadError

    stdin = stdin or sys.stdin
    out = out or sys.stdout
    if launch.loaded.message:
        print(f"omnidesk: {launch.loaded.message}", file=out)
    library = PersonaLibrary(config_dir() / "personas")
    persona = library.get(launch.config.conversation.persona)
    for problem in [*library.problems, library.fallback_note(launch.config.conversation.persona, persona)]:
        if problem:
            print(f"omnidesk: {problem}", file=out)
    try:
        loaded = load_for_terminal(launch, out, loader, demo_dir)
    except ModelLoadError as error:
        print(f"omnidesk: {error}", file=out)
        return 1
    options: dict[str, Any] = {}
    if loaded.is_demo:
        from model.demo import DEMO_MAX_TEXT_TOKENS

        options["max_text_tokens"] = DEMO_MAX_TEXT_TOKENS
        print(f"[{DEMO_LABEL}]", file=out)
    options.update(engine_options or {})
    engine = Engine(
        loaded.model,
        loaded.processor,
        EngineSettings(system_prompt=persona.system_prompt, speak=False, **options),
    )
    print(
        f"{persona.name}: {persona.greeting}" if persona.greeting else f"{persona.name} is ready.", file=out
    )
    journal = HistoryLog(on_error=lambda message: print(f"\n[{message}]", file=out, flush=True))
    feed = JournalFeed(journal)
    feed.on_event(ConversationReset(persona))
    journal.write("model_ready", source=loaded.source, device=loaded.device, is_demo=loaded.is_demo)
    try:
        _chat(engine, persona.name.lower(), stdin, out, feed)
    except KeyboardInterrupt:  # Ctrl+C between a reply and the prompt: the same as at the prompt
        print(file=out)
    finally:
        journal.close()
    print(f"(the conversation is kept in {journal.path})", file=out, flush=True)
    return 0


def _chat(engine: Any, name: str, stdin: TextIO, out: TextIO, feed: JournalFeed) -> None:
    """Read a line, stream the reply, until the end of input, /quit or Ctrl+C at the prompt."""
    from model.media_input import UserTurn

    turn_id = 0
    while True:
        print("you> ", end="", file=out, flush=True)
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            line = ""
        if not line:
            print(file=out)
            return
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return
        turn_id += 1
        cancel = threading.Event()
        feed.on_event(UserTurnSent(turn_id, text, 0.0))
        print(f"{name}> ", end="", file=out, flush=True)
        with ctrl_c_sets(cancel):
            for event in engine.respond(UserTurn(text=text), turn_id, cancel):
                feed.on_event(event)
                if isinstance(event, TextDelta):
                    print(event.text, end="", file=out, flush=True)
                elif isinstance(event, EngineError):
                    print(f"\n[error: {event.message}]", end="", file=out)
                elif isinstance(event, TurnFinished) and event.stats.cancelled:
                    print(" [interrupted]", end="", file=out)
        print(file=out, flush=True)


@contextlib.contextmanager
def ctrl_c_sets(cancel: threading.Event) -> Iterator[None]:
    """While a reply streams, Ctrl+C stops it at the next decode step instead of killing the program."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: cancel.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
