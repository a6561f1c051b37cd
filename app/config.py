"""The settings: a frozen dataclass tree read from TOML in the user config directory.

The file is checked once, at load. A broken file is never rewritten: the app runs on the defaults
and says which file and line is wrong. Command-line flags override what the file says.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from app.atomic_file import write_atomic
from app.tool_config import (
    WHILE_RUNNING,
    McpConfigProblem,
    McpServerSettings,
    ToolSettings,
    parse_mcp_servers,
)
from audio_io.barge_in import RECOVERIES as BACKCHANNELS
from audio_io.end_of_turn import RESPONSIVENESS
from facts import DTYPES, QUANTIZATIONS, VOICES

CONFIG_FILE = "config.toml"
CONFIG_DIR_ENV = "OMNIDESK_CONFIG_DIR"
MODES = ("hands-free", "push-to-talk")


@dataclass(frozen=True)
class ModelSettings:
    """Which checkpoint and how to load it; `source` is a hub id, an alias or a folder."""

    source: str = "instruct"
    quantization: str = "auto"
    device: str = "auto"
    dtype: str = "auto"


@dataclass(frozen=True)
class ConversationSettings:
    """`voice` empty means the persona's own voice. `transcribe`: the model writes down the words of
    each spoken turn after its reply (shown in place of "(spoken)" in the window, journal and export)."""

    persona: str = "assistant"
    voice: str = ""
    transcribe: bool = True


@dataclass(frozen=True)
class AudioSettings:
    """Device names are substrings of PortAudio names; empty means the system default."""

    input_device: str = ""
    output_device: str = ""
    mode: str = "hands-free"
    echo_cancellation: bool = True
    barge_in: bool = True
    end_of_turn_silence_ms: int = 500  # without the end-of-turn model: this much silence ends a turn
    # hands-free: how soon a pause ends your turn ("eager", "balanced", "patient"; audio_io.end_of_turn)
    responsiveness: str = "balanced"
    # a cough or "mm-hm" while the assistant speaks: "pause" or "duck" it, resuming if no speech
    # follows; "off": every sound that passes for speech cuts the reply
    backchannels: str = "pause"


@dataclass(frozen=True)
class CameraSettings:
    """Off by default: a webcam's light comes on when it opens, so the user turns it on (the window's
    toggle or `--camera`). `source` is a camera index, part of a camera's name, or a video file; in
    the file an index may be written as a number."""

    enabled: bool = False
    source: str = "0"
    width: int = 640
    height: int = 480
    fps: float = 15.0


@dataclass(frozen=True)
class ScreenSettings:
    """Screen sharing itself is off at every start (nothing is shared unless the user turns it on
    in the window); what was last picked is remembered: "screen", or "window:" and its title."""

    target: str = "screen"


@dataclass(frozen=True)
class EngineConnection:
    """Where the engine runs: `url` empty starts our own (`omnidesk serve`) as a child process;
    `ws://` or `wss://` is a remote Omni Desk server, `http://` or `https://` a vLLM-Omni server
    (its OpenAI API base, e.g. http://gpu-box:8000/v1). The key is read from the environment
    variable named by `api_key_env`, never from this file."""

    url: str = ""
    api_key_env: str = "OMNIDESK_API_KEY"


RANGES: dict[tuple[str, str], tuple[int, int]] = {
    ("audio", "end_of_turn_silence_ms"): (150, 5000),
    ("camera", "width"): (16, 7680),
    ("camera", "height"): (16, 4320),
    ("camera", "fps"): (1, 120),
    ("tools", "timeout_s"): (1, 600),
}
NUMBER_AS_TEXT = {("camera", "source")}  # `source = 0` means the string "0" (a camera index)


@dataclass(frozen=True)
class WindowSettings:
    geometry: str = ""  # base64 of QWidget.saveGeometry()
    # push-to-talk while the window is in the background, e.g. "<ctrl>+<alt>+<space>" (X11; off when "")
    talk_hotkey: str = ""


@dataclass(frozen=True)
class Config:
    model: ModelSettings = field(default_factory=ModelSettings)
    conversation: ConversationSettings = field(default_factory=ConversationSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    camera: CameraSettings = field(default_factory=CameraSettings)
    screen: ScreenSettings = field(default_factory=ScreenSettings)
    engine: EngineConnection = field(default_factory=EngineConnection)
    window: WindowSettings = field(default_factory=WindowSettings)
    tools: ToolSettings = field(default_factory=ToolSettings)
    mcp: tuple[McpServerSettings, ...] = ()  # [mcp.NAME] tables (app/tool_config.py); never written


CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("model", "quantization"): QUANTIZATIONS,
    ("model", "dtype"): DTYPES,
    ("conversation", "voice"): ("", *VOICES),
    ("audio", "mode"): MODES,
    ("audio", "responsiveness"): RESPONSIVENESS,
    ("audio", "backchannels"): BACKCHANNELS,
    ("tools", "while_running"): WHILE_RUNNING,
}


class ConfigError(ValueError):
    """What is wrong with a config file, and where."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}, line {line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class LoadedConfig:
    """The config to use; `error` set means the file was broken and the defaults are in use."""

    config: Config
    path: Path
    error: ConfigError | None = None
    missing: bool = False  # a file named on the command line that does not exist

    @property
    def writable(self) -> bool:
        """A broken file is kept for the user to fix, and a mistyped `--config` is not created."""
        return self.error is None and not self.missing

    @property
    def message(self) -> str:
        if self.missing:
            return (
                f"The settings file {self.path} does not exist; using the defaults, and nothing will "
                "be saved there (check the --config path, or create the file to use it)."
            )
        if self.error is None:
            return ""
        return f"Settings file broken; using the defaults and leaving the file as it is: {self.error}"


def config_dir() -> Path:
    """The user config directory (`OMNIDESK_CONFIG_DIR` overrides it, for tests and portable use)."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("omnidesk"))


def default_path() -> Path:
    return config_dir() / CONFIG_FILE


def load(path: Path | None = None, *, named: bool = False) -> LoadedConfig:
    """Read and check `path` (default: the user's file); a missing file gives the defaults (and is
    created on quit, unless the user `named` it on the command line: a typo must not become a file)."""
    path = path or default_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LoadedConfig(Config(), path, missing=named)
    except (OSError, UnicodeDecodeError) as error:
        return LoadedConfig(Config(), path, ConfigError(path, 1, f"cannot be read ({error})"))
    try:
        return LoadedConfig(parse(text, path), path)
    except ConfigError as error:
        return LoadedConfig(Config(), path, error)


def parse(text: str, path: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line = getattr(error, "lineno", None) or _line_from_message(str(error))
        problem = getattr(error, "msg", None) or re.sub(r"\s*\(at line.*\)$", "", str(error))
        raise ConfigError(path, line, f"not valid TOML: {problem}") from error
    sections: dict[str, Any] = {}
    try:
        sections["mcp"] = parse_mcp_servers(data.pop("mcp", {}))
    except McpConfigProblem as problem:
        raise ConfigError(path, _find_mcp_line(text, problem.key), str(problem)) from problem
    for section in fields(Config):
        if section.name == "mcp":
            continue
        table = data.pop(section.name, {})
        if not isinstance(table, dict):
            raise ConfigError(path, _find_line(text, None, section.name), f"{section.name} must be a table")
        sections[section.name] = _section(section.name, table, text, path)
    if data:
        name = next(iter(data))
        known = ", ".join(f"[{f.name}]" for f in fields(Config))
        raise ConfigError(path, _find_line(text, None, name), f"unknown setting {name!r} (known: {known})")
    return Config(**sections)


def _section(name: str, table: dict[str, Any], text: str, path: Path) -> Any:
    defaults = getattr(Config(), name)
    values: dict[str, Any] = {}
    known = {f.name: f for f in fields(defaults)}
    for key, item in table.items():
        if key not in known:
            names = ", ".join(known)
            problem = f"unknown setting {name}.{key} (known: {names})"
            raise ConfigError(path, _find_line(text, name, key), problem)
        expected = type(getattr(defaults, key))
        if (name, key) in NUMBER_AS_TEXT and type(item) is int:
            item = str(item)
        if type(item) is not expected and not (expected is float and type(item) is int):
            raise ConfigError(
                path,
                _find_line(text, name, key),
                f"{name}.{key} must be {_type_name(expected)}, not {_type_name(type(item))}",
            )
        choices = CHOICES.get((name, key))
        if choices is not None and item not in choices:
            shown = ", ".join(repr(c) for c in choices)
            problem = f"{name}.{key} must be one of {shown}, not {item!r}"
            raise ConfigError(path, _find_line(text, name, key), problem)
        bounds = RANGES.get((name, key))
        if bounds is not None and not bounds[0] <= item <= bounds[1]:
            problem = f"{name}.{key} must be between {bounds[0]} and {bounds[1]}, not {item!r}"
            raise ConfigError(path, _find_line(text, name, key), problem)
        values[key] = expected(item)
    return replace(defaults, **values)


def _find_mcp_line(text: str, key: str) -> int:
    """The line of an `[mcp...]` table's header or of `key` under it (1 if unseen)."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("[mcp") and (key in line or key == "mcp"):
            return number
        if re.match(rf"^{re.escape(key)}\s*=", line):
            return number
    return 1


def _type_name(kind: type) -> str:
    return {str: "a string", bool: "true or false", int: "an integer", float: "a number"}.get(
        kind, kind.__name__
    )


def _line_from_message(message: str) -> int:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else 1


def _find_line(text: str, table: str | None, key: str) -> int:
    """The line of `key` inside `[table]` (or of the table itself, or at the top level); 1 if unseen."""
    current: str | None = None
    header_line = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", line)
        if header:
            current = header.group(1).strip('"')
            if table is None and current == key:
                return number
            if current == table:
                header_line = number
            continue
        if current == table and re.match(rf'^"?{re.escape(key)}"?\s*=', line):
            return number
    return header_line or 1


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


HEADER = "# Omni Desk settings. Edit freely: your comments and layout are kept when the app saves.\n"


def save(config: Config, path: Path | None = None) -> Path:
    """Write every setting of `config` into `path` (creating it), keeping what else the file says."""
    path = path or default_path()
    save_changes(path, Config(), config, every=True)
    return path


def save_changes(path: Path, before: Config, after: Config, *, every: bool = False) -> bool:
    """Write the settings that differ between `before` and `after` (all of them with `every`) into
    the file as it is on disk now, through tomlkit, so the user's comments, layout and any edit
    made while the app ran are kept. False when nothing had to be written.

    Raises `ConfigError` when the file on disk has become unreadable (it is then left as it is)."""
    changes = [
        (section.name, key, item)
        for section in fields(Config)
        if section.name != "mcp"
        for key, item in to_dict(getattr(after, section.name)).items()
        if every or getattr(getattr(before, section.name), key) != item
    ]
    if not changes:
        return False
    import tomlkit

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = HEADER
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, 1, f"cannot be read ({error})") from error
    parse(text, path)  # refuse to write over a file the user left broken
    document = tomlkit.parse(text)
    for section, key, item in changes:
        if section not in document:
            document[section] = tomlkit.table()
        document[section][key] = item  # type: ignore[index]
    updated = tomlkit.dumps(document)
    if updated == text:
        return False
    write_atomic(path, updated)
    return True


def with_changes(config: Config, **sections: dict[str, Any]) -> Config:
    """`with_changes(c, model={"device": "cpu"})`: replace fields, skipping values that are None."""
    updated = {}
    for name, changes in sections.items():
        current = getattr(config, name)
        kept = {key: item for key, item in changes.items() if item is not None}
        updated[name] = replace(current, **kept)
    return replace(config, **updated)
