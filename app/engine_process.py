"""The app's own engine: `omnidesk serve` as a child process on a private loopback port with a
random key, so the model's work, memory and crashes stay out of the window's process."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from realtime.cli import LISTENING
from realtime.wire import API_KEY_ENV

if TYPE_CHECKING:
    from app.engine_client import LoadRequest

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # until the port is open (the model then loads with progress events)


def serve_args(request: LoadRequest) -> list[str]:
    """`omnidesk serve` flags for the app's own engine."""
    args = ["--demo"] if request.demo else ["--model", request.source]
    args += ["--device", request.device, "--dtype", request.dtype, "--quantization", request.quantization]
    if request.engine_options:
        args += ["--engine-options", json.dumps(request.engine_options)]
    return args


class EngineStartError(RuntimeError):
    """The child did not start; the message carries the end of what it printed."""


NICENESS_ENV = "OMNIDESK_ENGINE_NICENESS"  # how much the engine yields the CPU to the app (default 5)


def _in_child() -> None:
    """Linux: the child gets SIGTERM when the app dies, even by kill -9 (no orphaned GPU memory), and
    yields the CPU to the app, whose audio path must never wait on the model."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    with contextlib.suppress(OSError, ValueError):
        os.nice(int(os.environ.get(NICENESS_ENV, "5")))


class LocalEngine:
    """One child `omnidesk serve` process; `start()` returns its URL once it listens."""

    def __init__(self, serve_args: Sequence[str]) -> None:
        self.serve_args = list(serve_args)
        self.api_key = secrets.token_urlsafe(24)
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self._output: deque[str] = deque(maxlen=40)

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        # OpenMP threads that spin between operations would take the CPU the app's audio needs.
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, API_KEY_ENV: self.api_key}
        command = [sys.executable, "-m", "main", "serve", "--host", "127.0.0.1", "--port", "0",
                   "--log-level", "warning", *self.serve_args]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            preexec_fn=_in_child if sys.platform.startswith("linux") else None,
        )
        found: list[str] = []
        ready = threading.Event()
        threading.Thread(target=self._read, args=(found, ready), name="engine-output", daemon=True).start()
        if not ready.wait(timeout_s) or not found:
            self.stop()
            tail = "".join(self._output).strip()[-600:]
            raise EngineStartError(f"the engine process did not start (exit code {self.exit_code}): {tail}")
        self.url = found[0]
        return self.url

    def _read(self, found: list[str], ready: threading.Event) -> None:
        """Wait for the listening line, then keep draining the child's output (to the log)."""
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._output.append(line)
            if not found and line.startswith(LISTENING):
                found.append(line[len(LISTENING) :].strip())
                ready.set()
            elif found:
                log.info("engine: %s", line.rstrip())
        ready.set()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def output_tail(self) -> str:
        return "".join(self._output).strip()[-600:]

    def stop(self, timeout_s: float = 3.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
