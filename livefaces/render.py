"""Drawing faces onto images: pure functions ``(image, faces) -> new image``.

Colours are RGB (images in livefaces are RGB). Nothing here shows a window or writes a file.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .types import Faces

BOX_COLOUR = (0, 220, 0)
TRACKED_COLOUR = (255, 190, 0)
#: left eye, right eye, nose, mouth left, mouth right
LANDMARK_COLOURS = ((255, 60, 60), (60, 60, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255))


def _scale(image: np.ndarray) -> float:
    """Line/text scale that stays readable from 320 px to 4K."""
    return max(1.0, min(image.shape[0], image.shape[1]) / 480.0)


def annotate(
    image: np.ndarray,
    faces: Faces,
    *,
    track_ids: Sequence[int] | np.ndarray | None = None,
    detected: bool = True,
    show_scores: bool = True,
) -> np.ndarray:
    """A copy of ``image`` (H, W, 3 uint8 RGB) with boxes, 5 landmarks, scores and track ids.

    ``detected=False`` draws the boxes in the "tracked" colour (faces carried between
    detections).
    """
    out = np.ascontiguousarray(image).copy()
    s = _scale(out)
    thick = max(1, int(round(2 * s)))
    colour = BOX_COLOUR if detected else TRACKED_COLOUR
    for i in range(len(faces)):
        x1, y1, x2, y2 = (int(round(float(v))) for v in faces.boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick, cv2.LINE_AA)
        for (px, py), c in zip(faces.landmarks[i], LANDMARK_COLOURS):
            cv2.circle(out, (int(round(float(px))), int(round(float(py)))), max(2, thick + 1), c, -1,
                       cv2.LINE_AA)
        parts = []
        if track_ids is not None and i < len(track_ids):
            parts.append(f"#{int(track_ids[i])}")
        if show_scores:
            parts.append(f"{float(faces.scores[i]):.2f}")
        if parts:
            _label(out, " ".join(parts), (x1, y1), colour, s)
    return out


def _label(image: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int],
           s: float) -> None:
    """Text on a filled background just above ``corner`` (below it at the top edge)."""
    font, fs, th = cv2.FONT_HERSHEY_SIMPLEX, 0.45 * s, max(1, int(round(s)))
    (tw, tht), base = cv2.getTextSize(text, font, fs, th)
    x, y = corner
    top = y - tht - base - 2 if y - tht - base - 2 >= 0 else y
    cv2.rectangle(image, (x, top), (x + tw + 4, top + tht + base + 2), colour, -1)
    cv2.putText(image, text, (x + 2, top + tht + 1), font, fs, (0, 0, 0), th, cv2.LINE_AA)
