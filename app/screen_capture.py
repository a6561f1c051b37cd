"""The screen, or one window, as an RGB picture: `grab(target)`, `list_windows()`, and
`capture_problem()` saying in words why it cannot work on this desktop.

Pixels come from `mss` (X11 XShmGetImage/XGetImage, Windows GDI, macOS CoreGraphics, through
ctypes): it answers from any thread, so the screen is captured on its own thread like the camera.
Qt's `QScreen.grabWindow` was the other candidate (PySide6 is here already), but it must run on
the GUI thread, which must never wait on a capture, and it gives nothing on the offscreen platform.
Windows are listed through python-xlib (already here with pynput): the window manager's
`_NET_CLIENT_LIST`, or the root's mapped children where there is none. A window is captured from
its own pixels through X's Composite extension (what covers it is not seen, as OBS does on X11);
without it, as the part of the screen it covers, followed as it moves.

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
        self._redirected: set[int] = set()  # windows whose own pixels the server keeps (Composite)

    def grab(self, target: ScreenTarget = WHOLE_SCREEN) -> np.ndarray:
        """(h, w, 3) uint8 RGB of the whole screen (all monitors) or of one window: its own pixels
        where the X server has the Composite extension (what covers it is not seen), else the part
        of the screen it covers."""
        problem = capture_problem()
        if problem:
            raise ScreenCaptureError(problem)
        if target.is_window and sys.platform in ("win32", "darwin"):
            raise ScreenCaptureError("one window can be shared on X11 only; share the whole screen")
        import mss

        try:
            if self._mss is None:
                self._mss = mss.MSS()
            screen = self._mss.monitors[0]
            region = screen
            if target.is_window:
                own, region = self._window_shot(target, screen)
                if own is not None:
                    return own
            shot = self._mss.grab(region)
        except mss.ScreenShotError as error:
            raise ScreenCaptureError(f"the screen cannot be captured: {error}") from error
        bgra = np.frombuffer(shot.bgra, np.uint8).reshape(shot.height, shot.width, 4)
        return np.ascontiguousarray(bgra[:, :, 2::-1])

    def _window_shot(
        self, target: ScreenTarget, screen: dict[str, int]
    ) -> tuple[np.ndarray | None, dict[str, int]]:
        """The window's own pixels, or (None, the screen region it covers) to grab."""
        from Xlib import error

        try:
            window, geometry = self._open_window(target)
            own = self._own_pixels(window, geometry)
            if own is not None:
                return own, screen
            return None, self._window_region(target, window, geometry, screen)
        except error.XError as gone:  # the window closed between two requests
            raise WindowGone(f"{target.label} was closed") from gone

    def _open_window(self, target: ScreenTarget) -> tuple[Any, Any]:
        """The X window and its geometry; WindowGone when it was closed."""
        from Xlib import X, display, error

        if self._xdisplay is None:
            self._xdisplay = display.Display()
            self._xdisplay.set_error_handler(lambda *_args: None)  # a window closed under a request
        window_id = target.window_id
        if not window_id:
            found = find_window(target.title)
            if found is None:
                raise WindowGone(f"no window called {target.title!r} is open")
            window_id = found.window_id
        window = self._xdisplay.create_resource_object("window", window_id)
        try:
            if window.get_attributes().map_state != X.IsViewable:
                raise ScreenCaptureError(f"{target.label} is minimised or hidden")
            return window, window.get_geometry()
        except error.XError as gone:
            raise WindowGone(f"{target.label} was closed") from gone

    def _own_pixels(self, window: Any, geometry: Any) -> np.ndarray | None:
        """The window's own pixels through the Composite extension (OBS's way on X11), or None
        where the server lacks it or the window is not 24/32-bit."""
        from Xlib import X, error
        from Xlib.ext import composite

        if not self._xdisplay.has_extension("Composite"):
            return None
        width, height = geometry.width, geometry.height
        for _attempt in range(2):
            if window.id not in self._redirected:
                window.composite_redirect_window(composite.RedirectAutomatic)
                self._redirected.add(window.id)
            pixmap = window.composite_name_window_pixmap()
            try:
                image = pixmap.get_image(0, 0, width, height, X.ZPixmap, 0xFFFFFFFF)
                break
            except error.XError:  # not redirected: a closed window's id given to a new one
                self._redirected.discard(window.id)
            finally:
                pixmap.free()
        else:
            return None
        if image.depth not in (24, 32) or len(image.data) != width * height * 4:
            return None
        bgrx = np.frombuffer(image.data, np.uint8).reshape(height, width, 4)
        return np.ascontiguousarray(bgrx[:, :, 2::-1])

    def _window_region(
        self, target: ScreenTarget, window: Any, geometry: Any, screen: dict[str, int]
    ) -> dict[str, int]:
        """The window's area on the screen, clipped to it."""
        origin = self._xdisplay.screen().root.translate_coords(window, 0, 0)
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
            from Xlib.ext import composite

            for window_id in self._redirected:  # windows closed meanwhile: the error is ignored
                window = self._xdisplay.create_resource_object("window", window_id)
                window.composite_unredirect_window(composite.RedirectAutomatic)
            self._redirected.clear()
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
