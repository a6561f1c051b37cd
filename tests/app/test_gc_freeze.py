"""The app freezes what it holds once its window is up, so a full garbage collection (which holds
the GIL, and with it every audio callback) walks only what was made since (`audio_io.gc_freeze`),
and unfreezes it as it quits, so what died meanwhile is freed, not reported leaked.

How long a collection takes is measured in `bench/audio.py` (`gc_full_collection_ms_max`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.rig.pulse import MIC, SPEAKER, VirtualAudio

ROOT = Path(__file__).resolve().parents[2]
APP_ARGS = ["--demo", "--no-camera", "--input-device", MIC, "--output-device", SPEAKER]

PROBE = """
import gc, sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
import main
from app.run import run_desk

launch = main.launch_from(main.build_parser().parse_args(sys.argv[1:]))
app = QApplication(sys.argv[:1])

def report() -> None:
    print("frozen", gc.get_freeze_count(), "walked", len(gc.get_objects()), flush=True)
    app.closeAllWindows()
    app.quit()

QTimer.singleShot(3000, report)  # the window is up, the microphone and the speaker run
sys.exit(run_desk(launch))
"""


@pytest.mark.audio
def test_a_full_collection_in_the_running_app_walks_only_what_came_after_its_window(
    virtual_audio: VirtualAudio, tmp_path: Path
) -> None:
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        OMNIDESK_CONFIG_DIR=str(tmp_path / "config"),
        OMNIDESK_DATA_DIR=str(tmp_path / "data"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *APP_ARGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("frozen ")), None)
    assert line is not None, f"exit {done.returncode}; stderr:\n{done.stderr[-3000:]}"
    _, frozen, _, walked = line.split()
    assert int(frozen) > 20_000  # the modules, Qt's wrappers and the window: tens of thousands
    assert int(walked) < int(frozen) // 2  # what the engine link and the devices made since
    assert "leaked" not in done.stderr, done.stderr[-3000:]  # unfrozen at quit: freed, not reported leaked
