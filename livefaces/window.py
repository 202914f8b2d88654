"""The preview window: the only module that imports pygame (SDL).

Why pygame and not OpenCV's highgui: livefaces depends on ``opencv-python-headless`` so that it
runs on servers and in containers without X or libGL, and OpenCV's GUI build
(``opencv-python``) cannot be installed beside it (both ship the ``cv2`` module). pygame's
wheels bring SDL with them, so the ``preview`` extra is all a desktop needs.

Windows must be driven from the main thread (macOS insists), so this is a loop the CLI runs
on its main thread, not a sink.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import LiveFacesError

#: largest window opened for a frame (pixels); larger frames are shown scaled down
MAX_WINDOW = (1280, 800)


def fit_size(width: int, height: int, max_size: tuple[int, int] = MAX_WINDOW) -> tuple[int, int]:
    """``(w, h)`` of a window showing a ``width``×``height`` frame: the frame's own size, or
    scaled down (aspect ratio kept) to fit ``max_size``; never scaled up."""
    s = min(1.0, max_size[0] / width, max_size[1] / height)
    return max(1, round(width * s)), max(1, round(height * s))


def _pygame() -> Any:
    """``import pygame`` quietly (it prints a banner on import), or a one-line error."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")  # Ctrl-C belongs to the CLI's handlers
    try:
        import pygame
    except ImportError as e:
        raise LiveFacesError(
            "cannot open a window: pygame is not installed; install livefaces with its 'preview' "
            "extra (pip install '.[cpu,preview]' in the livefaces folder)") from e
    return pygame


def check_display() -> None:
    """Raise a one-line error if no window can be opened (no display, no pygame)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        raise LiveFacesError(
            "cannot open a window: no display (DISPLAY is not set); run it on a desktop, or use "
            "'livefaces watch' with --record OUT.mp4 instead")
    pg = _pygame()
    try:
        pg.display.init()
    except pg.error as e:
        raise LiveFacesError(f"cannot open a window ({e}); use 'livefaces watch' with "
                             "--record OUT.mp4 instead") from e


class Window:
    """One window showing RGB images; :meth:`show` returns False when the user quits (q, Esc,
    or the window closed). The window opens at the first image's size (scaled down to fit
    ``max_size``, aspect ratio kept; :func:`fit_size`) and stays resizable: images are scaled
    to whatever size the user gives it."""

    def __init__(self, title: str = "livefaces", max_size: tuple[int, int] = MAX_WINDOW) -> None:
        self._pg = _pygame()
        self._pg.display.init()
        self._pg.display.set_caption(title)
        self.title = title
        self.max_size = max_size
        self.size: tuple[int, int] | None = None
        """the size the window was given for the first image, (w, h)"""
        self._screen: Any = None

    def show(self, rgb: np.ndarray) -> bool:
        """Draw an ``(H, W, 3)`` uint8 RGB image; False when the user has quit."""
        pg = self._pg
        h, w = rgb.shape[:2]
        if self._screen is None:
            self.size = fit_size(w, h, self.max_size)
            self._screen = pg.display.set_mode(self.size, pg.RESIZABLE)
        img = pg.image.frombuffer(np.ascontiguousarray(rgb).data, (w, h), "RGB")
        if self._screen.get_size() != (w, h):
            img = pg.transform.smoothscale(img, self._screen.get_size())
        self._screen.blit(img, (0, 0))
        pg.display.flip()
        return self.poll()

    def poll(self, wait_ms: int = 1) -> bool:
        """Handle the window's events (after waiting ``wait_ms``); False when the user quit."""
        pg = self._pg
        if wait_ms > 1:
            pg.time.wait(wait_ms)
        for ev in pg.event.get():
            if ev.type == pg.QUIT or (ev.type == pg.KEYDOWN and ev.key in (pg.K_q, pg.K_ESCAPE)):
                return False
        return True

    def close(self) -> None:
        self._pg.display.quit()


def run_window(next_image: Callable[[], np.ndarray | None], keep_going: Callable[[], bool],
               title: str = "livefaces") -> bool:
    """Show images from ``next_image()`` (None: nothing new) until the user quits (returns
    True) or ``keep_going()`` is False (returns False)."""
    check_display()
    win = Window(title)
    try:
        while keep_going():
            img = next_image()
            alive = win.show(img) if img is not None else win.poll(10)
            if not alive:
                return True
        return False
    finally:
        win.close()
