"""Detecting on a resized image: the one place frames are shrunk for the detector and faces are
mapped back to the original frame's pixels (used by the live pipeline and by extract).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..geometry import iou_matrix
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


def refine(engine: Engine, items: Sequence[tuple[np.ndarray, Any]]) -> list[Faces]:
    """Check each predicted face box ``(rgb, (x1, y1, x2, y2))`` with the networks: the face
    found there (0 or 1 per item), in pixels of the frame.

    Engines with their own ``refine`` (the ONNX :class:`~livefaces.detect.Detector`: R-Net and
    O-Net on candidate squares around the box) do it in one call. For the others, the box's
    neighbourhood (three times its size) is cut out, shrunk so that half the face's size
    becomes the engine's ``min_face_size``, and detected in one batch; the face overlapping
    the box most is kept."""
    native = getattr(engine, "refine", None)
    if native is not None:
        return list(native(items))
    base = float(getattr(engine, "min_face_size", 20.0))
    crops, scales, offsets, boxes = [], [], [], []
    for rgb, box in items:
        h, w = rgb.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        size = max(x2 - x1, y2 - y1, 12.0)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        a, b = max(0, int(cx - 1.5 * size)), max(0, int(cy - 1.5 * size))
        c, d = min(w, int(np.ceil(cx + 1.5 * size))), min(h, int(np.ceil(cy + 1.5 * size)))
        if c - a < 12 or d - b < 12:
            a, b, c, d = 0, 0, 1, 1
        crops.append(np.ascontiguousarray(rgb[b:d, a:c]))
        scales.append(min(1.0, base / (0.5 * size)))
        offsets.append(np.array([a, b], np.float32))
        boxes.append(np.array([x1, y1, x2, y2], np.float32))
    found = detect_scaled(engine, crops, scales)
    out = []
    for f, off, box in zip(found, offsets, boxes, strict=True):
        if len(f) == 0:
            out.append(f)
            continue
        fb = f.boxes + np.tile(off, 2)
        i = int(np.argmax(iou_matrix(box[None], fb)[0]))
        out.append(Faces(fb[i:i + 1], f.scores[i:i + 1], f.landmarks[i:i + 1] + off))
    return out
