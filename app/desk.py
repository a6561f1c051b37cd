"""The desktop app: builds the window, the session, the engine worker and the audio edges, and
wires them. Everything here runs on the Qt thread and only sends intents; nothing here waits on
the model or the devices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QObject, QTimer, Signal, Slot

from app import config as cfg
from app import export_flow, persona_flow, settings_flow
from app.camera_feed import CameraFeed, camera_choices
from app.device_control import AudioFactory, DeviceControl, real_audio
from app.engine_client import LoadRequest, ModelInfo, make_engine
from app.first_run import DEMO_SOURCE, FirstRun
from app.global_hotkey import start_talk_hotkey
from app.history_log import HistoryLog
from app.journal_feed import JournalFeed
from app.launch import Launch
from app.past_conversations import PastConversations
from app.personas import PersonaLibrary
from app.session import Session
from app.status_text import describe_latency, memory_text, model_label
from app.tool_flow import ToolFlow
from app.tool_view import show_tool_event
from events import (
    ConversationReset,
    DeviceLost,
    DeviceRestored,
    DeviceUnavailable,
    EngineConnection,
    EngineStatus,
    LoadCancelled,
    LoadFailed,
    ModelLoaded,
    Problem,
    ReplyTruncated,
    ScreenSharingChanged,
    SpeechStarted,
    StateChanged,
    TextDelta,
    ToolCallFinished,
    ToolCallRequested,
    ToolCallStarted,
    ToolConfirmationNeeded,
    TurnFinished,
    TurnLatency,
    UserTranscript,
    UserTurnSent,
)
from facts import DEMO_LABEL
from ui.first_run import FirstRunDialog
from ui.main_window import MainWindow
from ui.persona_editor import PersonaEditor


class Desk(QObject):
    """The running app. `audio=None` or `launch.text_only` runs without audio devices."""

    journal_failed = Signal(str)  # the journal could not be written (from its thread)

    def __init__(
        self,
        launch: Launch,
        *,
        loader: Callable[..., Any] | None = None,
        demo_dir: Callable[[], Path] | None = None,
        audio: AudioFactory | None = real_audio,
        engine_options: dict[str, Any] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.launch = launch
        self.config = launch.config
        self.file_config = launch.file_config or launch.config
        self.engine_options = engine_options or {}
        self.library = PersonaLibrary(cfg.config_dir() / "personas")
        self.persona = self.library.get(self.config.conversation.persona)
        self.window = MainWindow()
        self.closed_cleanly = True
        self._shut_down = False
        self.problems: list[str] = []
        self.history_log = HistoryLog(on_error=self.journal_failed.emit)
        self.journal = JournalFeed(self.history_log)
        self._loading_demo = False
        self.hotkey: Any = None
        if launch.loaded.message:
            self.problems.append(launch.loaded.message)
        self.problems += self.library.problems
        note = self.library.fallback_note(self.config.conversation.persona, self.persona)
        if note:
            self.problems.append(note)
        self.devices = DeviceControl(
            self.window, self.config, None if launch.text_only else audio, self.remember
        )
        self.problems += self.devices.problems
        self.engine = make_engine(self.config.engine, self.player, loader=loader, demo_dir=demo_dir)
        self.tools = ToolFlow(self.engine, self.config.tools, self.config.mcp)  # issue 15
        self.session = Session(
            self.engine,
            audio_input=self.audio_input,
            playback=self.player,
            camera=self.devices.visual,  # the shared screen while it is shared, else the camera
            persona=self.persona,
            voice=self.config.conversation.voice,
            mode=self.config.audio.mode,
            tools=self.tools,
        )
        self.devices.wire(self.session)
        self._wire()
        self.past_conversations = PastConversations(self)  # the list of past ones (issue 16)
        self._meter_timer = QTimer(self)
        self._meter_timer.setInterval(33)
        self._meter_timer.timeout.connect(self._update_meters)
        self._memory_timer = QTimer(self)
        self._memory_timer.setInterval(2000)
        self._memory_timer.timeout.connect(self._update_memory)
        self.first_run_flow = FirstRun(
            self.window,
            load=lambda source, demo: self.load_model(source, demo=demo),
            demo_in_use=self._demo_in_use,
            remember=self.change_model,
        )

    @property
    def text_only(self) -> bool:
        return self.launch.text_only or not self.devices.has_audio

    @property
    def audio_input(self) -> Any:
        return self.devices.audio_input

    @property
    def player(self) -> Any:
        return self.devices.player

    @property
    def camera(self) -> CameraFeed:
        return self.devices.camera

    def remember(self, **changes: dict[str, Any]) -> None:
        """A choice made in the window, saved to the config file on quit."""
        self.file_config = cfg.with_changes(self.file_config, **changes)

    # -- start and stop ------------------------------------------------------------------------------

    def start(self) -> None:
        window = self.window
        if self.config.window.geometry:
            window.restore_geometry_state(QByteArray.fromBase64(self.config.window.geometry.encode()))
        persona_flow.fill_personas(self)
        window.set_voice(self.config.conversation.voice)
        window.set_mode(self.config.audio.mode)
        window.set_responsiveness(self.config.audio.responsiveness)
        window.set_audio_enabled(not self.text_only)
        window.set_ready(False)
        window.camera_view.set_sources(camera_choices(), self.camera.source)
        window.camera_view.set_on(self.config.camera.enabled)
        if self.config.camera.enabled:
            self.camera.start()
        self.tools.start()
        window.show()
        for problem in self.problems:
            window.show_error(problem)
        if not self.text_only:
            self.devices.start_audio(self.config.audio.input_device, self.config.audio.output_device)
        self.hotkey = start_talk_hotkey(
            self.config.window.talk_hotkey, self.session, self.window, self.text_only
        )
        self._meter_timer.start()
        self._memory_timer.start()
        self._update_memory()
        QTimer.singleShot(0, self.choose_model)

    def choose_model(self) -> None:
        """Load the configured model, or the demo, or ask (first run) when it is not on disk; a remote
        engine serves what it serves."""
        if self.config.engine.url:
            self.load_model(self.config.engine.url)
            return
        if self.launch.demo or self.config.model.source == DEMO_SOURCE:
            self.load_model("", demo=True)
            return
        self.first_run_flow.look_for(self.config.model.source)

    def load_model(self, source: str, *, demo: bool = False) -> None:
        model = self.config.model
        request = LoadRequest(
            source=source,
            demo=demo,
            device="auto" if demo and model.device != "cpu" else model.device,  # the demo runs anywhere
            dtype=model.dtype,
            quantization=model.quantization,
            speaker=self.session.voice_in_use,
            system_prompt=self.persona.system_prompt,
            speak=not self.text_only,
            transcribe=self.config.conversation.transcribe,
            engine_options=self.engine_options,
        )
        self._loading_demo = demo
        self.window.set_state("loading")
        self.window.show_progress(f"loading {DEMO_LABEL if demo else source}…", cancellable=True)
        self.session.load(request)

    def shutdown(self) -> None:
        """Save settings, stop audio and the engine; never hangs on a model that is still loading."""
        if self._shut_down:
            return
        self._shut_down = True
        self._meter_timer.stop()
        self._memory_timer.stop()
        self.first_run_flow.stop()
        if self.hotkey is not None:
            self.hotkey.stop()
        settings_flow.save_settings(self)
        self.tools.close()
        self.closed_cleanly = self.session.close(timeout_s=3.0)
        self.devices.stop()
        self.history_log.close()

    # -- wiring --------------------------------------------------------------------------------------

    def _wire(self) -> None:
        s, w = self.session, self.window
        s.reported.connect(self.on_session_event)
        w.text_submitted.connect(self.send_text)
        w.stop_requested.connect(s.stop_speaking)
        w.talk_pressed.connect(s.press_talk)
        w.talk_released.connect(s.release_talk)
        w.mute_toggled.connect(s.set_muted)
        w.mode_chosen.connect(s.set_mode)
        w.responsiveness_chosen.connect(self.devices.set_responsiveness)
        w.voice_chosen.connect(s.set_voice)
        w.persona_chosen.connect(self.choose_persona)
        w.edit_personas_requested.connect(self.edit_personas)
        w.export_requested.connect(lambda: export_flow.ask_export(self))
        w.new_conversation_requested.connect(s.new_conversation)
        w.cancel_load_requested.connect(s.cancel_load)
        w.closing.connect(self.shutdown)
        w.settings_requested.connect(lambda: settings_flow.open_settings(self))
        w.about_requested.connect(lambda: settings_flow.show_about(self))
        self.journal_failed.connect(w.show_error)
        w.tool_prompt.answered.connect(self.tools.answer)

    # -- what the session reports --------------------------------------------------------------------

    @Slot(object)
    def on_session_event(self, event: object) -> None:
        """Every event of the conversation, in one place: the window shows it, the journal keeps it."""
        w, t = self.window, self.window.transcript
        self.journal.on_event(event)
        match event:
            case StateChanged(state):
                w.set_state(state)
            case SpeechStarted(time_s):
                w.show_pending_turn(time_s, understood=self._prefills_live())
            case UserTurnSent(turn_id, text, audio_s, ended_early):
                t.add_user(turn_id, text, audio_s, ended_early=ended_early)
            case UserTranscript(turn_id, text):
                t.set_user_text(turn_id, text)
            case TextDelta(turn_id, text):
                t.append_reply(turn_id, text)
            case TurnFinished(turn_id):
                t.finish_reply(turn_id)
            case ReplyTruncated(turn_id, heard_text):
                t.mark_interrupted(turn_id, heard_text)
            case TurnLatency():
                text = describe_latency(event)
                w.show_latency(text)
                t.set_latency(event.turn_id, text)
            case Problem(message):
                w.show_error(message)
            case EngineStatus(message):
                w.show_progress(message, cancellable=self.session.loading)
            case EngineConnection(lost, message):
                w.show_error(message) if lost else w.show_progress(message)
            case ModelLoaded(info):
                self._on_model_ready(info)
                w.set_state(self.session.state.value)  # the pill agrees with the status bar
            case LoadFailed(message):
                self._on_load_failed(message)
            case LoadCancelled():
                self._on_load_cancelled()
            case DeviceLost() | DeviceUnavailable() | DeviceRestored():
                self.devices.on_device_event(event)
            case ScreenSharingChanged():
                self.devices.screen.show(event)
            case ToolCallRequested() | ToolConfirmationNeeded() | ToolCallStarted() | ToolCallFinished():
                show_tool_event(w, event)
            case ConversationReset(persona):
                t.clear_entries()
                if persona is not None and persona.greeting:
                    t.add_greeting(persona.greeting)

    def _on_model_ready(self, info: ModelInfo) -> None:
        w = self.window
        w.set_model_status(*model_label(info))
        w.show_progress("ready" + ("" if info.can_speak else " (text replies only)"))
        w.set_ready(True)
        if self.persona.greeting and not w.transcript.entries:
            w.transcript.add_greeting(self.persona.greeting)

    def _on_load_failed(self, message: str) -> None:
        self.window.show_error(f"The model could not be loaded: {message}")
        self.window.show_progress("no model loaded")
        self.window.set_state("idle")
        self.show_first_run(self.config.model.source, message)

    def _on_load_cancelled(self) -> None:
        if self._shut_down:
            return
        self.window.set_state("idle")
        self.window.show_progress("loading cancelled: no model")
        self.show_first_run(self.config.model.source, "Loading was cancelled.")

    # -- intents of the window's menus (the flows do the work) ----------------------------------------

    def choose_persona(self, persona_id: str) -> None:
        persona_flow.choose_persona(self, persona_id)

    def edit_personas(self) -> PersonaEditor:
        return persona_flow.edit_personas(self)

    def export_to(self, folder: Path) -> Any:  # app.export.Exported, or None when it failed
        return export_flow.export_to(self, folder)

    # -- camera --------------------------------------------------------------------------------------

    def send_text(self, text: str) -> int | None:
        """A typed message, with the camera's current frame when "Attach camera frame" is checked."""
        images: tuple[Any, ...] = ()
        box = self.window.snapshot_box
        if box.isChecked():
            frame = self.camera.latest()
            if frame is None:
                self.window.show_error("No camera frame to attach (is the camera on?); sent the text alone.")
            else:
                images = (frame.rgb,)
                box.setChecked(False)
        return self.session.send_text(text, images)

    def _prefills_live(self) -> bool:
        """Whether the turn being spoken is taken in as it arrives (its audio, and the camera's frames
        when the camera runs): once a model is loaded."""
        return self.session.model_info is not None

    # -- first run -----------------------------------------------------------------------------------

    @property
    def first_run(self) -> FirstRunDialog | None:
        return self.first_run_flow.dialog

    def show_first_run(self, source: str, reason: str) -> FirstRunDialog:
        return self.first_run_flow.show(source, reason)

    def _demo_in_use(self) -> bool:
        info = self.session.model_info
        return (info is not None and info.is_demo) or (self.session.loading and self._loading_demo)

    def change_model(self, **changes: str) -> None:
        """A model setting chosen in the window: used from the next load on, and saved."""
        self.config = cfg.with_changes(self.config, model=changes)
        self.remember(model=changes)

    # -- meters --------------------------------------------------------------------------------------

    def _update_meters(self) -> None:
        self.window.set_levels(*self.devices.levels())

    def _update_memory(self) -> None:
        self.window.set_memory(memory_text(self.session.model_info))
