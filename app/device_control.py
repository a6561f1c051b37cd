"""The app's devices as the window changes them: starting audio, switching the microphone or the
speaker, the camera on, off or to another source, and screen sharing (`app/screen_share.py`).
Opening a device takes a few hundred milliseconds, so every start and switch runs off the Qt thread
and reports back by signal.

Each device stands alone: a microphone that fails leaves the speaker working and the other way
round, and each is waited for and taken up again by itself (`audio_io.stream_keeper`). While the
speaker is unavailable, replies come as text only."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QFileDialog

from app import config as cfg
from app.camera_feed import CameraFeed, camera_choices
from app.screen_capture import ScreenTarget
from app.screen_share import ScreenShare, TurnPicture
from app.session import Session
from app.session_parts import DEVICE_WORDS
from events import DeviceLost, DeviceRestored, DeviceUnavailable
from ui.main_window import MainWindow

log = logging.getLogger(__name__)

# (settings, event sink) -> (the session's AudioInput, the player), each with `level_dbfs()` for the
# meters; the player is started by the app (off the Qt thread) and may raise there.
AudioFactory = Callable[[cfg.AudioSettings, Callable[[object], None]], tuple[Any, Any]]


def real_audio(settings: cfg.AudioSettings, on_event: Callable[[object], None]) -> tuple[Any, Any]:
    """The microphone chain and the player on the configured devices, not started yet; both in
    the app's turn ids, which a spoken notice between a reply's parts shifts (app/speaker_turns.py)."""
    from app.speaker_turns import SpeakerTurns, TurnsInput
    from audio_io.chain import MicrophoneChain, make_player

    speaker: list[SpeakerTurns] = []
    player = make_player(settings.output_device, lambda event: on_event(speaker[0].app_event(event)))
    speaker.append(SpeakerTurns(player))
    mic = MicrophoneChain(
        player,
        device=settings.input_device,
        echo_cancellation=settings.echo_cancellation,
        barge_in=settings.barge_in,
        end_of_turn_silence_ms=settings.end_of_turn_silence_ms,
        responsiveness=settings.responsiveness,
        backchannels=settings.backchannels,
    )
    return TurnsInput(mic, speaker[0]), speaker[0]


class DeviceControl(QObject):
    """Owns the microphone chain, the player, the camera feed and the screen share; `remember`
    records a choice in the config the app saves on quit."""

    audio_started = Signal(list, list)  # input and output device names
    device_failed = Signal(str)  # a device change that did not work (audio stays on)
    speaker_failed = Signal(str)  # replies go on as text

    def __init__(
        self,
        window: MainWindow,
        settings: cfg.Config,
        audio: AudioFactory | None,
        remember: Callable[..., None],
    ) -> None:
        """Builds the devices (not started); `problems` gets what could not be built."""
        super().__init__(window)
        self.window = window
        self.remember = remember
        self.problems: list[str] = []
        self.audio_input: Any = None
        self.player: Any = None
        if audio is not None:
            try:
                self.audio_input, self.player = audio(settings.audio, self.relay)
            except Exception as error:
                self.problems.append(
                    f"Audio is off ({error}); you can still type. Check the devices or --text."
                )
        self.camera = CameraFeed(settings.camera, self.relay, self)
        self.screen = ScreenShare(
            self.relay, ScreenTarget.from_setting(settings.screen.target), remember, self
        )
        self.visual = TurnPicture(self.camera, self.screen)  # what spoken turns see: screen or camera
        self.session: Session | None = None
        self.audio_started.connect(self._on_audio_started)
        self.device_failed.connect(window.show_error)
        self.speaker_failed.connect(self._on_speaker_failed)
        self.chosen_input = ""
        self.chosen_output = ""

    @property
    def has_audio(self) -> bool:
        return self.audio_input is not None or self.player is not None

    def relay(self, event: object) -> None:
        """Device events (any thread) go to the session once it exists."""
        if self.session is not None:
            self.session.post_audio_event(event)

    # -- audio ---------------------------------------------------------------------------------------

    def start_audio(self, input_device: str, output_device: str) -> None:
        self.chosen_input, self.chosen_output = input_device, output_device
        threading.Thread(target=self._start_audio, name="audio-start", daemon=True).start()

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
            start_player = getattr(self.player, "start", None)  # a test's player may have none
            if start_player is not None:
                start_player()
        except Exception as error:
            log.exception("starting the speaker")
            self.speaker_failed.emit(f"The speaker could not start ({error}); replies are shown as text.")
        try:
            if self.session is not None:
                self.session.start_audio()
        except Exception as error:
            log.exception("starting the microphone")
            self.device_failed.emit(f"The microphone could not start ({error}); you can still type.")
        self.audio_started.emit(inputs, outputs)

    def _on_speaker_failed(self, message: str) -> None:
        self.window.show_error(message)
        self._route_speech(False)

    def on_device_event(self, event: object) -> None:
        """A device failed or came back (Qt thread): replies are text only while the speaker is away,
        and the window says so."""
        if isinstance(event, DeviceUnavailable | DeviceLost) and event.kind == "output":
            self._route_speech(False)
        elif isinstance(event, DeviceRestored):
            if event.kind == "output":
                self._route_speech(True)
            what = DEVICE_WORDS.get(event.kind, event.kind)
            self.window.error_banner.dismiss_matching(f"The {what} ")
            self.window.show_info(f"The {what} {event.name!r} works again.")

    def _route_speech(self, speaker_works: bool) -> None:
        session = self.session
        if session is None or self.player is None:
            return
        session.engine.set_speech(self.player if speaker_works else None)
        session.playback = self.player if speaker_works else None

    @Slot(list, list)
    def _on_audio_started(self, inputs: list[str], outputs: list[str]) -> None:
        self.window.set_devices(inputs, outputs, self.chosen_input, self.chosen_output)

    def choose_input(self, name: str) -> None:
        self.remember(audio={"input_device": name})
        chain, session = self.audio_input, self.session
        if chain is None or session is None:
            return

        def restart() -> None:
            chain.stop()
            chain.device = name or None
            try:
                session.start_audio()
            except Exception as error:
                self.device_failed.emit(
                    f"The microphone {name or 'system default'!r} could not start: {error}"
                )

        threading.Thread(target=restart, name="audio-restart", daemon=True).start()

    def choose_output(self, name: str) -> None:
        """Move playback to another device (off the Qt thread); the echo canceller and barge-in
        follow, since they listen to what the new device plays."""
        self.remember(audio={"output_device": name})
        metered, chain, session = self.player, self.audio_input, self.session
        if metered is None or not hasattr(metered, "swap"):
            return

        def switch() -> None:
            from audio_io.playback import Player, PlayerConfig

            try:
                app_event = getattr(metered, "app_event", lambda event: event)  # SpeakerTurns' ids
                new = Player(PlayerConfig(device=name or None), on_event=lambda e: self.relay(app_event(e)))
                new.start()
            except Exception as error:
                self.device_failed.emit(f"The speaker {name or 'system default'!r} could not start: {error}")
                return
            metered.swap(new).stop()
            if chain is not None and session is not None:
                chain.stop()
                try:
                    session.start_audio()
                except Exception as error:
                    self.device_failed.emit(f"The microphone could not restart: {error}")

        threading.Thread(target=switch, name="audio-switch", daemon=True).start()

    def set_responsiveness(self, responsiveness: str) -> None:
        """Eager, balanced or patient, from the next pause on; saved on quit."""
        self.remember(audio={"responsiveness": responsiveness})
        setter = getattr(self.audio_input, "set_responsiveness", None)
        if setter is not None:
            setter(responsiveness)

    def levels(self) -> tuple[float, float]:
        mic = self.audio_input.level_dbfs() if self.audio_input is not None else -90.0
        out = self.player.level_dbfs() if self.player is not None else -90.0
        return mic, out

    def stop(self) -> None:
        self.camera.close()
        self.screen.close()
        if self.player is not None:
            try:
                self.player.stop()
            except Exception:
                log.exception("stopping the player")

    # -- camera --------------------------------------------------------------------------------------

    def set_camera_on(self, on: bool) -> None:
        self.remember(camera={"enabled": on})
        if on:
            self.camera.start()
        else:
            self.camera.stop()
        self.window.camera_view.set_on(on)

    def choose_camera(self, source: str) -> None:
        """Switch to camera `source` (an index, a name or a video file) and turn it on."""
        self.remember(camera={"source": source, "enabled": True})
        self.camera.start(source)
        self.window.camera_view.set_sources(camera_choices(), source)
        self.window.camera_view.set_on(True)

    def ask_video_file(self) -> None:
        kinds = "Videos (*.mp4 *.avi *.mkv *.mov *.webm);;All files (*)"
        path, _filter = QFileDialog.getOpenFileName(self.window, "A video file as the camera", "", kinds)
        if path:
            self.choose_camera(path)
        else:
            self.window.camera_view.set_sources(camera_choices(), self.camera.source)

    def wire(self, session: Session) -> None:
        self.session = session
        w = self.window
        self.camera.frame.connect(w.camera_view.show_frame)
        self.camera.status_changed.connect(w.camera_view.set_status)
        w.camera_view.toggled.connect(self.set_camera_on)
        w.camera_view.source_chosen.connect(self.choose_camera)
        w.camera_view.file_requested.connect(self.ask_video_file)
        self.screen.wire(w.screen_view)
        w.input_device_chosen.connect(self.choose_input)
        w.output_device_chosen.connect(self.choose_output)
