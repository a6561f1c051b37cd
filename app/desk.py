"""The desktop app: builds the window, the session, the engine worker and the audio edges, and
wires them. Everything here runs on the Qt thread and only sends intents; nothing here waits on
the model or the devices."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QCoreApplication, QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QApplication, QFileDialog

from app import config as cfg
from app.camera_feed import CameraFeed, camera_choices
from app.engine_client import EngineClient, LoadRequest, ModelInfo
from app.first_run import FirstRun
from app.history_log import HistoryLog
from app.launch import Launch
from app.personas import Persona, PersonaLibrary
from app.session import Session, TurnLatency
from events import TurnStats
from ui.first_run import DEMO_LABEL, FirstRunDialog
from ui.main_window import MainWindow

log = logging.getLogger(__name__)

# (settings, event sink) -> (the session's AudioInput, the player), each with `level_dbfs()` for the
# meters; the player is started by the app (off the Qt thread) and may raise there.
AudioFactory = Callable[[cfg.AudioSettings, Callable[[object], None]], tuple[Any, Any]]


def real_audio(settings: cfg.AudioSettings, on_event: Callable[[object], None]) -> tuple[Any, Any]:
    """The microphone chain and the player on the configured devices, not started yet."""
    from app.audio_chain import MicrophoneChain, make_player

    player = make_player(settings.output_device, on_event)
    mic = MicrophoneChain(
        player,
        device=settings.input_device,
        echo_cancellation=settings.echo_cancellation,
        barge_in=settings.barge_in,
        end_of_turn_silence_ms=settings.end_of_turn_silence_ms,
    )
    return mic, player


def make_engine(
    settings: cfg.EngineConnection,
    speech: Any,
    *,
    loader: Callable[..., Any] | None = None,
    demo_dir: Callable[[], Path] | None = None,
) -> EngineClient:
    """The engine client for the settings: the app's own engine process (no URL), a remote Omni Desk
    server (ws:// or wss://) or a vLLM-Omni server (http:// or https://). A `loader` (tests and
    benches) runs the engine in this process instead."""
    if loader is not None or demo_dir is not None:
        from app.engine_worker import EngineThread, EngineWorker

        return EngineThread(EngineWorker(speech, loader=loader, demo_dir=demo_dir))
    key = os.environ.get(settings.api_key_env) or None
    if settings.url.startswith(("http://", "https://")):
        from app.vllm_omni_client import VllmOmniEngine

        return VllmOmniEngine(speech, url=settings.url, api_key=key)
    from app.realtime_client import RealtimeEngine

    return RealtimeEngine(speech, url=settings.url or None, api_key=key)


def describe_latency(latency: TurnLatency) -> str:
    parts = []
    if latency.first_text_ms is not None:
        parts.append(f"→ text {latency.first_text_ms:.0f} ms")
    if latency.first_audio_ms is not None:
        parts.append(f"→ audio {latency.first_audio_ms:.0f} ms")
    if latency.tokens_per_s is not None:
        parts.append(f"{latency.tokens_per_s:.1f} tok/s")
    return " · ".join(parts)


def memory_text(info: ModelInfo | None) -> str:
    """Process memory, and GPU memory when the model is on a GPU."""
    text = ""
    try:
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        text = f"RAM {rss / 2**30:.1f} GiB"
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    if info is not None and info.device.startswith("cuda") and "torch" in sys.modules:
        torch = sys.modules["torch"]
        text += f" · GPU {torch.cuda.memory_allocated() / 2**30:.1f} GiB"
    return text


class Desk(QObject):
    """The running app. `audio=None` or `launch.text_only` runs without audio devices."""

    audio_started = Signal(list, list)  # input and output device names
    audio_failed = Signal(str)
    device_failed = Signal(str)  # a device change that did not work (audio stays on)
    journal_failed = Signal(str)  # the journal could not be written (from its thread)
    model_found = Signal(str)
    model_missing = Signal(str, str)  # source, why

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
        self._latencies: dict[int, TurnLatency] = {}
        self._loading_demo = False
        if launch.loaded.error is not None:
            self.problems.append(launch.loaded.message)
        self.problems += self.library.problems

        self.audio_input: Any = None
        self.player: Any = None
        self.text_only = launch.text_only or audio is None
        self._relay: Callable[[object], None] = lambda event: None
        if not self.text_only and audio is not None:
            try:
                self.audio_input, self.player = audio(self.config.audio, lambda event: self._relay(event))
            except Exception as error:
                self.problems.append(
                    f"Audio is off ({error}); you can still type. Check the devices or --text."
                )
                self.text_only = True

        self.camera = CameraFeed(self.config.camera, lambda event: self._relay(event), self)
        self.engine = make_engine(self.config.engine, self.player, loader=loader, demo_dir=demo_dir)
        self.session = Session(
            self.engine,
            audio_input=self.audio_input,
            playback=self.player,
            camera=self.camera,
            persona=self.persona,
            voice=self.config.conversation.voice,
            mode=self.config.audio.mode,
        )
        self._relay = self.session.post_audio_event
        self._wire()
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
            remember=self._remember_source,
        )

    # -- start and stop ------------------------------------------------------------------------------

    def start(self) -> None:
        window = self.window
        if self.config.window.geometry:
            window.restore_geometry_state(QByteArray.fromBase64(self.config.window.geometry.encode()))
        self._fill_personas()
        window.set_voice(self.config.conversation.voice)
        window.set_mode(self.config.audio.mode)
        window.set_audio_enabled(not self.text_only)
        window.set_ready(False)
        window.camera_view.set_sources(camera_choices(), self.camera.source)
        window.camera_view.set_on(self.config.camera.enabled)
        if self.config.camera.enabled:
            self.camera.start()
        window.show()
        for problem in self.problems:
            window.show_error(problem)
        if not self.text_only:
            self.audio_started.connect(self._on_audio_started)
            self.audio_failed.connect(self._on_audio_failed)
            self.device_failed.connect(self.window.show_error)
            threading.Thread(target=self._start_audio, name="audio-start", daemon=True).start()
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
        if self.launch.demo:
            self.load_model("", demo=True)
            return
        source = self.config.model.source
        threading.Thread(
            target=self._look_for_model, args=(source,), name="model-lookup", daemon=True
        ).start()

    def _look_for_model(self, source: str) -> None:
        """Off the Qt thread: the hub library's import and cache scan take a noticeable moment."""
        try:
            from model.loading import ModelLoadError, resolve_checkpoint

            resolve_checkpoint(source, offline=True)
        except ModelLoadError as error:
            self.model_missing.emit(source, str(error))
            return
        except Exception as error:
            self.model_missing.emit(source, f"{type(error).__name__}: {error}")
            return
        self.model_found.emit(source)

    @Slot(str)
    def _on_model_found(self, source: str) -> None:
        self.load_model(source)

    @Slot(str, str)
    def _on_model_missing(self, source: str, reason: str) -> None:
        self.show_first_run(source, reason)
        self.load_model("", demo=True)  # usable at once; the dialog offers the real model

    def load_model(self, source: str, *, demo: bool = False) -> None:
        model = self.config.model
        request = LoadRequest(
            source=source,
            demo=demo,
            device=model.device,
            dtype=model.dtype,
            quantization=model.quantization,
            speaker=self.session.voice_in_use,
            system_prompt=self.persona.system_prompt,
            speak=not self.text_only,
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
        self.camera.close()
        self.save_settings()
        self.history_log.close()
        self.closed_cleanly = self.session.close(timeout_s=3.0)
        if self.player is not None:
            try:
                self.player.stop()
            except Exception:
                log.exception("stopping the player")

    def save_settings(self) -> None:
        if not self.launch.loaded.writable:
            return
        geometry = bytes(self.window.geometry_state().toBase64().data()).decode()
        updated = cfg.with_changes(
            self.file_config,
            conversation={"persona": self.persona.id, "voice": self.session.voice},
            audio={"mode": self.session.mode},
            window={"geometry": geometry},
        )
        try:
            cfg.save(updated, self.launch.loaded.path)
            self.file_config = updated
        except OSError as error:
            log.warning("could not save settings: %s", error)

    # -- wiring --------------------------------------------------------------------------------------

    def _wire(self) -> None:
        s, w, t = self.session, self.window, self.window.transcript
        s.state_changed.connect(w.set_state)
        s.status.connect(lambda message: w.show_progress(message, cancellable=s.loading))
        s.model_ready.connect(self._on_model_ready)
        s.load_failed.connect(self._on_load_failed)
        s.load_cancelled.connect(self._on_load_cancelled)
        s.error.connect(w.show_error)
        s.user_turn.connect(t.add_user)
        s.reply_text.connect(t.append_reply)
        s.reply_finished.connect(lambda turn_id, _stats: t.finish_reply(turn_id))
        s.reply_interrupted.connect(t.mark_interrupted)
        s.latency.connect(self._on_latency)
        s.conversation_reset.connect(self._on_conversation_reset)
        w.text_submitted.connect(self.send_text)
        s.speech_started.connect(
            lambda started_s: w.show_pending_turn(started_s, understood=self._prefills_live())
        )
        self.camera.frame.connect(w.camera_view.show_frame)
        self.camera.status_changed.connect(w.camera_view.set_status)
        w.camera_view.toggled.connect(self.set_camera_on)
        w.camera_view.source_chosen.connect(self.choose_camera)
        w.camera_view.file_requested.connect(self._ask_video_file)
        w.stop_requested.connect(s.stop_speaking)
        w.talk_pressed.connect(s.press_talk)
        w.talk_released.connect(s.release_talk)
        w.mute_toggled.connect(s.set_muted)
        w.mode_chosen.connect(s.set_mode)
        w.voice_chosen.connect(s.set_voice)
        w.persona_chosen.connect(self.choose_persona)
        w.input_device_chosen.connect(self._choose_input)
        w.output_device_chosen.connect(self._choose_output)
        w.edit_personas_requested.connect(self.edit_personas)
        w.export_requested.connect(self._ask_export)
        w.new_conversation_requested.connect(s.new_conversation)
        w.cancel_load_requested.connect(s.cancel_load)
        w.closing.connect(self.shutdown)
        self.model_found.connect(self._on_model_found)
        self.model_missing.connect(self._on_model_missing)
        s.user_turn.connect(self._log_user)
        s.reply_finished.connect(self._log_reply)
        s.reply_interrupted.connect(self._log_interrupted)
        s.conversation_reset.connect(self._log_reset)
        s.error.connect(lambda message: self._journal("error", message=message))
        self.engine.signals.connection.connect(self._log_connection)
        self.journal_failed.connect(w.show_error)

    # -- the journal ---------------------------------------------------------------------------------

    def _journal(self, kind: str, **fields: Any) -> None:
        self.history_log.write(kind, **fields)

    def _log_user(self, turn_id: int, text: str, duration_s: float) -> None:
        self._journal("user", turn_id=turn_id, text=text, audio_s=round(duration_s, 3))

    def _log_reply(self, turn_id: int, stats: TurnStats) -> None:
        entry = self.window.transcript.reply(turn_id)
        self._journal("assistant", turn_id=turn_id, text=entry.text if entry else "", interrupted=False,
                      context_tokens=stats.prompt_tokens, **self._latency_fields(turn_id))  # fmt: skip

    def _log_interrupted(self, turn_id: int, heard_text: str) -> None:
        self._journal("assistant", turn_id=turn_id, text=heard_text, interrupted=True,
                      **self._latency_fields(turn_id))  # fmt: skip

    @Slot(str, str)
    def _log_connection(self, state: str, message: str) -> None:
        """The engine process died and came back (or the link did): the journal says so."""
        self._journal("engine", state=state, message=message)

    def _log_reset(self, persona: Persona | None) -> None:
        self._journal("new_conversation", persona=persona.id if persona else "")

    def _latency_fields(self, turn_id: int) -> dict[str, Any]:
        latency = self._latencies.pop(turn_id, None)
        if latency is None:
            return {}
        return {"first_text_ms": latency.first_text_ms, "first_audio_ms": latency.first_audio_ms,
                "tokens_per_s": latency.tokens_per_s}  # fmt: skip

    def _on_model_ready(self, info: ModelInfo) -> None:
        w = self.window
        label = (
            f"{Path(info.source).name or info.source} · {info.quantization} · {info.dtype} · {info.device}"
        )
        if info.is_demo:
            label = f"{DEMO_LABEL} · {info.device}"
        tooltip = f"{info.path}\nweights {info.weight_bytes / 2**30:.2f} GiB, loaded in {info.load_s:.1f} s"
        w.set_model_status(label, tooltip)
        w.show_progress("ready" + ("" if info.can_speak else " (text replies only)"))
        w.set_ready(True)
        self._journal("model_ready", source=info.source, device=info.device, is_demo=info.is_demo)
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

    def _on_latency(self, latency: TurnLatency) -> None:
        self._latencies[latency.turn_id] = latency
        for old in [t for t in self._latencies if t < latency.turn_id - 8]:
            del self._latencies[old]
        text = describe_latency(latency)
        self.window.show_latency(text)
        self.window.transcript.set_latency(latency.turn_id, text)

    def _on_conversation_reset(self, persona: Persona | None) -> None:
        self.window.transcript.clear_entries()
        if persona is not None and persona.greeting:
            self.window.transcript.add_greeting(persona.greeting)

    # -- personas ------------------------------------------------------------------------------------

    def _fill_personas(self) -> None:
        self.window.set_personas([(p.name, p.id) for p in self.library.all()], self.persona.id)

    def choose_persona(self, persona_id: str) -> None:
        self.persona = self.library.get(persona_id)
        self.session.set_persona(self.persona)
        self._fill_personas()

    def edit_personas(self) -> Any:
        from ui.persona_editor import PersonaEditor

        editor = PersonaEditor(self.library, self.persona.id, self.window)
        editor.changed.connect(self._persona_edited)
        editor.open()
        return editor

    def _persona_edited(self, persona_id: str) -> None:
        if persona_id == self.persona.id:
            updated = self.library.get(persona_id)
            if updated != self.persona:
                self.persona = updated
                self.session.set_persona(updated)
        self._fill_personas()

    # -- devices -------------------------------------------------------------------------------------

    def _start_audio(self) -> None:
        """Off the Qt thread: opening PortAudio streams takes a few hundred milliseconds."""
        inputs: list[str] = []
        outputs: list[str] = []
        try:
            from audio_io.devices import list_devices

            devices = list_devices()
            inputs = [d.name for d in devices if d.max_input_channels > 0]
            outputs = [d.name for d in devices if d.max_output_channels > 0]
        except Exception:
            log.exception("listing audio devices")
        try:
            start_player = getattr(self.player, "start", None)
            if start_player is not None:
                start_player()
            self.session.start_audio()
        except Exception as error:
            self.audio_failed.emit(str(error))
            return
        self.audio_started.emit(inputs, outputs)

    @Slot(list, list)
    def _on_audio_started(self, inputs: list[str], outputs: list[str]) -> None:
        audio = self.config.audio
        self.window.set_devices(inputs, outputs, audio.input_device, audio.output_device)

    @Slot(str)
    def _on_audio_failed(self, message: str) -> None:
        """Carry on typing: no microphone, and replies in text only."""
        self.window.show_error(f"Audio is off ({message}); you can still type.")
        self.text_only = True
        self.engine.set_speech(None)
        self.session.audio_input = None
        self.session.playback = None
        for part in (self.audio_input, self.player):
            try:
                part.stop()
            except Exception:
                log.debug("stopping audio that did not start", exc_info=True)
        self.audio_input = self.player = None
        self.window.set_audio_enabled(False)

    def _choose_input(self, name: str) -> None:
        self.file_config = cfg.with_changes(self.file_config, audio={"input_device": name})
        if self.audio_input is None:
            return
        chain = self.audio_input

        def restart() -> None:
            chain.stop()
            chain.device = name or None
            try:
                self.session.start_audio()
            except Exception as error:
                self.device_failed.emit(
                    f"The microphone {name or 'system default'!r} could not start: {error}"
                )

        threading.Thread(target=restart, name="audio-restart", daemon=True).start()

    def _choose_output(self, name: str) -> None:
        """Move playback to another device (off the Qt thread); the echo canceller and barge-in
        follow, since they listen to what the new device plays."""
        self.file_config = cfg.with_changes(self.file_config, audio={"output_device": name})
        metered, chain = self.player, self.audio_input
        if metered is None or not hasattr(metered, "swap"):
            return

        def switch() -> None:
            from audio_io.playback import Player, PlayerConfig

            try:
                new = Player(PlayerConfig(device=name or None), on_event=self._relay)
                new.start()
            except Exception as error:
                self.device_failed.emit(f"The speaker {name or 'system default'!r} could not start: {error}")
                return
            metered.swap(new).stop()
            if chain is not None:
                chain.stop()
                try:
                    self.session.start_audio()
                except Exception as error:
                    self.device_failed.emit(f"The microphone could not restart: {error}")

        threading.Thread(target=switch, name="audio-switch", daemon=True).start()

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

    def set_camera_on(self, on: bool) -> None:
        self.file_config = cfg.with_changes(self.file_config, camera={"enabled": on})
        if on:
            self.camera.start()
        else:
            self.camera.stop()
        self.window.camera_view.set_on(on)

    def choose_camera(self, source: str) -> None:
        """Switch to camera `source` (an index, a name or a video file) and turn it on."""
        self.file_config = cfg.with_changes(self.file_config, camera={"source": source, "enabled": True})
        self.camera.start(source)
        self.window.camera_view.set_sources(camera_choices(), source)
        self.window.camera_view.set_on(True)

    def _ask_video_file(self) -> None:
        kinds = "Videos (*.mp4 *.avi *.mkv *.mov *.webm);;All files (*)"
        path, _filter = QFileDialog.getOpenFileName(self.window, "A video file as the camera", "", kinds)
        if path:
            self.choose_camera(path)
        else:
            self.window.camera_view.set_sources(camera_choices(), self.camera.source)

    # -- export --------------------------------------------------------------------------------------

    def _ask_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Export the conversation to")
        if folder:
            self.export_to(Path(folder))

    def export_to(self, folder: Path) -> Any:
        from app.export import export_conversation

        info = self.session.model_info
        details = f"Persona: {self.persona.name} · voice: {self.session.voice_in_use}"
        if info is not None:
            details += f" · model: {DEMO_LABEL if info.is_demo else info.source}"
        try:
            exported = export_conversation(
                folder, self.engine.history(), self.engine.recording.turns(), details=details
            )
        except OSError as error:
            self.window.show_error(f"Export failed: {error}")
            return None
        self.window.show_info(
            f"Exported to {exported.markdown}" + (f" and {exported.wav}" if exported.wav else "")
        )
        return exported

    # -- first run -----------------------------------------------------------------------------------

    @property
    def first_run(self) -> FirstRunDialog | None:
        return self.first_run_flow.dialog

    def show_first_run(self, source: str, reason: str) -> FirstRunDialog:
        return self.first_run_flow.show(source, reason)

    def _demo_in_use(self) -> bool:
        info = self.session.model_info
        return (info is not None and info.is_demo) or (self.session.loading and self._loading_demo)

    def _remember_source(self, folder: str) -> None:
        self.file_config = cfg.with_changes(self.file_config, model={"source": folder})

    # -- meters --------------------------------------------------------------------------------------

    def _update_meters(self) -> None:
        mic = self.audio_input.level_dbfs() if self.audio_input is not None else -90.0
        out = self.player.level_dbfs() if self.player is not None else -90.0
        self.window.set_levels(mic, out)

    def _update_memory(self) -> None:
        self.window.set_memory(memory_text(self.session.model_info))


def quit_on_signals(app: QCoreApplication) -> None:
    """Ctrl+C in the terminal and SIGTERM close the window the normal way (settings saved).

    Python runs signal handlers only between bytecodes, so a timer gives it a moment every 200 ms
    while Qt's loop is in C++."""
    import signal

    def close(_signum: int, _frame: object) -> None:
        if isinstance(app, QApplication):
            app.closeAllWindows()
        app.quit()

    signal.signal(signal.SIGINT, close)
    signal.signal(signal.SIGTERM, close)
    ticker = QTimer(app)
    ticker.setInterval(200)
    ticker.timeout.connect(lambda: None)
    ticker.start()


def run_desk(launch: Launch) -> int:
    """Start the Qt app; returns its exit code (exits at once if the engine is stuck in a load)."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Omni Desk")
    app.setOrganizationName("omnidesk")
    desk = Desk(launch)
    desk.start()
    quit_on_signals(app)
    code = app.exec()
    desk.shutdown()
    if not desk.closed_cleanly:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # the worker is inside a long library call (loading); it cannot be joined
    return code
