"""Webcams through OpenCV's VideoCapture (V4L2 on Linux, AVFoundation, Media Foundation).

Why OpenCV rather than PyAV here: it picks the platform's camera API by itself (a number
works on Linux, macOS and Windows alike), and ``CAP_PROP_BUFFERSIZE=1`` keeps the driver
queue short so frames are fresh.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2

from ..errors import SourceError, StalledError
from ..types import Frame


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV's own log output off while probing a camera: an absent camera makes every
    backend (V4L2, FFmpeg, Orbbec) print warnings; our one-line error says it better."""
    # (The process environment is left alone: setenv from this capture thread could race
    # with FFmpeg threads reading it. Device paths that do not exist are refused before.)
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


class WebcamSource:
    """Webcam ``device`` (a number, or a path such as ``/dev/video0``); live."""

    live = True

    def __init__(self, device: int | str, width: int | None = None, height: int | None = None):
        self.device = device
        self.name = f"webcam:{device}"
        self.width, self.height = width, height
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        self._stall = 10.0
        self.fps: float | None = None

    def open(self, open_timeout: float = 10.0, stall_timeout: float = 10.0) -> None:
        self.close()
        self._stall = stall_timeout
        if isinstance(self.device, str) and not os.path.exists(self.device):
            raise SourceError(f"{self.name}: no such camera device; check it is plugged in "
                              f"(ls /dev/video*)")
        with _quiet_opencv():
            cap = cv2.VideoCapture(self.device)
            opened = cap.isOpened()
        if not opened:
            cap.release()
            raise SourceError(f"{self.name}: cannot open the camera; check it is plugged in, not "
                              f"used by another program, and that you may access it (video group)")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if self.width and self.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        self.fps = cap.get(cv2.CAP_PROP_FPS) or None
        self._cap = cap

    def read(self) -> Frame:
        if self._cap is None:
            raise SourceError(f"{self.name}: not open")
        t0 = time.monotonic()
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            if time.monotonic() - t0 >= self._stall:
                raise StalledError(f"{self.name}: no frame for {self._stall:g} s")
            raise SourceError(f"{self.name}: the camera stopped delivering frames")
        frame = Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.name, self._index, None,
                      time.monotonic())
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap = None
