"""Screen sharing (issue 15): the whole screen or one window as the turns' visual source.

Off at every start; the user turns it on in the window. While it is on, the screen is read on its
own capture thread (`app.camera.Camera` with `ScreenReader`) and its frames take the camera's place
in each spoken turn (`TurnPicture`): the model takes one video with the voice, so a turn carries
the screen's frames or the camera's, through the same picking, budget and live prefill. Frames live
only in the capture's memory (the last minute, downscaled) and in the engine's context: the journal
keeps no video, so nothing of the screen is written anywhere. Every change is reported as
`ScreenSharingChanged` on the session's spine, which the window's indicator follows; the reasons
and device names it gives never carry a window's title, since problems go to the journal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject

from app.camera import Camera, CameraConfig, CameraFrame
from app.camera_feed import FrameFeed
from app.screen_capture import (
    SCREEN_FPS,
    WHOLE_SCREEN,
    ScreenReader,
    ScreenTarget,
    capture_caveat,
    capture_problem,
    list_windows,
)
from events import ScreenSharingChanged
from ui.screen_view import ScreenView


def screen_choices(remembered: ScreenTarget) -> list[tuple[str, ScreenTarget]]:
    """(label, target) for the picker: the whole screen, then each open window (the remembered one
    first among them when it is open)."""
    windows = list_windows()
    windows.sort(key=lambda w: w.title != remembered.title)
    return [("Whole screen", WHOLE_SCREEN)] + [(f"Window: {w.title}", w) for w in windows]


class ScreenShare(QObject):
    """The shared screen while it is on; `on_event` is the session's spine (any thread)."""

    def __init__(
        self,
        on_event: Callable[[object], None],
        target: ScreenTarget,
        remember: Callable[..., None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.on_event = on_event
        self.target = target
        self.remember = remember
        self.feed = FrameFeed(on_event, "the capture of", self)
        self.feed.status_changed.connect(self._check_ended)
        self.view: ScreenView | None = None

    def wire(self, view: ScreenView) -> None:
        """The window's panel: its toggle and picker drive the sharing, which it shows."""
        self.view = view
        view.set_sharing(False, "")
        self.list_targets()
        self.feed.frame.connect(view.show_frame)
        self.feed.status_changed.connect(view.set_status)
        view.toggled.connect(self.set_on)
        view.target_chosen.connect(self.choose)
        view.targets_wanted.connect(self.list_targets)

    def show(self, event: ScreenSharingChanged) -> None:
        """The session reported a change (the one spine): the panel and its indicator follow."""
        if self.view is not None:
            self.view.set_sharing(event.on, event.target)

    def list_targets(self) -> None:
        """The picker lists the open windows again; a remembered window is found by its title, and
        one that is not open leaves the whole screen picked."""
        choices = screen_choices(self.target)
        listed = [target for _label, target in choices]
        if self.target not in listed and not self.on:
            same = [t for t in listed if t.is_window and t.title == self.target.title]
            self.target = same[0] if same else WHOLE_SCREEN
        if self.view is not None:
            self.view.set_targets(list(choices), self.target)

    def set_on(self, on: bool) -> None:
        if on:
            self.start()
        else:
            self.stop()

    def choose(self, target: ScreenTarget) -> None:
        """A target picked in the window: shared at once while sharing is on, else kept for when
        the user turns it on (picking is not consent to share)."""
        if self.on:
            self.start(target)
        elif target != self.target:
            self.target = target
            self.remember(screen={"target": target.as_setting()})

    @property
    def on(self) -> bool:
        return self.feed.on

    def start(self, target: ScreenTarget | None = None) -> None:
        """Share `target` (default: the last one); a desktop that allows no capture says why."""
        if target is not None and target != self.target:
            self.feed.stop()
            self.target = target
            self.remember(screen={"target": target.as_setting()})
        problem = capture_problem()
        if problem:
            self.feed.stop()
            self.on_event(ScreenSharingChanged(False, self.target.label, problem))
            return
        if self.feed.on:
            return
        shared = self.target
        size: list[int] = []  # one size for the whole sharing (ScreenReader)
        named = "the shared window" if shared.is_window else "the whole screen"  # no title: journaled
        config = CameraConfig(source=named, fps=SCREEN_FPS, store_fps=SCREEN_FPS)
        camera = Camera(
            config,
            self.on_event,
            open_reader=lambda: ScreenReader(shared, SCREEN_FPS, size),
            kind="screen",
        )
        self.feed.run(camera)
        self.on_event(ScreenSharingChanged(True, shared.label, capture_caveat()))

    def stop(self, reason: str = "") -> None:
        """Stop sharing (the capture is released off the Qt thread)."""
        if not self.feed.on:
            return
        self.feed.stop()
        self.on_event(ScreenSharingChanged(False, self.target.label, reason))

    def close(self) -> None:
        self.feed.close()

    def _check_ended(self, _status: str) -> None:
        """A shared window that was closed ends the sharing, with the reason."""
        camera = self.feed.camera
        if camera is not None and camera.status == "ended":
            self.stop("Screen sharing stopped: the shared window was closed.")


class TurnPicture:
    """What the spoken turns see (`app.session_parts.FrameSource`): the shared screen while it is
    shared, else the camera. Both answer at once from any thread."""

    def __init__(self, camera: FrameFeed, screen: ScreenShare) -> None:
        self.camera = camera
        self.screen = screen

    def _source(self) -> Any:
        return self.screen.feed if self.screen.on else self.camera

    def frames_between(self, start_s: float, end_s: float) -> list[CameraFrame]:
        return list(self._source().frames_between(start_s, end_s))

    def latest(self) -> CameraFrame | None:
        latest: CameraFrame | None = self._source().latest()
        return latest
