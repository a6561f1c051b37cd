"""The config file: round trip, atomic write, and a broken file that is reported and kept."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from app import config as cfg


def test_defaults_when_the_file_is_missing(tmp_path: Path) -> None:
    loaded = cfg.load(tmp_path / "none.toml")
    assert loaded.config == cfg.Config() and loaded.error is None and loaded.writable


def test_config_round_trips(tmp_path: Path) -> None:
    config = cfg.with_changes(
        cfg.Config(),
        model={"source": "/models/omni", "quantization": "nf4", "device": "cuda:1"},
        conversation={"persona": "tutor", "voice": "chelsie"},
        audio={"input_device": 'USB "Mic" \\ 2', "mode": "push-to-talk", "end_of_turn_silence_ms": 800},
        window={"geometry": "AdnQywADAAA="},
    )
    path = cfg.save(config, tmp_path / "sub" / "config.toml")
    assert cfg.load(path) == cfg.LoadedConfig(config, path)
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp file left


@pytest.mark.parametrize("text", ["plain", 'quo"te\\back', "line\nbreak\ttab", "ctrl\x01\x7f", "ünïcode 🎙"])
def test_strings_survive_toml(tmp_path: Path, text: str) -> None:
    path = cfg.save(cfg.with_changes(cfg.Config(), audio={"input_device": text}), tmp_path / "c.toml")
    assert tomllib.loads(path.read_text())["audio"]["input_device"] == text


BROKEN = [
    ('[model]\nsource = "instruct"\ndevice = cuda\n', 3, "not valid TOML"),
    ("[model]\nquantization = 'int3'\n", 2, "model.quantization must be one of"),
    ("[audio]\nmode = 'hands-free'\n\nbarge_in = 'yes'\n", 4, "audio.barge_in must be true or false"),
    ("[conversation]\npersona = 'x'\ncolour = 'red'\n", 3, "unknown setting conversation.colour"),
    ("[model]\nsource = 'x'\n[extras]\na = 1\n", 3, "unknown setting 'extras'"),
    ("[audio]\nend_of_turn_silence_ms = 20\n", 2, "between 150 and 5000, not 20"),
    ("[camera]\nenabled = true\nfps = 0.5\n", 3, "camera.fps must be between 1 and 120, not 0.5"),
    ("[camera]\nwidth = 8\n", 2, "camera.width must be between 16 and 7680"),
    ("[camera]\nsource = true\n", 2, "camera.source must be a string"),
]


@pytest.mark.parametrize(("text", "line", "problem"), BROKEN)
def test_a_broken_file_names_file_and_line_uses_defaults_and_is_kept(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    before = path.stat().st_mtime_ns
    loaded = cfg.load(path)
    assert loaded.config == cfg.Config()
    assert loaded.error is not None and loaded.error.line == line
    assert str(path) in loaded.message and f"line {line}" in loaded.message and problem in loaded.message
    assert not loaded.writable
    assert path.read_text() == text and path.stat().st_mtime_ns == before


def test_config_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cfg.CONFIG_DIR_ENV, str(tmp_path))
    assert cfg.default_path() == tmp_path / "config.toml"


def test_with_changes_skips_none() -> None:
    config = cfg.with_changes(cfg.Config(), model={"device": None, "dtype": "float16"})
    assert config.model.device == "auto" and config.model.dtype == "float16"


def test_camera_settings_default_off_and_take_an_index_or_a_name(tmp_path: Path) -> None:
    assert not cfg.Config().camera.enabled
    path = tmp_path / "config.toml"
    path.write_text("[camera]\nenabled = true\nsource = 2\nfps = 30\n")
    camera = cfg.load(path).config.camera
    assert (camera.enabled, camera.source, camera.fps, camera.width) == (True, "2", 30.0, 640)
    path.write_text("[camera]\nsource = 'Logitech'\n")
    assert cfg.load(path).config.camera.source == "Logitech"
