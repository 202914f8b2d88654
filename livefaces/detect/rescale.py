"""Detecting on a resized image: the one place frames are shrunk for the detector and faces are
mapped back to the original frame's pixels (used by the live pipeline and by extract).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..types import Faces

if TYPE_CHECKING:
    from .engine import Engine

#: scales this close to 1 leave the image as it is
_SAME = 1e-3


def resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    """``rgb`` ``(H, W, 3)`` scaled by ``scale`` to ``(round(H·s), round(W·s))`` (at least 1 px):
    area averaging when shrinking, bilinear when enlarging; the array itself when ``scale`` ≈ 1."""
    if abs(scale - 1.0) < _SAME:
        return rgb
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def to_original(faces: Faces, resized_shape: Sequence[int], original_shape: Sequence[int]) -> Faces:
    """``faces`` found on an image of ``resized_shape`` ``(h, w, ...)``, in pixels of
    ``original_shape``; each axis by its own exact ratio (sizes were rounded)."""
    if tuple(resized_shape[:2]) == tuple(original_shape[:2]):
        return faces
    scale = np.array([original_shape[1] / resized_shape[1], original_shape[0] / resized_shape[0]],
                     np.float32)
    return Faces((faces.boxes.reshape(-1, 2, 2) * scale).reshape(-1, 4).astype(np.float32),
                 faces.scores, (faces.landmarks * scale).astype(np.float32))


def detect_scaled(engine: Engine, images: Sequence[np.ndarray], scales: Sequence[float]) -> list[Faces]:
    """Faces in each of ``images`` (RGB uint8), each detected at its own ``scales[i]`` (≤ 1 finds
    only faces ≥ min_face_size / scale, faster) in one batched call, in original pixels."""
    small = [resize(img, s) for img, s in zip(images, scales, strict=True)]
    found = engine.detect_batch(small) if small else []
    return [to_original(f, s.shape, img.shape) for f, s, img in zip(found, small, images, strict=True)]


def detect_regions(engine: Engine, regions: Sequence[tuple[np.ndarray, Any, float]]
                   ) -> list[Faces]:
    """The cascade inside each region ``(rgb, (x1, y1, x2, y2), min_face)`` of a frame (the
    neighbourhood of a tracked face), faces in pixels of the frame.

    Engines with their own ``detect_regions`` (the ONNX :class:`~livefaces.detect.Detector`:
    a pyramid that starts at ``min_face``, at full resolution) do it in one call; for the
    others the region is cut out, shrunk so that ``min_face`` becomes the engine's own
    ``min_face_size`` (never enlarged) and detected in one batch."""
    native = getattr(engine, "detect_regions", None)
    if native is not None:
        return list(native(regions))
    base = float(getattr(engine, "min_face_size", 20.0))
    crops, scales, offsets = [], [], []
    for rgb, box, min_face in regions:
        h, w = rgb.shape[:2]
        x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
        x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
        if x2 - x1 < 12 or y2 - y1 < 12:
            x1, y1, x2, y2 = 0, 0, 1, 1
        crops.append(np.ascontiguousarray(rgb[y1:y2, x1:x2]))
        scales.append(min(1.0, base / max(float(min_face), 1.0)))
        offsets.append(np.array([x1, y1], np.float32))
    found = detect_scaled(engine, crops, scales)
    return [f if len(f) == 0 else Faces(f.boxes + np.tile(off, 2), f.scores, f.landmarks + off)
            for f, off in zip(found, offsets, strict=True)]
