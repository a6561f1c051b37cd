"""Choosing and editing personas in the window: the picker filled from the library, a choice that
starts a new conversation with its persona, and an edit of the persona in use taking effect at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.desk import Desk
    from ui.persona_editor import PersonaEditor


def fill_personas(desk: Desk) -> None:
    desk.window.set_personas([(p.name, p.id) for p in desk.library.all()], desk.persona.id)


def choose_persona(desk: Desk, persona_id: str) -> None:
    desk.persona = desk.library.get(persona_id)
    desk.session.set_persona(desk.persona)
    fill_personas(desk)


def edit_personas(desk: Desk) -> PersonaEditor:
    from ui.persona_editor import PersonaEditor

    editor = PersonaEditor(desk.library, desk.persona.id, desk.window)
    editor.changed.connect(lambda persona_id: persona_edited(desk, persona_id))
    editor.open()
    return editor


def persona_edited(desk: Desk, persona_id: str) -> None:
    if persona_id == desk.persona.id:
        updated = desk.library.get(persona_id)
        if updated != desk.persona:
            desk.persona = updated
            desk.session.set_persona(updated)
    fill_personas(desk)
