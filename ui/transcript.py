"""The transcript: both sides of the conversation, the reply streaming in, interruptions marked.

Entries are kept as data and rendered on a short timer, so a burst of text deltas costs one update
rather than one per token; an update re-renders only the entries from the first changed one on, so a
long conversation costs no more per token than a short one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from PySide6.QtCore import QTimer, QUrl
from PySide6.QtGui import QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget


@dataclass
class Entry:
    role: str  # "user", "assistant", "note" or "tool" (one call, collapsed until clicked)
    text: str
    turn_id: int = -1
    duration_s: float = 0.0
    interrupted: bool = False
    unheard: str = ""  # the part of an interrupted reply the user never heard
    done: bool = False
    latency: str = ""
    ended_early: bool = False  # the end-of-turn model judged the turn complete at a pause
    call_id: str = ""  # a tool entry's call; its `text` is the tool's name
    arguments: str = ""
    result: str = ""
    state: str = ""  # a tool entry: "called", "asking", "running", "done" or "failed"
    expanded: bool = False


class TranscriptView(QTextBrowser):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenExternalLinks(False)
        self.setOpenLinks(False)
        self.anchorClicked.connect(self._clicked)
        self.setAccessibleName("Transcript")
        self.entries: list[Entry] = []
        self._starts: list[int] = []  # document position where each rendered entry begins
        self._dirty_from: int | None = None
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(30)
        self._render_timer.timeout.connect(self.render_now)

    # -- changes ------------------------------------------------------------------------------------

    def clear_entries(self) -> None:
        self.entries = []
        self._changed(0)

    def add_note(self, text: str) -> None:
        self._add(Entry("note", text, done=True))

    def add_user(self, turn_id: int, text: str, duration_s: float, *, ended_early: bool = False) -> None:
        self._add(Entry("user", text, turn_id, duration_s, done=True, ended_early=ended_early))

    def add_greeting(self, text: str) -> None:
        self._add(Entry("assistant", text, done=True))

    def append_reply(self, turn_id: int, text: str) -> None:
        index = self._reply_or_new(turn_id)
        self.entries[index].text += text
        self._changed(index)

    def finish_reply(self, turn_id: int) -> None:
        index = self._reply_index(turn_id)
        if index is not None:
            self.entries[index].done = True
            self._changed(index)

    def mark_interrupted(self, turn_id: int, heard_text: str) -> None:
        index = self._reply_or_new(turn_id)
        entry = self.entries[index]
        full = entry.text
        entry.text = heard_text
        entry.unheard = full[len(heard_text) :] if full.startswith(heard_text) else ""
        entry.interrupted = entry.done = True
        self._changed(index)

    def set_user_text(self, turn_id: int, text: str) -> None:
        """The words of a spoken turn, once the engine has transcribed them."""
        for index in range(len(self.entries) - 1, -1, -1):
            entry = self.entries[index]
            if entry.role == "user" and entry.turn_id == turn_id and turn_id >= 0:
                entry.text = text
                self._changed(index)
                return

    def add_tool_call(self, turn_id: int, call_id: str, name: str, arguments: str) -> None:
        """A call of the model, after what the reply said so far (which the rest of it follows)."""
        said = self._reply_index(turn_id)
        if said is not None:
            self.entries[said].done = True
            self._changed(said)
        self._add(
            Entry("tool", name, turn_id, done=True, call_id=call_id, arguments=arguments, state="called")
        )

    def set_tool_state(self, call_id: str, state: str, result: str = "") -> None:
        """ "asking", "running", "done" or "failed" (`result`: what came back, or what went wrong)."""
        for index, entry in enumerate(self.entries):
            if entry.role == "tool" and entry.call_id == call_id:
                entry.state, entry.result = state, result or entry.result
                self._changed(index)
                return

    def toggle_tool(self, call_id: str) -> None:
        """Show or hide a call's arguments and result."""
        for index, entry in enumerate(self.entries):
            if entry.role == "tool" and entry.call_id == call_id:
                entry.expanded = not entry.expanded
                self._changed(index)

    def _clicked(self, url: QUrl) -> None:
        if url.scheme() == "tool":
            self.toggle_tool(url.path())

    def set_latency(self, turn_id: int, text: str) -> None:
        index = self._reply_index(turn_id)
        if index is not None:
            self.entries[index].latency = text
            self._changed(index)

    def reply(self, turn_id: int) -> Entry | None:
        index = self._reply_index(turn_id)
        return None if index is None else self.entries[index]

    def _reply_index(self, turn_id: int) -> int | None:
        for index in range(len(self.entries) - 1, -1, -1):
            entry = self.entries[index]
            if entry.role == "assistant" and entry.turn_id == turn_id and turn_id >= 0:
                return index
        return None

    def _reply_or_new(self, turn_id: int) -> int:
        index = self._reply_index(turn_id)
        called = any(e.role == "tool" and e.turn_id == turn_id for e in self.entries[(index or 0) :])
        if index is None or called:  # the reply goes on below its calls
            self.entries.append(Entry("assistant", "", turn_id))
            index = len(self.entries) - 1
        return index

    def _add(self, entry: Entry) -> None:
        self.entries.append(entry)
        self._changed(len(self.entries) - 1)

    # -- rendering ----------------------------------------------------------------------------------

    def _changed(self, index: int) -> None:
        self._dirty_from = index if self._dirty_from is None else min(self._dirty_from, index)
        if not self._render_timer.isActive():
            self._render_timer.start()

    def render_now(self) -> None:
        """Replace the document from the first changed entry to the end."""
        first = self._dirty_from
        if first is None:
            return
        self._dirty_from = None
        bar = self.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        first = min(first, len(self._starts))
        cursor = QTextCursor(self.document())
        if first == 0:
            self.clear()
            cursor = QTextCursor(self.document())
        elif first < len(self._starts):
            cursor.setPosition(self._starts[first])
            cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
        else:
            cursor.movePosition(QTextCursor.MoveOperation.End)
        del self._starts[first:]
        for index in range(first, len(self.entries)):
            self._starts.append(cursor.position())
            if index > 0:
                cursor.insertBlock(_SPACED, QTextCharFormat())
            cursor.insertHtml(_entry_html(self.entries[index]))
        if at_bottom:
            bar.setValue(bar.maximum())

    def plain_text(self) -> str:
        """What the transcript shows, as text (tests and accessibility)."""
        self.render_now()
        return self.toPlainText()

    def full_render_text(self) -> str:
        """The same entries rendered from scratch (to check the incremental rendering)."""
        other = QTextBrowser()
        other.setHtml("".join(_entry_html(e) for e in self.entries))
        return other.toPlainText()


_SPACED = QTextBlockFormat()
_SPACED.setTopMargin(8)


EARLY_MARK = ' <small style="color:#888">(ended at a pause the model judged final)</small>'


def _entry_html(entry: Entry) -> str:
    text = html.escape(entry.text).replace("\n", "<br>")
    if entry.role == "note":
        return f'<p style="color:#888"><i>{text}</i></p>'
    if entry.role == "tool":
        return _tool_html(entry)
    if entry.role == "user":
        who = "You" + (f" ({entry.duration_s:.1f} s)" if entry.duration_s else "")
        body = text or "<i>(spoken)</i>"
        if entry.ended_early:
            body += EARLY_MARK
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


TOOL_STATES = {
    "called": "called",
    "asking": "waiting for your yes or no",
    "running": "running…",
    "done": "done",
    "failed": "did not work",
}


def _tool_html(entry: Entry) -> str:
    """One call, collapsed to a line (the tool and how it went); a click shows its arguments and result."""
    name, state = html.escape(entry.text), TOOL_STATES.get(entry.state, entry.state)
    colour = "#c0392b" if entry.state == "failed" else "#7d6608"
    line = (
        f'<a href="tool:{html.escape(entry.call_id)}" style="color:{colour}">Tool {name or "?"}: {state}</a>'
    )
    if entry.state == "failed" and entry.result:
        line += f' <span style="color:#888">{html.escape(entry.result)}</span>'
    if not entry.expanded:
        return f'<p style="margin-left:16px"><small>{line} ▸</small></p>'
    arguments = html.escape(entry.arguments).replace("\n", "<br>")
    result = html.escape(entry.result).replace("\n", "<br>")
    details = f"<br>arguments: <code>{arguments}</code>" + (
        f"<br>result: <code>{result}</code>" if result else ""
    )
    return f'<p style="margin-left:16px"><small>{line} ▾{details}</small></p>'
