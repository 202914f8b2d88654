"""One JPEG crop per face track: the best view of its first second.

A new track is watched for ``window`` seconds (default 1 s, stream time). Among the frames
where the detector saw the face at least ``min_size`` pixels tall and wide, the one with the
highest quality ``size × score × frontality`` is kept, and written when the window ends (or
the track ends earlier, or the sink closes). A track that never reaches ``min_size`` writes
nothing. Frontality (0-1) comes from the 5 landmarks: how evenly the nose splits the eyes and
the mouth corners horizontally (1: a face looking at the camera; near 0: a profile).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..imageio import write_image
from ..types import FrameResult
from . import BaseSink

#: Default smallest face (shorter side of the box, pixels) worth a snapshot.
MIN_SNAPSHOT_SIZE = 40
#: Default time (seconds of stream time) a new track is watched for its best view.
SNAPSHOT_WINDOW = 1.0


def short_name(source: str) -> str:
    """A readable file-name part for a source: a file's or folder's name without its suffix
    (``clips/short_hamilton_clip.mp4`` -> ``short_hamilton_clip``), a stream's host and last
    path part (``rtsp://***@cam1:554/live/main`` -> ``cam1_main``; credentials never appear),
    ``webcam0`` for a webcam number, ``synthetic_640x360_25``; a pipeline's ``#2`` (a second
    source of one name) becomes ``_2``. Letters, digits, ``.``, ``_`` and ``-`` only, at most
    40 characters."""
    name, tag = source, ""
    head, sep, tail = source.rpartition("#")
    if sep and tail.isdigit():
        name, tag = head, f"_{tail}"
    if "://" in name:
        rest = name.split("://", 1)[1].split("?", 1)[0].split("#", 1)[0]
        host, _, path = rest.partition("/")
        host = host.rsplit("@", 1)[-1]  # no user:password
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host  # no port
        last = PurePosixPath(path).stem if path.strip("/") else ""
        name = f"{host}_{last}" if last else host
    elif name.isdigit():
        name = f"webcam{name}"
    else:
        p = PurePosixPath(name.rstrip("/"))
        name = p.stem if p.suffix and ":" not in p.name else p.name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:40].strip("._-")
    return (slug or "source") + tag


def crop_with_margin(image: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    """``image[y1:y2, x1:x2]`` of ``box`` (xyxy px) grown by ``margin`` × its size per side,
    clipped to the image."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    a, b = max(0, int(x1 - mx)), max(0, int(y1 - my))
    c, d = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    return image[b:d, a:c]


def frontality(landmarks: np.ndarray) -> float:
    """0-1: how frontal a face is, from its 5 landmarks ``(5, 2)`` (x, y pixels, order
    left eye, right eye, nose, mouth left, mouth right).

    The mean of two symmetries about the nose: ``min(a, b) / max(a, b)`` of the nose's
    horizontal distances to the two eyes, and to the two mouth corners (in the eye line's
    frame, so a tilted head is not penalised). A nose outside the eyes or mouth gives 0.
    """
    p = np.asarray(landmarks, np.float64).reshape(5, 2)
    axis = p[1] - p[0]
    norm = float(np.hypot(*axis))
    if norm < 1e-6:
        return 0.0
    u = axis / norm  # along the eye line
    x = (p - p[2]) @ u  # signed distance from the nose along it

    def sym(left: float, right: float) -> float:
        a, b = -left, right
        if a <= 0 or b <= 0:
            return 0.0
        return min(a, b) / max(a, b)

    return 0.5 * (sym(x[0], x[1]) + sym(x[3], x[4]))


def view_quality(box: np.ndarray, score: float, landmarks: np.ndarray) -> float:
    """``size × score × frontality``; size is the box's shorter side in pixels."""
    size = float(min(box[2] - box[0], box[3] - box[1]))
    return size * float(score) * frontality(landmarks)


@dataclass
class _Pending:
    """A track in its first ``window`` seconds: when it started and its best view so far."""

    start: float
    best: float = -1.0
    crop: np.ndarray | None = None
    frame_index: int = 0


class SnapshotSink(BaseSink):
    """Writes ``DIR/<source>_track<ID>_frame<N>.jpg``: one crop per track, the best view of
    its first ``window`` seconds (see the module docs); ``N`` is the frame it comes from.
    ``<source>`` is the source's :func:`short_name` (``short_hamilton_clip_track000002_
    frame00000031.jpg``); two sources of one short name get ``-2``, ``-3``... (the first
    source keeps it), and a file already there (an earlier run) is never replaced: the new
    one gets ``-2``, ``-3``... before ``.jpg``.

    Args:
        folder: where the JPEGs go (created).
        margin: added around the box on each side, as a fraction of its size.
        min_size: smallest face, shorter side of the box in pixels, worth a snapshot.
        window: seconds of stream time (frame ``pts``; capture time if unknown) to watch a
            new track before writing its best view.
        min_score: only views the detector scored at least this high are considered (the
            CLI passes ``--event-min-score``): a track without one writes nothing.

    Files are written atomically. ``written`` lists the paths (the newest 5000-10000).
    """

    def __init__(self, folder: str | os.PathLike[str], margin: float = 0.25, *,
                 min_size: float = MIN_SNAPSHOT_SIZE, window: float = SNAPSHOT_WINDOW,
                 min_score: float = 0.0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.margin = margin
        self.min_size = float(min_size)
        self.window = float(window)
        self.min_score = float(min_score)
        self._newest: dict[str, int] = {}  # track ids only grow: the newest id per source
        self._short: dict[str, str] = {}  # source -> its short name, unique in this sink
        self._pending: dict[tuple[str, int], _Pending] = {}
        self.written: list[Path] = []
        self._recent: set[Path] = set()  # written by this sink (the file may be gone since)
        self.result_policy = "wait"
        self.result_queue = 16

    def on_result(self, result: FrameResult) -> None:
        src = result.frame.source
        ids = result.track_ids.tolist()
        if len(ids) != len(result.faces):
            return  # no tracker: no track to take a snapshot of
        t = result.frame.pts if result.frame.pts is not None else result.frame.captured
        mask = result.face_detected
        # tracks of this source that ended (not carried on this frame): their best so far
        for key in [k for k in self._pending if k[0] == src and k[1] not in ids]:
            self._finish(key)
        for i, tid in enumerate(ids):
            key = (src, tid)
            if tid > self._newest.get(src, 0):
                self._newest[src] = tid
                self._pending[key] = _Pending(start=t)
            pend = self._pending.get(key)
            if pend is None:  # done already
                continue
            elapsed = t - pend.start
            if 0 <= elapsed <= self.window and mask[i]:
                self._consider(pend, result, i)
            if not 0 <= elapsed < self.window:  # (negative: the stream's clock restarted)
                self._finish(key)

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "face.lost":
            key = (str(event.get("source")), int(event.get("track_id", -1)))
            if key in self._pending:
                self._finish(key)

    def close(self) -> None:
        for key in list(self._pending):
            self._finish(key)

    def _consider(self, pend: _Pending, result: FrameResult, i: int) -> None:
        faces = result.faces
        box = faces.boxes[i]
        if min(box[2] - box[0], box[3] - box[1]) < self.min_size or faces.scores[i] < self.min_score:
            return
        q = view_quality(box, float(faces.scores[i]), faces.landmarks[i])
        if q <= pend.best:
            return
        crop = crop_with_margin(result.frame.image, box, self.margin)
        if crop.size == 0:
            return
        pend.best, pend.crop, pend.frame_index = q, crop.copy(), result.frame.index

    def _finish(self, key: tuple[str, int]) -> None:
        pend = self._pending.pop(key)
        if pend.crop is None:
            return
        src, tid = key
        stem = f"{self._short_of(src)}_track{tid:06d}_frame{pend.frame_index:08d}"
        path, n = self.folder / f"{stem}.jpg", 2
        while path.exists() or path in self._recent:  # never over an earlier snapshot
            path, n = self.folder / f"{stem}-{n}.jpg", n + 1
        write_image(path, pend.crop)
        self._recent.add(path)
        self.written.append(path)
        if len(self.written) > 10000:
            del self.written[:5000]
            self._recent = set(self.written)

    def _short_of(self, source: str) -> str:
        short = self._short.get(source)
        if short is None:
            base, n = short_name(source), 2
            taken = set(self._short.values())
            short = base
            while short in taken:
                short, n = f"{base}-{n}", n + 1
            self._short[source] = short
        return short
