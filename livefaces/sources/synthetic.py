"""A synthetic camera: the bundled sample face gliding over a plain background.

Shipped so tests and demos need no hardware, file or server (``livefaces watch synthetic:``).
Spec: ``synthetic:[WxH][@FPS][,frames=N]``, e.g. ``synthetic:1280x720@25``.
"""

from __future__ import annotations

import math
import time
from importlib import resources

import cv2
import numpy as np

from ..errors import EndOfStream, SourceError
from ..imageio import read_image
from ..specs import parse_synthetic
from ..types import Frame


def sample_face() -> np.ndarray:
    """The bundled Grace Hopper photo, RGB uint8."""
    return read_image(str(resources.files("livefaces.data") / "grace_hopper.jpg"))


def render_scene(face: np.ndarray, width: int, height: int, t: float,
                 face_height: int | None = None) -> np.ndarray:
    """The frame at ``t`` seconds: ``face`` scaled to ``face_height`` px moving on a loop."""
    fh = face_height or max(48, height // 2)
    fw = int(round(face.shape[1] * fh / face.shape[0]))
    fh, fw = min(fh, height), min(fw, width)
    small = cv2.resize(face, (fw, fh), interpolation=cv2.INTER_AREA)
    img = np.empty((height, width, 3), np.uint8)
    img[:] = (70, 90, 110)
    x = int((width - fw) * (0.5 + 0.5 * math.sin(2 * math.pi * t / 6.0)))
    y = int((height - fh) * (0.5 + 0.3 * math.sin(2 * math.pi * t / 4.0)))
    img[y:y + fh, x:x + fw] = small
    return img


class SyntheticSource:
    """A fake live camera. ``frames=None`` runs forever; ``realtime`` paces at ``fps``."""

    def __init__(self, width: int = 640, height: int = 360, fps: float = 25.0,
                 frames: int | None = None, realtime: bool = True) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.frames = frames
        self.realtime = realtime
        self.live = realtime
        self.name = f"synthetic:{width}x{height}@{fps:g}"
        self._face: np.ndarray | None = None
        self._index = 0
        self._t0 = 0.0

    @classmethod
    def from_spec(cls, spec: str, realtime: bool = True) -> SyntheticSource:
        try:
            w, h, fps, n = parse_synthetic(spec)
        except ValueError as e:
            raise SourceError(f"{spec}: {e}") from None
        return cls(w, h, fps, n, realtime=True)

    def open(self, open_timeout: float = 10.0, stall_timeout: float = 10.0) -> None:
        self._face = sample_face()
        self._t0 = time.monotonic()

    def read(self) -> Frame:
        if self._face is None:
            raise SourceError(f"{self.name}: not open")
        if self.frames is not None and self._index >= self.frames:
            raise EndOfStream(self.name)
        pts = self._index / self.fps
        if self.realtime:
            delay = self._t0 + pts - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        img = render_scene(self._face, self.width, self.height, pts)
        frame = Frame(img, self.name, self._index, pts, time.monotonic())
        self._index += 1
        return frame

    def close(self) -> None:
        pass
