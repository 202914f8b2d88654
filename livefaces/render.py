"""Drawing faces onto images: pure functions ``(image, faces) -> new image``.

Colours are RGB (images in livefaces are RGB). Nothing here shows a window or writes a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .types import Faces, FrameResult, PipelineStats, Status

BOX_COLOUR = (0, 220, 0)
REFINED_COLOUR = (0, 200, 255)
TRACKED_COLOUR = (255, 190, 0)
#: box colour per :attr:`~livefaces.types.FrameResult.how`
HOW_COLOURS = {"detected": BOX_COLOUR, "refined": REFINED_COLOUR, "tracked": TRACKED_COLOUR}
#: the letter after a track id: how the face was obtained on this frame
HOW_MARKS = {"detected": "D", "refined": "R", "tracked": "T"}
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
    names: Sequence[str | None] | None = None,
) -> np.ndarray:
    """A copy of ``image`` with the faces drawn: boxes, the 5 landmarks, scores, track ids.

    Args:
        image: ``(H, W, 3)`` uint8 **RGB** (the colours below are RGB; for an OpenCV BGR
            frame pass ``frame[..., ::-1]`` and flip the result back). Not modified.
        faces: :class:`~livefaces.Faces` in pixels of ``image`` (boxes ``x1, y1, x2, y2``,
            landmarks ``(N, 5, 2)`` ``(x, y)``, origin top-left), e.g. ``detector.detect(image)``.
            Faces found on a resized copy must be scaled back first (``faces.scaled(1 / f)``).
        track_ids: ``(N,)`` ints drawn as ``#id`` before the score (``None``: none drawn).
        detected: ``True`` draws boxes green (:data:`BOX_COLOUR`, found on this image);
            ``False`` amber (:data:`TRACKED_COLOUR`, faces carried between detections).
        show_scores: draw each face's confidence (two decimals).
        names: ``(N,)`` the person each face is (``livefaces.identify``), drawn first in the
            label; ``None`` entries (unknown, or not identified) draw no name.

    Returns:
        A new ``(H, W, 3)`` uint8 RGB array. Landmark dots use :data:`LANDMARK_COLOURS`; line
        width and text size grow with the image (readable from 320 px to 4K).

    Example::

        faces = det.detect(rgb)
        cv2.imwrite("out.jpg", annotate(rgb, faces)[..., ::-1])   # OpenCV writes BGR
    """
    out = np.ascontiguousarray(image).copy()
    _draw_faces(out, faces, track_ids, np.full(len(faces), "detected" if detected else "tracked"),
                show_scores, marks=False, names=names)
    return out


def _draw_faces(out: np.ndarray, faces: Faces, track_ids: Sequence[int] | np.ndarray | None,
                how: np.ndarray, show_scores: bool, marks: bool = True,
                names: Sequence[str | None] | None = None) -> None:
    """Draw in place; per-face colour by how it was obtained (:data:`HOW_COLOURS`): detected
    (green), refined (light blue) or carried by the tracker (amber); with ``marks``, the
    letter D/R/T follows the track id (colour alone says little to colour-blind eyes). A
    carried face is drawn faded: a thin box and no landmarks (the networks did not see it on
    this frame; the pipeline shows such boxes for a few frames at most)."""
    s = _scale(out)
    full = max(1, int(round(2 * s)))
    for i in range(len(faces)):
        colour = HOW_COLOURS.get(str(how[i]), TRACKED_COLOUR)
        carried = str(how[i]) not in ("detected", "refined")
        thick = 1 if carried else full
        x1, y1, x2, y2 = (int(round(float(v))) for v in faces.boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick, cv2.LINE_AA)
        for (px, py), c in zip([] if carried else faces.landmarks[i], LANDMARK_COLOURS):
            cv2.circle(out, (int(round(float(px))), int(round(float(py)))), max(2, thick + 1), c, -1,
                       cv2.LINE_AA)
        parts = []
        if names is not None and i < len(names) and names[i]:
            parts.append(str(names[i]))
        if track_ids is not None and i < len(track_ids):
            parts.append(f"#{int(track_ids[i])}" + (HOW_MARKS.get(str(how[i]), "") if marks else ""))
        if show_scores:
            parts.append(f"{float(faces.scores[i]):.2f}")
        if parts:
            _label(out, " ".join(parts), (x1, y1), colour, s)


@dataclass(frozen=True)
class HudInfo:
    """Numbers for the heads-up display (a bar along the bottom edge). ``None`` fields are
    left out.

    Attributes:
        capture_fps: frames per second arriving from the source.
        detect_fps: detector runs per second on this source.
        dropped: frames lost since start (buffers full).
        latency_ms: capture → result latency of recent frames, milliseconds.
        status: source status (connected, reconnecting, ...).
        source: source name (already redacted).
    """

    capture_fps: float | None = None
    detect_fps: float | None = None
    dropped: int | None = None
    latency_ms: float | None = None
    status: str | None = None
    source: str | None = None

    @classmethod
    def of(cls, stats: PipelineStats | None, source: str) -> HudInfo | None:
        """The HUD of ``source`` from a stats snapshot (None: no snapshot or no such source).
        Files not paced in real time have no camera-like latency, only a queue: left off."""
        if stats is None:
            return None
        try:
            s = stats.source(source)
        except KeyError:
            return None
        return cls(s.capture_fps, s.detect_fps, s.dropped, s.latency_ms_p50 if s.live else None,
                   s.status, s.name)


#: how much of the picture shows through the HUD's bar (0: black, 1: no bar)
HUD_SHOW_THROUGH = 0.45


def _draw_hud(out: np.ndarray, hud: HudInfo) -> None:
    """The HUD as one line (two or more on a narrow frame) in a bar along the bottom edge,
    where faces are rarest (heads are in the upper part of most shots), darkened so the
    picture still shows through."""
    parts = []
    if hud.status and hud.status != Status.CONNECTED:
        parts.append(hud.status.upper())
    if hud.capture_fps is not None:
        parts.append(f"capture {hud.capture_fps:.1f} fps")
    if hud.detect_fps is not None:
        parts.append(f"detect {hud.detect_fps:.1f} fps")
    if hud.dropped is not None:
        parts.append(f"dropped {hud.dropped}")
    if hud.latency_ms is not None:
        parts.append(f"latency {hud.latency_ms:.0f} ms")
    if hud.source:
        parts.append(hud.source if len(hud.source) <= 48 else "..." + hud.source[-45:])
    if not parts:
        return
    s = _scale(out)
    font, fs, th = cv2.FONT_HERSHEY_SIMPLEX, 0.45 * s, max(1, int(round(s)))
    pad, gap = int(5 * s), "   "
    room = out.shape[1] - 2 * pad
    lines: list[str] = []
    for part in parts:  # as many parts on a line as fit the frame's width
        joined = f"{lines[-1]}{gap}{part}" if lines else part
        if lines and cv2.getTextSize(joined, font, fs, th)[0][0] <= room:
            lines[-1] = joined
        else:
            lines.append(part)
    (_, th_px), base = cv2.getTextSize("Ag", font, fs, th)
    lh = th_px + base + int(4 * s)
    h = min(out.shape[0], lh * len(lines) + int(4 * s))
    bar = out[out.shape[0] - h:]
    bar[:] = (bar.astype(np.float32) * HUD_SHOW_THROUGH).astype(np.uint8)
    top = out.shape[0] - h
    for i, t in enumerate(lines):
        cv2.putText(out, t, (pad, top + lh * (i + 1) - base), font, fs, (255, 255, 255), th,
                    cv2.LINE_AA)


def render_result(result: FrameResult, hud: HudInfo | None = None, *,
                  show_scores: bool = True, names: Sequence[str | None] | None = None) -> np.ndarray:
    """The frame of ``result`` with its faces (green: detected on this frame, light blue:
    refined in the face's region, amber: carried by the tracker; the track id is followed by
    D, R or T), scores, the person's name where ``names`` (one per face, ``None``: none
    drawn) gives one and, if given, the HUD. Returns a new RGB image."""
    out = np.ascontiguousarray(result.frame.image).copy()
    ids = result.track_ids if len(result.track_ids) == len(result.faces) else None
    _draw_faces(out, result.faces, ids, result.how, show_scores, names=names)
    if hud is not None:
        _draw_hud(out, hud)
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
