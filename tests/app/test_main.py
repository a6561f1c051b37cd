"""The command line: flags over the config file, no heavy imports, the terminal chat."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import main
from app import config as cfg
from app.launch import Launch
from app.terminal_chat import DEMO_LABEL, run_terminal_chat
from tests.app.helpers import FAST, SHORT_PROMPT

ROOT = Path(__file__).resolve().parents[2]


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[model]\nsource = 'thinking'\ndevice = 'cuda:1'\n[audio]\nmode = 'hands-free'\n")
    args = main.build_parser().parse_args(
        ["--config", str(path), "--mode", "push-to-talk", "--voice", "aiden", "--model", "/m", "--demo"]
    )
    launch = main.launch_from(args)
    config = launch.config
    assert (config.model.source, config.model.device) == ("/m", "cuda:1")
    assert (config.audio.mode, config.conversation.voice) == ("push-to-talk", "aiden")
    assert launch.demo and not launch.text_only and launch.loaded.path == path
    assert launch.file_config is not None and launch.file_config.model.source == "thinking"


def test_camera_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[camera]\nenabled = true\nsource = '1'\n")
    parse = main.build_parser().parse_args
    on = main.launch_from(parse(["--config", str(path), "--camera", "clip.avi"])).config.camera
    assert (on.enabled, on.source) == (True, "clip.avi")
    off = main.launch_from(parse(["--config", str(path), "--no-camera"])).config.camera
    assert (off.enabled, off.source) == (False, "1")
    kept = main.launch_from(parse(["--config", str(path)]))
    assert kept.config.camera.enabled and kept.file_config is not None
    assert kept.file_config.camera.source == "1"
    with pytest.raises(SystemExit):
        parse(["--camera", "0", "--no-camera"])


def test_bad_flags_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main.build_parser().parse_args(["--quantization", "int3"])
    assert "invalid choice: 'int3'" in capsys.readouterr().err


def test_the_command_line_imports_nothing_heavy() -> None:
    code = (
        "import sys, main; main.build_parser().parse_args(['--text']); "
        "heavy = [m for m in ('torch', 'PySide6', 'transformers', 'sounddevice') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_display_and_no_text_flag_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    (tmp_path / "c.toml").write_text("[model\n")
    assert main.main(["--config", str(tmp_path / "c.toml")]) == 2
    err = capsys.readouterr().err
    assert "--text" in err and f"{tmp_path / 'c.toml'}, line 1" in err


def test_the_terminal_chat_streams_replies_and_falls_back_to_the_demo(
    demo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model.loading import ModelLoadError

    monkeypatch.setenv(cfg.CONFIG_DIR_ENV, str(tmp_path))
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "tester.toml").write_text(f"name = 'Tester'\nsystem_prompt = '{SHORT_PROMPT}'\n")

    def loader(source: str, **kw: Any) -> Any:
        if source != "demo-folder":
            raise ModelLoadError(f"model {source!r} is not on this computer")
        kw["status"]("loading")
        return demo

    config = cfg.with_changes(cfg.Config(), conversation={"persona": "tester"})
    launch = Launch(cfg.LoadedConfig(config, tmp_path / "c.toml"), text_only=True)
    out = io.StringIO()
    code = run_terminal_chat(
        launch,
        stdin=io.StringIO("hello\n/quit\n"),
        out=out,
        loader=loader,
        demo_dir=lambda: "demo-folder",
        engine_options=FAST,
    )
    text = out.getvalue()
    assert code == 0
    assert "'instruct' is not on this computer" in text and f"running the {DEMO_LABEL}" in text
    assert "Tester is ready." in text
    reply = text.split("tester> ", 1)[1].split("\n", 1)[0]
    assert reply.strip()
