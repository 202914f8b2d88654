"""The preview window: the only module that calls OpenCV's GUI (highgui) functions.

Windows must be driven from the main thread (macOS and some Qt builds insist), so this is a
loop the CLI runs on its main thread, not a sink.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import cv2
import numpy as np

from .errors import LiveFacesError

QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q, Esc
#: largest window opened for a frame (pixels); larger frames are shown scaled down
MAX_WINDOW = (1280, 800)


def fit_size(width: int, height: int, max_size: tuple[int, int] = MAX_WINDOW) -> tuple[int, int]:
    """``(w, h)`` of a window showing a ``width``×``height`` frame: the frame's own size, or
    scaled down (aspect ratio kept) to fit ``max_size``; never scaled up."""
    s = min(1.0, max_size[0] / width, max_size[1] / height)
    return max(1, round(width * s)), max(1, round(height * s))


def check_display() -> None:
    """Raise a one-line error if no window can be opened (no display, headless OpenCV).

    Checked before any GUI call: OpenCV's Qt build aborts the process without a display."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")
                                                 or os.environ.get("QT_QPA_PLATFORM")):
        raise LiveFacesError(
            "cannot open a window: no display (DISPLAY is not set); run it on a desktop, or use "
            "'livefaces watch' with --record OUT.mp4 instead")
    try:
        cv2.namedWindow("livefaces-check", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("livefaces-check")
    except cv2.error as e:
        raise LiveFacesError(
            "cannot open a window (no display, or an OpenCV build without GUI support); "
            "use 'livefaces watch' with --record OUT.mp4 instead") from e


class Window:
    """One named window showing RGB images; :meth:`show` returns False when the user quits
    (q, Esc, or the window closed). The window opens at the first image's size (scaled down
    to fit ``max_size``, aspect ratio kept; :func:`fit_size`) and stays resizable."""

    def __init__(self, title: str = "livefaces", max_size: tuple[int, int] = MAX_WINDOW) -> None:
        self.title = title
        self.max_size = max_size
        self.size: tuple[int, int] | None = None
        """the size the window was given for the first image, (w, h)"""
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        self._shown = False

    def show(self, rgb: np.ndarray) -> bool:
        if self.size is None:  # without this, Qt's default is 400×300 whatever the frame
            self.size = fit_size(rgb.shape[1], rgb.shape[0], self.max_size)
            cv2.resizeWindow(self.title, *self.size)
        cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self._shown = True
        return self.poll()

    def poll(self, wait_ms: int = 1) -> bool:
        key = cv2.waitKey(wait_ms) & 0xFF
        if key in QUIT_KEYS:
            return False
        if self._shown:
            try:
                if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                    return False
            except cv2.error:
                return False
        return True

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


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
