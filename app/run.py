"""Running the window: Qt's loop, Ctrl+C and SIGTERM, and an exit that never hangs on a load."""

from __future__ import annotations

import os
import sys

from PySide6.QtCore import QCoreApplication, QTimer
from PySide6.QtWidgets import QApplication

from app.desk import Desk
from app.launch import Launch
from audio_io.gc_freeze import long_lived_frozen


def quit_on_signals(app: QCoreApplication) -> None:
    """Ctrl+C in the terminal and SIGTERM close the window the normal way (settings saved).

    Python runs signal handlers only between bytecodes, so a timer gives it a moment every 200 ms
    while Qt's loop is in C++."""
    import signal

    def close(_signum: int, _frame: object) -> None:
        if isinstance(app, QApplication):
            app.closeAllWindows()
        app.quit()

    signal.signal(signal.SIGINT, close)
    signal.signal(signal.SIGTERM, close)
    ticker = QTimer(app)
    ticker.setInterval(200)
    ticker.timeout.connect(lambda: None)
    ticker.start()


def run_desk(launch: Launch) -> int:
    """Start the Qt app; returns its exit code (exits at once if the engine is stuck in a load)."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Omni Desk")
    app.setOrganizationName("omnidesk")
    desk = Desk(launch)
    desk.start()
    quit_on_signals(app)
    with long_lived_frozen():  # the window and the audio chain are up: full collections stay short
        code = app.exec()
    desk.shutdown()
    if not desk.closed_cleanly:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # the worker is inside a long library call (loading); it cannot be joined
    return code
