"""Personas: a name, a system prompt, a voice and a greeting.

Presets ship in `assets/personas/*.toml`; the user's own live in `personas/` of the user config
directory and win over a preset of the same id. Deleting a user persona that shadows a preset brings
the preset back; presets themselves cannot be deleted.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from app.atomic_file import write_atomic
from facts import VOICES

PRESET_DIR = Path(__file__).resolve().parent.parent / "assets" / "personas"
DEFAULT_PERSONA = "assistant"


class PersonaError(ValueError):
    """A persona file or edit that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Persona:
    id: str
    name: str
    system_prompt: str
    voice: str = "ethan"
    greeting: str = ""
    preset: bool = False  # shipped with the app (not a user file)

    def check(self) -> None:
        if not self.name.strip():
            raise PersonaError("a persona needs a name")
        if not self.system_prompt.strip():
            raise PersonaError(f"persona {self.name!r} needs a system prompt")
        if self.voice not in VOICES:
            raise PersonaError(f"persona {self.name!r}: voice must be one of {', '.join(VOICES)}")


def slug(name: str) -> str:
    """A file-safe id from a display name."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return text or "persona"


def read_persona(path: Path, *, preset: bool) -> Persona:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise PersonaError(f"{path}: {error}") from error
    values = {key: data.get(key, "") for key in ("name", "system_prompt", "voice", "greeting")}
    if not all(isinstance(v, str) for v in values.values()):
        raise PersonaError(f"{path}: name, system_prompt, voice and greeting must be strings")
    persona = Persona(
        id=path.stem,
        name=values["name"],
        system_prompt=values["system_prompt"],
        voice=values["voice"] or "ethan",
        greeting=values["greeting"],
        preset=preset,
    )
    try:
        persona.check()
    except PersonaError as error:
        raise PersonaError(f"{path}: {error}") from error
    return persona


class PersonaLibrary:
    """The presets and the user's personas; `problems` lists files that could not be read."""

    def __init__(self, user_dir: Path, preset_dir: Path = PRESET_DIR) -> None:
        self.user_dir = user_dir
        self.preset_dir = preset_dir
        self.problems: list[str] = []

    def all(self) -> list[Persona]:
        """Every persona, the default first, then by name."""
        self.problems = []
        found: dict[str, Persona] = {}
        for folder, preset in ((self.preset_dir, True), (self.user_dir, False)):
            for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
                try:
                    found[path.stem] = read_persona(path, preset=preset)
                except PersonaError as error:
                    self.problems.append(str(error))
        return sorted(found.values(), key=lambda p: (p.id != DEFAULT_PERSONA, p.name.lower()))

    def get(self, persona_id: str) -> Persona:
        """The persona `persona_id`, or the default one when there is no such persona."""
        personas = {p.id: p for p in self.all()}
        if persona_id in personas:
            return personas[persona_id]
        if DEFAULT_PERSONA in personas:
            return personas[DEFAULT_PERSONA]
        raise PersonaError(f"no persona {persona_id!r} and no default persona in {self.preset_dir}")

    def fallback_note(self, persona_id: str, used: Persona) -> str:
        """What to tell the user when `persona_id` was asked for and `used` is what they got."""
        if not persona_id or persona_id == used.id:
            return ""
        known = ", ".join(p.id for p in self.all())
        return f"There is no usable persona {persona_id!r} (personas: {known}); using {used.name!r}."

    def save(self, persona: Persona) -> Persona:
        """Create or update a user persona (an edited preset is saved as the user's own copy)."""
        persona.check()
        persona_id = persona.id or slug(persona.name)
        saved = Persona(persona_id, persona.name, persona.system_prompt, persona.voice, persona.greeting)
        data = {
            "name": saved.name,
            "voice": saved.voice,
            "greeting": saved.greeting,
            "system_prompt": saved.system_prompt,
        }
        import tomlkit

        write_atomic(self.user_dir / f"{persona_id}.toml", tomlkit.dumps(data))
        return saved

    def save_fields(self, persona_id: str, name: str, prompt: str, voice: str, greeting: str) -> Persona:
        """`save` of a persona given as the editor's fields."""
        return self.save(Persona(persona_id, name, prompt, voice, greeting))

    def is_preset(self, persona_id: str) -> bool:
        return (self.preset_dir / f"{persona_id}.toml").is_file()

    def new_id(self, name: str) -> str:
        """An id for a new persona that collides with none."""
        taken = {p.id for p in self.all()}
        base = slug(name)
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}-{n}", n + 1
        return candidate

    def delete(self, persona_id: str) -> None:
        path = self.user_dir / f"{persona_id}.toml"
        if not path.is_file():
            raise PersonaError(
                f"{persona_id!r} is a preset or unknown: only your own personas can be deleted"
            )
        path.unlink()

    def is_user(self, persona_id: str) -> bool:
        return (self.user_dir / f"{persona_id}.toml").is_file()
