"""Motion: a cheap per-frame measure of change, and where it is (camera monitors' classic).

Each frame is reduced to a small blurred gray image (green channel, every 4th pixel, area
averaged to about 160 px wide, Gaussian blur); it is compared with the previous frame's.
Cells whose difference exceeds ``pixel_threshold`` (0-255) are "moving"; the frame has
motion when more than ``min_area`` of the cells move. The moving cells' bounding boxes, in
pixels of the frame, say where new faces can appear.

Cost, measured on a 1280×720 frame (Intel Xeon, 2 cores): 0.26 ms, against 3.4 ms for the
full-resolution gray conversion + resize. Compression noise of a still H.264 scene stays
below the default threshold (``scripts/bench_gating.py`` prints the measure of each clip).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Width of the reduced image the measure runs on.
WIDTH = 160
STRIDE = 4


@dataclass(frozen=True)
class MotionOptions:
    pixel_threshold: int = 12
    """a cell moves when its blurred gray value changes by more than this (0-255)"""
    min_area: float = 0.002
    """the frame has motion when more than this fraction of the cells move"""


@dataclass(frozen=True)
class Motion:
    """The change between a frame and the previous one.

    Attributes:
        fraction: moving cells / all cells (0..1).
        moving: ``fraction > min_area``.
        boxes: ``(K, 4)`` float32 xyxy boxes around the moving regions, in frame pixels.
        mask: the reduced boolean map of moving cells (``cell_size`` frame pixels per cell).
        cell: ``(sx, sy)`` frame pixels per cell.
        min_area: the threshold ``moving`` was judged by (for :meth:`outside`).
    """

    fraction: float
    moving: bool
    boxes: np.ndarray
    mask: np.ndarray
    cell: tuple[float, float]
    min_area: float = 0.0

    def outside(self, boxes: np.ndarray, margin: float = 0.5) -> bool:
        """Is there motion outside ``boxes`` (xyxy, frame pixels), each widened by ``margin``
        of its size on every side? (Faces that move inside their own tracked region do not
        count: the tracker follows them.)"""
        if not self.moving:
            return False
        if len(boxes) == 0:
            return True
        mask = self.mask.copy()
        sx, sy = self.cell
        for x1, y1, x2, y2 in np.asarray(boxes, np.float32).reshape(-1, 4):
            w, h = x2 - x1, y2 - y1
            a = int(max(0, (x1 - margin * w) // sx))
            b = int(max(0, (y1 - margin * h) // sy))
            c = int(np.ceil((x2 + margin * w) / sx))
            d = int(np.ceil((y2 + margin * h) / sy))
            mask[b:d, a:c] = False
        return bool(mask.mean() > self.min_area)


class MotionDetector:
    """Frame-to-frame motion of ONE source (not thread-safe; the detect loop owns it)."""

    def __init__(self, options: MotionOptions = MotionOptions()) -> None:
        self.options = options
        self._prev: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None

    def reset(self) -> None:
        self._prev = None

    def _reduce(self, image: np.ndarray) -> np.ndarray:
        small = np.ascontiguousarray(image[::STRIDE, ::STRIDE, 1] if image.ndim == 3
                                     else image[::STRIDE, ::STRIDE])
        h, w = small.shape[:2]
        if w > WIDTH:
            small = cv2.resize(small, (WIDTH, max(1, round(h * WIDTH / w))),
                               interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (5, 5), 0)

    def measure(self, image: np.ndarray) -> Motion:
        """The motion between ``image`` (H, W, 3) and the previous image given; the first
        image (and one of a new size) counts as all motion."""
        small = self._reduce(image)
        h, w = image.shape[:2]
        cell = (w / small.shape[1], h / small.shape[0])
        prev, self._prev = self._prev, small
        if prev is None or prev.shape != small.shape:
            mask = np.ones(small.shape, bool)
            return Motion(1.0, True, np.array([[0, 0, w, h]], np.float32), mask, cell,
                          self.options.min_area)
        mask = cv2.absdiff(small, prev) > self.options.pixel_threshold
        fraction = float(mask.mean())
        moving = fraction > self.options.min_area
        boxes = _regions(mask, cell) if moving else np.zeros((0, 4), np.float32)
        return Motion(fraction, moving, boxes, mask, cell, self.options.min_area)


def _regions(mask: np.ndarray, cell: tuple[float, float]) -> np.ndarray:
    """Bounding boxes (frame pixels) of the connected moving regions (dilated by one cell)."""
    m = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    sx, sy = cell
    out = [(x * sx, y * sy, (x + w) * sx, (y + h) * sy) for x, y, w, h, _ in stats[1:n]]
    return np.array(out, np.float32).reshape(-1, 4)
