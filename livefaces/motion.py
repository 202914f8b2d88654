"""Motion: a cheap per-frame measure of change, and where it is (camera monitors' classic).

Each frame is reduced to a small blurred gray image (green channel, every 4th pixel, area
averaged to about 160 px wide, Gaussian blur); it is compared with the previous frame's AND
with a background model, a running average of the reduced frames (``background_alpha`` per
frame, as Frigate's ``frame_alpha``): a seated person or a slow pan changes too little
between two frames at 25 fps, but drifts away from the background within a few frames.
Cells whose difference exceeds ``pixel_threshold`` (0-255) in either comparison are
"moving"; the frame has motion when more than ``min_area`` of the cells move. The moving
cells' bounding boxes, in pixels of the frame, say where new faces can appear.

A **scene cut** (an edit in a film or a broadcast, a camera switched) is a frame that
differs from the previous one almost everywhere (more than ``cut_area`` of the cells) AND
whose brightness histogram changed (total variation distance over 32 bins above
``cut_histogram``): a pan or a crowd moving changes many cells but hardly the histogram.
Measured on the real clips of ../shared/media (short_hamilton_clip, Face_Mask_Video,
Norton_A): cuts 0.48-0.95 of the cells and 0.14-0.82 histogram distance; the busiest frames
that are not cuts 0.44 and 0.06. After a cut the background starts again from that frame.

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
    background_alpha: float = 0.1
    """weight of each new frame in the background model (running average)"""
    cut_area: float = 0.35
    """a scene cut changes more than this fraction of the cells from one frame to the next ..."""
    cut_histogram: float = 0.1
    """... and its brightness histogram by more than this (total variation distance, 0-1)"""


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
        cut: the frame is a scene cut (it shows another scene than the previous frame).
    """

    fraction: float
    moving: bool
    boxes: np.ndarray
    mask: np.ndarray
    cell: tuple[float, float]
    min_area: float = 0.0
    cut: bool = False

    def outside(self, boxes: np.ndarray, margin: float = 0.5, below: float = 3.0) -> bool:
        """Is there motion outside ``boxes`` (xyxy, frame pixels), each widened by ``margin``
        of its size on every side, and outside the body under each (a face width either side,
        ``below`` face heights down)? Faces that move inside their own tracked region do not
        count (the tracker follows them), nor does the person under a tracked face, whose
        shoulders and hands move as they talk: new faces appear elsewhere."""
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
            # the body: shoulders a face width either side, ``below`` face heights down
            a = int(max(0, (x1 - w) // sx))
            c = int(np.ceil((x2 + w) / sx))
            mask[int(max(0, y2 // sy)):int(np.ceil((y2 + below * h) / sy)), a:c] = False
        return bool(mask.mean() > self.min_area)


class MotionDetector:
    """Motion of ONE source against its previous frame and its background (not thread-safe;
    the detect loop owns it)."""

    def __init__(self, options: MotionOptions = MotionOptions()) -> None:
        self.options = options
        self._prev: np.ndarray | None = None
        self._hist: np.ndarray | None = None
        self._background: np.ndarray | None = None

    def _reduce(self, image: np.ndarray) -> np.ndarray:
        small = np.ascontiguousarray(image[::STRIDE, ::STRIDE, 1] if image.ndim == 3
                                     else image[::STRIDE, ::STRIDE])
        h, w = small.shape[:2]
        if w > WIDTH:
            small = cv2.resize(small, (WIDTH, max(1, round(h * WIDTH / w))),
                               interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (5, 5), 0)

    def measure(self, image: np.ndarray) -> Motion:
        """The motion of ``image`` (H, W, 3) against the previous image given and the
        background; the first image (and one of a new size) counts as all motion and a cut."""
        o = self.options
        small = self._reduce(image)
        h, w = image.shape[:2]
        cell = (w / small.shape[1], h / small.shape[0])
        hist = np.bincount((small >> 3).ravel(), minlength=32).astype(np.float32) / small.size
        prev, self._prev = self._prev, small
        prev_hist, self._hist = self._hist, hist
        if prev is None or prev.shape != small.shape:
            self._background = small.astype(np.float32)
            mask = np.ones(small.shape, bool)
            return Motion(1.0, True, np.array([[0, 0, w, h]], np.float32), mask, cell,
                          o.min_area, cut=True)
        step = cv2.absdiff(small, prev) > o.pixel_threshold
        assert self._background is not None and prev_hist is not None
        cut = (float(step.mean()) > o.cut_area
               and 0.5 * float(np.abs(hist - prev_hist).sum()) > o.cut_histogram)
        if cut:  # another scene: the background starts again from it
            self._background = small.astype(np.float32)
            mask = np.ones(small.shape, bool)
        else:
            bg = self._background
            mask = step | (np.abs(small - bg) > o.pixel_threshold)
            cv2.accumulateWeighted(small, bg, o.background_alpha)
        fraction = float(mask.mean())
        moving = fraction > o.min_area
        boxes = _regions(mask, cell) if moving else np.zeros((0, 4), np.float32)
        return Motion(fraction, moving, boxes, mask, cell, o.min_area, cut=cut)


def _regions(mask: np.ndarray, cell: tuple[float, float]) -> np.ndarray:
    """Bounding boxes (frame pixels) of the connected moving regions (dilated by one cell)."""
    m = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    sx, sy = cell
    out = [(x * sx, y * sy, (x + w) * sx, (y + h) * sy) for x, y, w, h, _ in stats[1:n]]
    return np.array(out, np.float32).reshape(-1, 4)
