"""Blurring faces for privacy: pure functions ``(image, boxes) -> new image``.

Used for ``--blur-unknown`` (``watch``/``preview`` recordings and window, ``serve``'s live
view with ``people.blur_unknown``): faces without a recognised name are pixelated, then
smoothed, over their box plus a margin, so that neither the face nor its outline can be
read back. Nothing here knows about identification: callers choose the boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .types import FrameResult

#: the box is grown by this share of its size on every side before blurring (hair, chin)
MARGIN = 0.25
#: pixel blocks across the blurred region (coarse: a face is not recognisable at 8)
BLOCKS = 8


def blur_boxes(image: np.ndarray, boxes: np.ndarray, *, margin: float = MARGIN,
               blocks: int = BLOCKS) -> np.ndarray:
    """A copy of ``image`` (``(H, W, 3)`` uint8) with each box (``(N, 4)`` xyxy pixels)
    pixelated into ``blocks`` squares across and smoothed; the original is not modified."""
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    for x1, y1, x2, y2 in np.asarray(boxes, np.float32).reshape(-1, 4):
        mx, my = margin * (x2 - x1), margin * (y2 - y1)
        a, b = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
        c, d = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
        if c - a < 2 or d - b < 2:
            continue
        region = out[b:d, a:c]
        n = max(1, blocks)
        small = cv2.resize(region, (n, max(1, round(n * (d - b) / (c - a)))),
                           interpolation=cv2.INTER_AREA)
        big = cv2.resize(small, (c - a, d - b), interpolation=cv2.INTER_NEAREST)
        k = max(3, (min(c - a, d - b) // n) | 1)
        out[b:d, a:c] = cv2.GaussianBlur(big, (k, k), 0)
    return out


def unknown(result: FrameResult) -> np.ndarray:
    """Boolean mask of ``result``'s faces without a recognised name (every face when no
    identifier ran: nobody is known)."""
    n = len(result.faces)
    if len(result.identities) != n:
        return np.ones(n, bool)
    return np.array([i.name is None for i in result.identities], bool)


def blur_unknown(result: FrameResult) -> FrameResult:
    """``result`` with a new frame image in which the unknown faces are blurred (the same
    ``result`` when there is none), and so are the places of tracked faces that are not shown
    on this frame (:attr:`FrameResult.unshown`: the networks did not confirm them here, but a
    face may well be there: privacy must not depend on what is drawn)."""
    from dataclasses import replace

    mask = unknown(result)
    boxes = np.concatenate([result.faces.boxes[mask], result.unshown.reshape(-1, 4)])
    if not len(boxes):
        return result
    img = blur_boxes(result.frame.image, boxes)
    return replace(result, frame=replace(result.frame, image=img))


def names_of(result: FrameResult) -> Sequence[str | None] | None:
    """The names to draw on ``result``'s faces (None: no identifier ran)."""
    if len(result.identities) != len(result.faces) or not len(result.faces):
        return None
    return [i.name for i in result.identities]


__all__ = ["BLOCKS", "MARGIN", "blur_boxes", "blur_unknown", "names_of", "unknown"]
