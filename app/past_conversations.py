"""The past conversations in the running app: the list's intents turned into reading, playing,
continuing, deleting and exporting journals (`ui/conversation_list.py` shows; this decides).

Continuing puts the conversation's turns into the engine through the path a crash restore takes
(`Session.restore` → the engine client's `restore`: `conversation.item.create` for a remote or
child engine, `Engine.remember_exchange` in process), within the context budget (`app/resume.py`
says what leaves first); the window shows every old turn, and the journal starts a new file that
holds them (with links to their kept media), so the continuation is one whole conversation.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QFileDialog

from app.export import export_conversation, stereo
from app.history_log import MediaItem, conversations_dir
from app.journal import (
    Conversation,
    ConversationInfo,
    delete_conversation,
    list_conversations,
    load_conversation,
    search,
)
from app.kept_media import MediaKeeper, turn_records
from app.resume import DEFAULT_CONTEXT_TOKENS, restore_plan
from events import AudioChunk
from facts import SPEECH_OUT_RATE_HZ
from ui.conversation_list import ConversationList, ConversationRow

log = logging.getLogger(__name__)

PLAYBACK_CHUNK_SAMPLES = SPEECH_OUT_RATE_HZ // 2  # half a second: a stop is heard within it
PLAYBACK_TURN = 1


def describe(info: ConversationInfo) -> ConversationRow:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.started_s)) if info.started_s else "?"
    title = f"{when} · {info.persona or 'persona not recorded'}"
    minutes = info.duration_s / 60
    length = f"{info.turns} turn{'s' if info.turns != 1 else ''}, {minutes:.0f} min"
    if minutes < 1:
        length = f"{info.turns} turn{'s' if info.turns != 1 else ''}, {info.duration_s:.0f} s"
    detail = f"“{info.first_words}” · {length}" if info.first_words else length
    if info.continued:
        detail += " · continued later"
    return ConversationRow(_key(info), title, detail, "; ".join(info.problems))


class PastConversations(QObject):
    """Owns the list widget's behaviour. `output` makes the speech output a playback writes to
    (`None`: the app's speaker on the configured device, when audio is on)."""

    journal_file = Signal(str)  # the journal started a new file (from its thread)
    playback_ended = Signal(str)  # why it stopped early ("" when it played out or was stopped)

    def __init__(self, desk: Any, *, output: Any = None, parent: QObject | None = None) -> None:
        super().__init__(parent or desk)
        self.desk = desk
        self.widget: ConversationList = desk.window.conversation_list
        self.media = MediaKeeper(desk.history_log, desk.engine)
        self.output = output
        self._infos: dict[str, ConversationInfo] = {}
        self._problems: list[str] = []
        self._writing: Path = desk.history_log.path
        self._playing: tuple[threading.Event, Any] | None = None
        self._muted_before: bool | None = None
        w = self.widget
        w.search_changed.connect(lambda _text: self._show())
        w.open_requested.connect(self.open)
        w.play_requested.connect(self.play)
        w.stop_requested.connect(self.stop_playing)
        w.continue_requested.connect(self.continue_conversation)
        w.delete_requested.connect(self.ask_delete)
        w.delete_confirmed.connect(self.delete)
        w.export_requested.connect(self._ask_export)
        self.journal_file.connect(self._on_journal_file)
        self.playback_ended.connect(self._on_playback_ended)
        desk.history_log.on_new_file = self.journal_file.emit
        desk.session.reported.connect(self.on_event)
        desk.window.conversations_dock.visibilityChanged.connect(self._on_shown)
        desk.history_log.write("new_conversation", persona=desk.persona.id)  # who the first one is with
        self.refresh()

    # -- the list ------------------------------------------------------------------------------------

    @Slot(object)
    def on_event(self, event: object) -> None:
        self.media.on_event(event)

    @Slot(bool)
    def _on_shown(self, shown: bool) -> None:
        if shown:
            self.refresh()

    @Slot(str)
    def _on_journal_file(self, path: str) -> None:
        self._writing = Path(path)
        self.refresh()

    def refresh(self) -> None:
        """Read the journals again (all but the one being written) and show them."""
        shelf = list_conversations(conversations_dir(), leave_out=self._writing)
        self._infos = {_key(i): i for i in shelf.conversations}
        self._problems = shelf.problems
        self._show()

    def _show(self) -> None:
        shown = search(list(self._infos.values()), self.widget.search_box.text())
        self.widget.show_rows([describe(i) for i in shown], self._problems)

    def _conversation(self, key: str) -> Conversation | None:
        info = self._infos.get(key)
        if info is None:
            return None
        try:
            return load_conversation(info)
        except OSError as error:
            self.desk.window.show_error(f"{info.path.name} could not be read: {error}")
            return None

    def open(self, key: str) -> Conversation | None:
        conversation = self._conversation(key)
        if conversation is None:
            return None
        info = conversation.info
        row = describe(info)
        playable = self._can_play() and any(t.user_audio or t.reply_audio for t in conversation.turns)
        self.widget.show_conversation(
            key, f"{row.title} · {row.detail}", conversation.messages,
            playable=playable, continuable=info.can_continue,
        )  # fmt: skip
        return conversation

    # -- playback ------------------------------------------------------------------------------------

    def _can_play(self) -> bool:
        return self.output is not None or self.desk.player is not None

    def play(self, key: str) -> None:
        """Both sides' kept audio in order, on the speaker, with the microphone muted meanwhile (so
        the assistant does not take the old conversation for the user speaking)."""
        conversation = self._conversation(key)
        if conversation is None or not self._can_play():
            return
        self.stop_playing()
        mix = stereo(turn_records(conversation.turns)).sum(axis=1)
        if not mix.size:
            return
        output = self.output() if self.output is not None else self._speaker()
        stop = threading.Event()
        self._playing = (stop, output)
        if self._muted_before is None:
            self._muted_before = self.desk.session.muted
            self.desk.session.set_muted(True)
        self.widget.set_playing(True)
        threading.Thread(target=self._play, args=(output, mix, stop), name="playback", daemon=True).start()

    def _speaker(self) -> Any:
        from audio_io.playback import Player, PlayerConfig

        return Player(PlayerConfig(device=self.desk.config.audio.output_device or None))

    def _play(self, output: Any, mix: Any, stop: threading.Event) -> None:
        try:
            if hasattr(output, "start"):
                output.start()
            output.start_turn(PLAYBACK_TURN)
            for i, at in enumerate(range(0, mix.size, PLAYBACK_CHUNK_SAMPLES)):
                if stop.is_set():
                    break
                piece = mix[at : at + PLAYBACK_CHUNK_SAMPLES]
                output.write(AudioChunk(PLAYBACK_TURN, piece, SPEECH_OUT_RATE_HZ, i))
            output.finish_turn(PLAYBACK_TURN)
            while not stop.is_set() and hasattr(output, "wait_idle") and not output.wait_idle(0.2):
                pass
        except Exception as error:
            log.exception("playing a past conversation")
            failure = f"The conversation could not be played: {error}"
        else:
            failure = ""
        finally:
            if hasattr(output, "stop"):
                output.stop()
        self.playback_ended.emit(failure)

    def stop_playing(self) -> None:
        if self._playing is not None:
            stop, output = self._playing
            stop.set()
            if hasattr(output, "flush"):
                threading.Thread(target=output.flush, name="playback-stop", daemon=True).start()

    @Slot(str)
    def _on_playback_ended(self, failure: str) -> None:
        if failure:
            self.desk.window.show_error(failure)
        self._playing = None
        self.widget.set_playing(False)
        if self._muted_before is not None:
            self.desk.session.set_muted(self._muted_before)
            self._muted_before = None

    # -- continue ------------------------------------------------------------------------------------

    def continue_conversation(self, key: str) -> list[int]:
        """Carry on conversation `key`: a new conversation that holds it, in the engine and the window.
        Returns the turn ids the restored turns got (none when it cannot be continued)."""
        conversation = self._conversation(key)
        desk = self.desk
        if conversation is None:
            return []
        info = conversation.info
        if not info.can_continue:
            desk.window.show_error(f"{info.path.name} cannot be continued here: {'; '.join(info.problems)}")
            return []
        if desk.session.model_info is None:
            desk.window.show_error("The model is not loaded yet: continue once it is ready.")
            return []
        self.stop_playing()
        if info.persona and info.persona != desk.persona.id and info.persona in _ids(desk.library):
            desk.choose_persona(info.persona)
        options = getattr(desk, "engine_options", {}) or {}
        plan = restore_plan(
            conversation, context_tokens=options.get("max_context_tokens", DEFAULT_CONTEXT_TOKENS)
        )
        first = desk.session.last_turn_id + 1
        ids = {t.turn_id: first + i for i, t in enumerate(conversation.turns)}
        exchanges = [replace(e, turn_id=ids[e.turn_id]) for e in plan.exchanges]
        desk.session.restore(exchanges, last_turn_id=max(ids.values()))
        self._show_and_journal(conversation, ids)
        note = f"Continuing the conversation of {describe(info).title}: {len(plan.exchanges)} turns restored"
        desk.window.show_info(note + (f"; left out: {', '.join(plan.dropped)}." if plan.dropped else "."))
        return [ids[e.turn_id] for e in plan.exchanges]

    def _show_and_journal(self, conversation: Conversation, ids: dict[int, int]) -> None:
        """The old turns in the transcript, and in the new journal file with links to their media."""
        transcript, journal = self.desk.window.transcript, self.desk.history_log
        journal.write("continued", source=conversation.info.path.name, part=conversation.info.part)
        for turn in conversation.turns:
            new = ids[turn.turn_id]
            transcript.add_user(new, turn.user_text, turn.audio_s)
            journal.write("user", turn_id=new, text=turn.typed, audio_s=turn.audio_s, restored=True)
            if turn.transcript:
                journal.write("transcript", turn_id=new, text=turn.transcript)
            for role, path in (("user", turn.user_audio), ("reply", turn.reply_audio)):
                if path is not None:
                    journal.keep(MediaItem(new, role, source=path))
            for index, path in enumerate(turn.images):
                journal.keep(MediaItem(new, "image", source=path, index=index))
            if turn.reply is not None:
                transcript.append_reply(new, turn.reply)
                transcript.finish_reply(new)
                if turn.interrupted:
                    transcript.mark_interrupted(new, turn.reply)
                journal.write("assistant", turn_id=new, text=turn.reply, interrupted=turn.interrupted,
                              restored=True)  # fmt: skip

    # -- delete and export ---------------------------------------------------------------------------

    def ask_delete(self, key: str) -> Any:
        info = self._infos.get(key)
        if info is None:
            return None
        question = f"Delete the conversation of {describe(info).title}? Its file {info.path.name}"
        question += " and the audio kept with it go for good."
        if info.parts > 1:
            question += f" The file also holds {info.parts - 1} other conversations; they go too."
        return self.widget.ask_delete(key, question)

    @Slot(str)
    def delete(self, key: str) -> None:
        """Only after the user confirmed (`ConversationList.delete_confirmed`)."""
        info = self._infos.get(key)
        if info is None:
            return
        try:
            delete_conversation(info)
        except OSError as error:
            self.desk.window.show_error(f"{info.path.name} could not be deleted: {error}")
        self.widget.clear_conversation()
        self.refresh()

    def _ask_export(self, key: str) -> None:
        folder = QFileDialog.getExistingDirectory(self.desk.window, "Export the conversation to")
        if folder:
            self.export(key, Path(folder))

    def export(self, key: str, folder: Path) -> Any:
        conversation = self._conversation(key)
        if conversation is None:
            return None
        info = conversation.info
        details = f"{describe(info).title} · from {info.path.name}"
        try:
            exported = export_conversation(
                folder, conversation.messages, turn_records(conversation.turns),
                details=details, stem=f"omnidesk-{info.path.stem}" + (f"-{info.part}" if info.part else ""),
            )  # fmt: skip
        except OSError as error:
            self.desk.window.show_error(f"Export failed: {error}")
            return None
        self.desk.window.show_info(
            f"Exported to {exported.markdown}" + (f" and {exported.wav}" if exported.wav else "")
        )
        return exported


def _key(info: ConversationInfo) -> str:
    return f"{info.path.name}#{info.part}"


def _ids(library: Any) -> set[str]:
    return {p.id for p in library.all()}
