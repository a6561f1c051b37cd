"""What a new user meets on the command line and in the settings file (issue 14): comments and edits
kept, a mistyped --config named and never created, --version and --help that say where things live,
no display named with a pointer to --text, and a text mode that leaves cleanly and keeps a journal."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

import main
from app import config as cfg
from app.history_log import read_history
from tests.app.test_window import config_dir, make_desk

__all__ = ["config_dir"]  # the fixture

ROOT = Path(__file__).resolve().parents[2]

COMMENTED = """# my settings
[model]
source = 'instruct'   # the big one

[conversation]
# who talks
persona = 'storyteller'
"""


def test_saving_keeps_comments_and_edits_made_while_the_app_ran(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(COMMENTED)
    before = cfg.load(path).config
    path.write_text(COMMENTED.replace("'instruct'", "'thinking'"))  # the user edits while the app runs
    after = cfg.with_changes(
        before, conversation={"persona": "language-tutor"}, audio={"mode": "push-to-talk"}
    )
    assert cfg.save_changes(path, before, after)
    text = path.read_text()
    assert "# my settings" in text and "# the big one" in text and "# who talks" in text
    saved = cfg.load(path).config
    assert saved.model.source == "thinking"  # the user's edit is kept
    assert (saved.conversation.persona, saved.audio.mode) == ("language-tutor", "push-to-talk")
    assert not cfg.save_changes(path, after, after)  # nothing changed: nothing written


def test_a_file_broken_while_the_app_ran_is_not_written_over(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(COMMENTED)
    before = cfg.load(path).config
    path.write_text("[model\n")
    with pytest.raises(cfg.ConfigError, match="line 1"):
        cfg.save_changes(path, before, cfg.with_changes(before, audio={"mode": "push-to-talk"}))
    assert path.read_text() == "[model\n"


def test_the_window_keeps_the_users_comments(qtbot: Any, demo: Any, config_dir: Path) -> None:
    desk = make_desk(qtbot, demo, config_dir, text=COMMENTED)
    qtbot.waitUntil(lambda: desk.session.model_info is not None, timeout=60_000)
    desk.choose_persona("language-tutor")
    desk.window.close()
    text = (config_dir / "config.toml").read_text()
    assert text.startswith("# my settings\n[model]\nsource = 'instruct'   # the big one\n")
    assert "# who talks" in text and cfg.load(config_dir / "config.toml").config.conversation.persona == (
        "language-tutor"
    )


def test_a_mistyped_config_path_is_named_and_not_created(
    qtbot: Any, demo: Any, config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo.toml"
    launch = main.launch_from(main.build_parser().parse_args(["--config", str(missing), "--text"]))
    assert launch.loaded.missing and str(missing) in launch.loaded.message
    from app.desk import Desk
    from tests.app.helpers import FAST

    desk = Desk(launch, loader=lambda source, **kw: demo, demo_dir=lambda: Path("demo"), engine_options=FAST)
    qtbot.addWidget(desk.window)
    desk.start()
    assert str(missing) in desk.window.error_banner.text()
    qtbot.waitUntil(lambda: desk.session.model_info is not None, timeout=60_000)
    desk.window.close()
    assert not missing.exists()


def test_version_and_help_say_where_things_live(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(cfg.CONFIG_DIR_ENV, str(tmp_path / "conf"))
    monkeypatch.setenv("OMNIDESK_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SystemExit):
        main.main(["--version"])
    assert capsys.readouterr().out.startswith("omnidesk 0.")
    with pytest.raises(SystemExit):
        main.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert str(tmp_path / "conf" / "config.toml") in text and str(tmp_path / "data" / "conversations") in text
    assert "--quantization {auto,none,nf4} default: auto" in text


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(OMNIDESK_CONFIG_DIR=str(tmp_path / "config"), OMNIDESK_DATA_DIR=str(tmp_path / "data"))
    env.update(extra)
    return env


def test_a_display_that_does_not_answer_points_to_text_mode(tmp_path: Path) -> None:
    env = _environment(tmp_path, DISPLAY=":93")  # nothing listens there
    done = subprocess.run(
        [sys.executable, "main.py", "--demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "':93' cannot be reached" in done.stderr and "--text" in done.stderr
    assert "Reinstalling the application" not in done.stderr


@pytest.mark.slow
def test_text_mode_leaves_cleanly_on_ctrl_c_and_keeps_a_journal(tmp_path: Path, demo_dir: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(demo_dir, cache / "omnidesk" / "demo-model")
    env = _environment(tmp_path, XDG_CACHE_HOME=str(cache), PYTHONUNBUFFERED="1")
    chat = subprocess.Popen(
        [sys.executable, "main.py", "--text", "--demo"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert chat.stdin is not None and chat.stdout is not None
    seen = _read_until(chat, "you> ")
    chat.stdin.write("hello there\n")
    chat.stdin.flush()
    seen += _read_until(chat, "you> ")  # the reply streamed, and the prompt is back
    chat.send_signal(signal.SIGINT)
    out, err = chat.communicate(timeout=60)
    assert chat.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    journal = [r for p in (tmp_path / "data" / "conversations").glob("*.jsonl") for r in read_history(p)]
    kinds = [r["kind"] for r in journal]
    assert "user" in kinds and "assistant" in kinds
    assert next(r for r in journal if r["kind"] == "user")["text"] == "hello there"
    assert "conversation is kept in" in seen + out


def _read_until(process: subprocess.Popen[str], marker: str, timeout_s: float = 180.0) -> str:
    """The process's output up to the next `marker` (a prompt has no newline: read bytes as they come)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            piece = os.read(fd, 4096)
            if not piece:
                break
            seen += piece
            if seen.decode(errors="replace").endswith(marker):
                return seen.decode()
        elif process.poll() is not None:
            break
    err = process.stderr.read() if process.stderr else ""
    raise AssertionError(f"no {marker!r} in the output: {seen!r}; stderr: {err}")


def test_a_broken_model_folder_is_named_and_offers_no_download(
    qtbot: Any, demo: Any, config_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0")
    desk = make_desk(qtbot, demo, config_dir, demo_flag=False, text=f"[model]\nsource = '{folder}'\n")
    qtbot.waitUntil(lambda: desk.first_run is not None, timeout=10_000)
    dialog = desk.first_run
    assert dialog is not None
    intro = dialog.findChild(QLabel).text()  # type: ignore[union-attr]
    assert f"The folder {folder} is not a usable model checkpoint" in intro
    assert "not on this computer" not in intro and "Meanwhile the app runs the demo" in intro
    assert not dialog.download_button.isVisibleTo(dialog) and dialog.details_button.isVisibleTo(dialog)
    assert "config.json" in dialog.details.text() and not dialog.details.isVisibleTo(dialog)
    dialog.details_button.click()
    assert dialog.details.isVisibleTo(dialog)  # the technical text, one click away
    qtbot.waitUntil(lambda: desk.session.model_info is not None, timeout=60_000)
    desk.window.close()


def test_keeping_the_demo_is_remembered(qtbot: Any, demo: Any, config_dir: Path) -> None:
    desk = make_desk(qtbot, demo, config_dir, demo_flag=False, text="[model]\nsource = 'instruct'\n")
    qtbot.waitUntil(lambda: desk.first_run is not None, timeout=10_000)
    dialog = desk.first_run
    assert dialog is not None and "is not downloaded yet" in dialog.findChild(QLabel).text()  # type: ignore[union-attr]
    assert dialog.download_button.isVisibleTo(dialog) and "offline mode is on" in dialog.size_label.text()
    qtbot.waitUntil(lambda: desk.session.model_info is not None, timeout=60_000)
    qtbot.mouseClick(dialog.demo_button, Qt.MouseButton.LeftButton)
    desk.window.close()
    again = make_desk(qtbot, demo, config_dir, demo_flag=False)
    qtbot.waitUntil(lambda: again.session.model_info is not None, timeout=60_000)
    assert again.first_run is None and again.session.model_info.is_demo  # type: ignore[union-attr]
    again.window.close()


def test_a_missing_gpu_offers_the_cpu(qtbot: Any, demo: Any, demo_dir: Path, config_dir: Path) -> None:
    import torch

    from model.loading import pick_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the case is a machine without it")
    path = config_dir / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f"[model]\nsource = '{demo_dir}'\ndevice = 'cuda'\n")
    loaded = cfg.load(path)
    from app.desk import Desk
    from app.launch import Launch
    from tests.app.helpers import FAST

    def loader(source: str, *, device: str = "auto", **kw: Any) -> Any:
        pick_device(device)  # the real check: raises without CUDA
        return demo

    desk = Desk(Launch(loaded, text_only=True, file_config=loaded.config), loader=loader, engine_options=FAST)
    qtbot.addWidget(desk.window)
    desk.first_run_flow.model_found.emit("my-folder")  # as if the folder were there
    desk.start()
    qtbot.waitUntil(
        lambda: desk.first_run is not None and desk.first_run.cpu_button.isVisibleTo(desk.first_run),
        timeout=60_000,
    )
    dialog = desk.first_run
    assert dialog is not None and dialog.cpu_button.isVisibleTo(dialog)
    assert "no usable CUDA GPU" in dialog.findChild(QLabel).text()  # type: ignore[union-attr]
    assert "No model is loaded now" in dialog.findChild(QLabel).text()  # type: ignore[union-attr]
    qtbot.mouseClick(dialog.cpu_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: desk.session.model_info is not None, timeout=60_000)
    assert desk.session.model_info.device == "cpu"  # type: ignore[union-attr]
    desk.window.close()
    assert cfg.load(path).config.model.device == "cpu"  # remembered


def test_model_settings_apply_by_reloading_and_about_says_where_things_live(
    qtbot: Any, demo: Any, demo_dir: Path, config_dir: Path
) -> None:
    from app import settings_flow
    from app.desk import Desk
    from app.launch import Launch
    from tests.app.helpers import FAST

    path = config_dir / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f"# mine\n[model]\nsource = '{demo_dir}'\n")
    loaded = cfg.load(path)
    loads: list[dict[str, Any]] = []

    def loader(source: str, **how: Any) -> Any:
        loads.append({"source": source, **how})
        return demo

    desk = Desk(Launch(loaded, text_only=True, file_config=loaded.config), loader=loader, engine_options=FAST)
    qtbot.addWidget(desk.window)
    desk.start()
    qtbot.waitUntil(lambda: desk.session.model_info is not None, timeout=60_000)
    dialog = settings_flow.open_settings(desk)
    dialog.boxes["device"].setCurrentText("cpu")
    dialog.boxes["quantization"].setCurrentText("none")
    dialog.apply_button.click()
    qtbot.waitUntil(lambda: len(loads) == 2 and desk.session.model_info is not None, timeout=60_000)
    assert (loads[1]["device"], loads[1]["quantization"]) == ("cpu", "none")
    about = settings_flow.show_about(desk)
    assert str(path) in about.text() and "conversations" in about.text()
    about.close()
    desk.window.close()
    text = path.read_text()
    assert text.startswith("# mine\n") and 'quantization = "none"' in text and 'device = "cpu"' in text


def test_every_broken_persona_and_a_missing_one_are_listed(qtbot: Any, demo: Any, config_dir: Path) -> None:
    personas = config_dir / "personas"
    personas.mkdir(parents=True)
    (personas / "first.toml").write_text("name = 'First'\nsystem_prompt = \n")
    (personas / "second.toml").write_text("name = 'Second'\nvoice = 'nobody'\nsystem_prompt = 'hi'\n")
    desk = make_desk(qtbot, demo, config_dir, text="[conversation]\npersona = 'second'\n")
    problems = desk.window.error_banner.messages()
    assert any("first.toml" in p for p in problems) and any("second.toml" in p for p in problems)
    assert any("no usable persona 'second'" in p and "using" in p for p in problems)
    qtbot.waitUntil(lambda: desk.session.model_info is not None, timeout=60_000)
    desk.window.close()
