"""A JPEG crop of each new face, written when its track appears."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..imageio import write_image
from ..types import FrameResult
from . import BaseSink


def crop_with_margin(image: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    """``image[y1:y2, x1:x2]`` of ``box`` (xyxy px) grown by ``margin`` × its size per side,
    clipped to the image."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    a, b = max(0, int(x1 - mx)), max(0, int(y1 - my))
    c, d = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    return image[b:d, a:c]


class SnapshotSink(BaseSink):
    """Writes ``DIR/<source>_track<ID>_frame<N>.jpg`` for each new track id (first frame
    where the detector saw it). Files are written atomically. ``written`` lists the paths."""

    def __init__(self, folder: str | os.PathLike[str], margin: float = 0.25) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.margin = margin
        self._newest: dict[str, int] = {}  # track ids only grow: the newest id per source
        self.written: list[Path] = []
        self.result_policy = "wait"
        self.result_queue = 16

    def on_result(self, result: FrameResult) -> None:
        mask = result.detected_mask()
        src = result.frame.source
        for i, tid in enumerate(result.track_ids.tolist()):
            if tid <= self._newest.get(src, 0) or not mask[i]:
                continue
            self._newest[src] = tid
            crop = crop_with_margin(result.frame.image, result.faces.boxes[i], self.margin)
            if crop.size == 0:
                continue
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", src).strip("_")[-60:] or "source"
            path = self.folder / f"{slug}_track{tid:06d}_frame{result.frame.index:08d}.jpg"
            write_image(path, crop)
            self.written.append(path)
            if len(self.written) > 10000:
                del self.written[:5000]
