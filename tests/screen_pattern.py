"""A window with a known pattern on an X display (python-xlib, in the test's process): four
quadrants of plain colours, which the X server paints itself (each is a child window's background),
so nothing has to answer Expose events. `show()` changes the colours and says when they were on."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

RGB = tuple[int, int, int]
FIRST: tuple[RGB, RGB, RGB, RGB] = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255))
SECOND: tuple[RGB, RGB, RGB, RGB] = ((255, 255, 0), (0, 255, 255), (255, 0, 255), (0, 0, 0))


class PatternWindow:
    """A `width` x `height` window at (x, y) titled `title`, quadrants in reading order."""

    def __init__(
        self, title: str = "Pattern window", x: int = 100, y: int = 60, width: int = 320, height: int = 240
    ) -> None:
        from Xlib import X, display

        self.title, self.x, self.y, self.width, self.height = title, x, y, width, height
        self.display = display.Display()
        screen = self.display.screen()
        self.window = screen.root.create_window(
            x, y, width, height, 0, screen.root_depth, X.InputOutput, X.CopyFromParent, background_pixel=0
        )
        self.window.set_wm_name(title)
        self.quadrants: list[Any] = []
        for index in range(4):
            child = self.window.create_window(
                index % 2 * width // 2, index // 2 * height // 2, width // 2, height // 2, 0,
                screen.root_depth, X.InputOutput, X.CopyFromParent, background_pixel=0,
            )  # fmt: skip
            child.map()
            self.quadrants.append(child)
        self.show(FIRST)
        self.window.map()
        self.display.sync()

    @property
    def window_id(self) -> int:
        return int(self.window.id)

    def show(self, colours: tuple[RGB, RGB, RGB, RGB]) -> float:
        """Paint the quadrants; returns `time.perf_counter()` once the server has done it."""
        for child, (r, g, b) in zip(self.quadrants, colours, strict=True):
            child.change_attributes(background_pixel=r << 16 | g << 8 | b)
            child.clear_area()
        self.display.sync()
        return time.perf_counter()

    def resize(self, width: int, height: int) -> None:
        self.window.configure(width=width, height=height)
        self.display.sync()

    def close(self) -> None:
        self.window.destroy()
        self.display.sync()
        self.display.close()

    def __enter__(self) -> PatternWindow:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def quadrant_colours(rgb: np.ndarray) -> list[RGB]:
    """The median colour of each quadrant's middle half (a downscaled frame blurs the borders)."""
    height, width = rgb.shape[:2]
    colours = []
    for index in range(4):
        top, left = index // 2 * height // 2, index % 2 * width // 2
        part = rgb[top + height // 8 : top + 3 * height // 8, left + width // 8 : left + 3 * width // 8]
        r, g, b = (int(np.median(part[..., c])) for c in range(3))
        colours.append((r, g, b))
    return colours


def shows(rgb: np.ndarray, colours: tuple[RGB, ...], tolerance: int = 24) -> bool:
    """Whether the picture is the pattern in `colours` (each quadrant within `tolerance`)."""
    seen = quadrant_colours(rgb)
    pairs = zip(seen, colours, strict=True)
    return all(max(abs(a - b) for a, b in zip(s, c, strict=True)) <= tolerance for s, c in pairs)
