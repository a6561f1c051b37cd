"""The screen, or one window, as an RGB picture: `grab(target)`, `list_windows()`, and
`capture_problem()` saying in words why it cannot work on this desktop.

Pixels come from `mss` (X11 XShmGetImage/XGetImage, Windows GDI, macOS CoreGraphics, through
ctypes): it answers from any thread, so the screen is captured on its own thread like the camera.
Qt's `QScreen.grabWindow` was the other candidate (PySide6 is here already), but it must run on
the GUI thread, which must never wait on a capture, and it gives nothing on the offscreen platform.
Windows are listed through python-xlib (already here with pynput): the window manager's
`_NET_CLIENT_LIST`, or the root's mapped children where there is none. A window is captured as the
part of the screen it covers (what lies over it is seen too), followed as it moves.

What each desktop allows: X11 everything; Wayland gives no app the screen without the desktop's
screen-cast portal (not used here), so sharing is refused with a message; under XWayland only X11
apps' windows are seen; macOS shows only the wallpaper until the user allows Screen Recording;
Windows has no window list here (the whole screen only).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.camera import CameraError, SourceEnded

WAYLAND_PROBLEM = (
    "Screen sharing needs an X11 session: Wayland shows the screen to an app only through the "
    "desktop's screen-cast portal, which Omni Desk does not use yet. Log in with an 'Xorg' (X11) "
    "session to share the screen."
)

SCREEN_FPS = 4.0  # shared screen, read and kept: a turn takes 2 a second (1 while the screen is still)


class ScreenCaptureError(CameraError):
    """The screen or window cannot be captured; the message says why in words."""


class WindowGone(ScreenCaptureError, SourceEnded):
    """The shared window was closed: sharing it cannot come back."""


@dataclass(frozen=True, slots=True)
class ScreenTarget:
    """What is shared: the whole screen (`window_id` 0) or one top-level window, by its X id; the
    title names it to the user and finds it again after a restart (ids change)."""

    window_id: int = 0
    title: str = ""

    @property
    def is_window(self) -> bool:
        return self.window_id != 0 or bool(self.title)

    @property
    def label(self) -> str:
        if self.title:
            return f"the window {self.title!r}"
        return "the shared window" if self.window_id else "the whole screen"

    def as_setting(self) -> str:
        """How `[screen] target` keeps it: "screen", or "window:" and the title."""
        return f"window:{self.title}" if self.is_window else "screen"

    @classmethod
    def from_setting(cls, text: str) -> ScreenTarget:
        """The target a setting names; a window is found again by its title (`find_window`)."""
        if text.startswith("window:") and text.removeprefix("window:"):
            return cls(0, text.removeprefix("window:"))
        return WHOLE_SCREEN


WHOLE_SCREEN = ScreenTarget()


def capture_problem() -> str:
    """Why the screen cannot be captured here ("" when it can)."""
    if sys.platform in ("win32", "darwin"):
        return ""
    if not os.environ.get("DISPLAY"):
        if os.environ.get("WAYLAND_DISPLAY") or os.environ.get("XDG_SESSION_TYPE") == "wayland":
            return WAYLAND_PROBLEM
        return "Screen sharing needs a display: DISPLAY is not set (no X11 session)."
    return ""


def capture_caveat() -> str:
    """What the user should know although sharing works ("" when nothing)."""
    if sys.platform == "darwin":
        return (
            "macOS shows only the desktop background until Omni Desk is allowed Screen Recording "
            "(System Settings › Privacy & Security)."
        )
    if os.environ.get("WAYLAND_DISPLAY"):
        return "On Wayland only X11 (XWayland) programs can be seen; the others show black."
    return ""


def list_windows() -> list[ScreenTarget]:
    """The top-level windows with a title, as the window manager lists them (X11 only; [] elsewhere
    or when no display answers)."""
    if sys.platform in ("win32", "darwin") or capture_problem():
        return []
    from Xlib import X, display, error

    try:
        xdisplay = display.Display()
    except Exception:
        return []
    try:
        root = xdisplay.screen().root
        listed = root.get_full_property(xdisplay.intern_atom("_NET_CLIENT_LIST"), X.AnyPropertyType)
        candidates = (
            [xdisplay.create_resource_object("window", int(i)) for i in listed.value]
            if listed is not None
            else root.query_tree().children
        )
        windows = []
        for window in candidates:
            try:
                if window.get_attributes().map_state != X.IsViewable:
                    continue
                title = _title(xdisplay, window)
            except error.XError:
                continue  # closed while being listed
            if title:
                windows.append(ScreenTarget(int(window.id), title))
        return windows
    finally:
        xdisplay.close()


def find_window(title: str) -> ScreenTarget | None:
    """The first listed window whose title is `title` (then one that contains it)."""
    windows = list_windows()
    exact = [w for w in windows if w.title == title]
    near = [w for w in windows if title and title.lower() in w.title.lower()]
    found = exact or near
    return found[0] if found else None


def _title(xdisplay: Any, window: Any) -> str:
    net_name = window.get_full_property(
        xdisplay.intern_atom("_NET_WM_NAME"), xdisplay.intern_atom("UTF8_STRING")
    )
    if net_name is not None and net_name.value:
        value = net_name.value
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    name = window.get_wm_name()
    return name.decode("latin-1") if isinstance(name, bytes) else (name or "")


class ScreenGrabber:
    """One thread's capture: an `mss` instance and, for windows, an X connection (neither is
    shared between threads). `close()` releases both."""

    def __init__(self) -> None:
        self._mss: Any = None
        self._xdisplay: Any = None

    def grab(self, target: ScreenTarget = WHOLE_SCREEN) -> np.ndarray:
        """(h, w, 3) uint8 RGB of the whole screen (all monitors) or of the window's area."""
        problem = capture_problem()
        if problem:
            raise ScreenCaptureError(problem)
        import mss

        try:
            if self._mss is None:
                self._mss = mss.MSS()
            screen = self._mss.monitors[0]
            region = self._window_region(target, screen) if target.is_window else screen
            shot = self._mss.grab(region)
        except mss.ScreenShotError as error:
            raise ScreenCaptureError(f"the screen cannot be captured: {error}") from error
        bgra = np.frombuffer(shot.bgra, np.uint8).reshape(shot.height, shot.width, 4)
        return np.ascontiguousarray(bgra[:, :, 2::-1])

    def _window_region(self, target: ScreenTarget, screen: dict[str, int]) -> dict[str, int]:
        """The window's area on the screen, clipped to it; WindowGone when it was closed."""
        from Xlib import X, display, error

        if self._xdisplay is None:
            self._xdisplay = display.Display()
        xdisplay = self._xdisplay
        window_id = target.window_id
        if not window_id:
            found = find_window(target.title)
            if found is None:
                raise WindowGone(f"no window called {target.title!r} is open")
            window_id = found.window_id
        window = xdisplay.create_resource_object("window", window_id)
        root = xdisplay.screen().root
        try:
            if window.get_attributes().map_state != X.IsViewable:
                raise ScreenCaptureError(f"{target.label} is minimised or hidden")
            geometry = window.get_geometry()
            origin = root.translate_coords(window, 0, 0)
        except error.XError as gone:
            raise WindowGone(f"{target.label} was closed") from gone
        left, top = max(origin.x, screen["left"]), max(origin.y, screen["top"])
        right = min(origin.x + geometry.width, screen["left"] + screen["width"])
        bottom = min(origin.y + geometry.height, screen["top"] + screen["height"])
        if right - left < 2 or bottom - top < 2:
            raise ScreenCaptureError(f"{target.label} is off the screen")
        return {"left": left, "top": top, "width": right - left, "height": bottom - top}

    def close(self) -> None:
        if self._mss is not None:
            self._mss.close()
            self._mss = None
        if self._xdisplay is not None:
            self._xdisplay.close()
            self._xdisplay = None


_per_thread = threading.local()


def grab(target: ScreenTarget = WHOLE_SCREEN) -> np.ndarray:
    """(h, w, 3) uint8 RGB of the whole screen or one window, from any thread (each thread keeps
    its own connection); ScreenCaptureError, in words, when it cannot be captured."""
    grabber = getattr(_per_thread, "grabber", None)
    if grabber is None:
        grabber = _per_thread.grabber = ScreenGrabber()
    return grabber.grab(target)


class ScreenReader:
    """The shared screen or window as an `app.camera.FrameReader`, read `fps` times a second on the
    capture thread (which opens it, so the X connections belong to that thread). Its errors say
    "the shared window", not the title: they become problems, which the journal keeps."""

    def __init__(self, target: ScreenTarget, fps: float, size: list[int] | None = None) -> None:
        """`size` ([height, width], filled by the first frame) is kept across reopens: every
        frame of one sharing has one size (a resized window is scaled), as a turn's clip needs."""
        if target.is_window and not target.window_id:
            found = find_window(target.title)
            if found is None:
                raise WindowGone(f"no window called {target.title!r} is open")
            target = found
        self.target = ScreenTarget(target.window_id)  # its messages name no title: they are journaled
        self.period_s = 1.0 / fps
        self.size = size if size is not None else []
        self.grabber = ScreenGrabber()

    def read(self) -> np.ndarray:
        rgb = self.grabber.grab(self.target)
        if not self.size:
            self.size[:] = rgb.shape[:2]
        elif list(rgb.shape[:2]) != self.size:
            import cv2

            rgb = cv2.resize(rgb, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        return rgb

    def close(self) -> None:
        self.grabber.close()
