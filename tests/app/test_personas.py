"""Personas: presets, the default voice-chat prompt, and the user's own (create, edit, delete)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.personas import DEFAULT_PERSONA, Persona, PersonaError, PersonaLibrary, slug
from facts import VOICE_CHAT_PROMPT


def test_the_default_persona_is_the_readme_voice_chat_prompt(tmp_path: Path) -> None:
    library = PersonaLibrary(tmp_path)
    personas = library.all()
    assert personas[0].id == DEFAULT_PERSONA and len(personas) >= 3
    assert personas[0].system_prompt == VOICE_CHAT_PROMPT
    assert all(p.preset and p.greeting and p.voice in ("ethan", "chelsie", "aiden") for p in personas)
    assert not library.problems


def test_create_edit_delete_a_user_persona(tmp_path: Path) -> None:
    library = PersonaLibrary(tmp_path / "personas")
    new_id = library.new_id("Pirate Captain!")
    assert new_id == "pirate-captain"
    library.save(Persona(new_id, "Pirate Captain!", "You are a pirate.", "aiden", "Ahoy"))
    assert library.get(new_id).system_prompt == "You are a pirate." and not library.get(new_id).preset
    library.save(Persona(new_id, "Pirate Captain!", "You are a polite pirate.", "chelsie"))
    assert library.get(new_id).voice == "chelsie"
    assert library.new_id("Pirate Captain") == "pirate-captain-2"
    library.delete(new_id)
    assert library.get(new_id).id == DEFAULT_PERSONA  # unknown ids fall back to the default


def test_an_edited_preset_is_the_users_copy_and_deleting_it_restores_the_preset(tmp_path: Path) -> None:
    library = PersonaLibrary(tmp_path)
    preset = library.get("storyteller")
    library.save(Persona("storyteller", preset.name, "Only ghost stories.", preset.voice))
    assert library.get("storyteller").system_prompt == "Only ghost stories."
    library.delete("storyteller")
    assert library.get("storyteller") == preset
    with pytest.raises(PersonaError, match="preset"):
        library.delete("storyteller")


def test_bad_personas_are_refused_or_reported(tmp_path: Path) -> None:
    library = PersonaLibrary(tmp_path)
    with pytest.raises(PersonaError, match="voice"):
        library.save(Persona("x", "X", "prompt", "robot"))
    with pytest.raises(PersonaError, match="system prompt"):
        library.save(Persona("x", "X", "  "))
    (tmp_path / "broken.toml").write_text("name = \n")
    names = [p.id for p in library.all()]
    assert "broken" not in names and "broken.toml" in library.problems[0]


def test_slug() -> None:
    assert slug("Él Niño 2") == "l-ni-o-2" and slug("!!!") == "persona"
