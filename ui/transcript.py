"""The transcript: both sides of the conversation, the reply streaming in, interruptions marked.

Entries are kept as data and rendered to HTML on a short timer, so a burst of text deltas costs one
repaint rather than one per token.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QTextBrowser, QWidget


@dataclass
class Entry:
    role: str  # "user", "assistant" or "note"
    text: str
    turn_id: int = -1
    duration_s: float = 0.0
    interrupted: bool = False
    unheard: str = ""  # the part of an interrupted reply the user never heard
    done: bool = False
    latency: str = ""


class TranscriptView(QTextBrowser):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenExternalLinks(False)
        self.setAccessibleName("Transcript")
        self.entries: list[Entry] = []
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(30)
        self._render_timer.timeout.connect(self.render_now)

    # -- changes ------------------------------------------------------------------------------------

    def clear_entries(self) -> None:
        self.entries = []
        self._changed()

    def add_note(self, text: str) -> None:
        self.entries.append(Entry("note", text, done=True))
        self._changed()

    def add_user(self, turn_id: int, text: str, duration_s: float) -> None:
        self.entries.append(Entry("user", text, turn_id, duration_s, done=True))
        self._changed()

    def add_greeting(self, text: str) -> None:
        self.entries.append(Entry("assistant", text, done=True))
        self._changed()

    def append_reply(self, turn_id: int, text: str) -> None:
        entry = self.reply(turn_id)
        if entry is None:
            entry = Entry("assistant", "", turn_id)
            self.entries.append(entry)
        entry.text += text
        self._changed()

    def finish_reply(self, turn_id: int) -> None:
        entry = self.reply(turn_id)
        if entry is not None:
            entry.done = True
            self._changed()

    def mark_interrupted(self, turn_id: int, heard_text: str) -> None:
        entry = self.reply(turn_id)
        if entry is None:
            entry = Entry("assistant", "", turn_id)
            self.entries.append(entry)
        full = entry.text
        entry.text = heard_text
        entry.unheard = full[len(heard_text) :] if full.startswith(heard_text) else ""
        entry.interrupted = entry.done = True
        self._changed()

    def set_latency(self, turn_id: int, text: str) -> None:
        entry = self.reply(turn_id)
        if entry is not None:
            entry.latency = text
            self._changed()

    def reply(self, turn_id: int) -> Entry | None:
        for entry in reversed(self.entries):
            if entry.role == "assistant" and entry.turn_id == turn_id and turn_id >= 0:
                return entry
        return None

    # -- rendering ----------------------------------------------------------------------------------

    def _changed(self) -> None:
        if not self._render_timer.isActive():
            self._render_timer.start()

    def render_now(self) -> None:
        bar = self.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        self.setHtml("".join(_entry_html(e) for e in self.entries))
        if at_bottom:
            bar.setValue(bar.maximum())

    def plain_text(self) -> str:
        """What the transcript shows, as text (tests and accessibility)."""
        self.render_now()
        return self.toPlainText()


def _entry_html(entry: Entry) -> str:
    text = html.escape(entry.text).replace("\n", "<br>")
    if entry.role == "note":
        return f'<p style="color:#888"><i>{text}</i></p>'
    if entry.role == "user":
        who = "You" + (f" ({entry.duration_s:.1f} s)" if entry.duration_s else "")
        body = text or "<i>(spoken)</i>"
        return f'<p><b style="color:#2a6fdb">{who}:</b> {body}</p>'
    tail = ""
    if entry.interrupted:
        unheard = html.escape(entry.unheard)
        if unheard:
            tail += f' <s style="color:#aaa">{unheard}</s>'
        tail += ' <span style="color:#c0392b">[interrupted]</span>'
    elif not entry.done:
        tail = " <span style='color:#aaa'>…</span>"
    meta = f'<br><small style="color:#888">{html.escape(entry.latency)}</small>' if entry.latency else ""
    return f'<p><b style="color:#1e8449">Assistant:</b> {text}{tail}{meta}</p>'
