"""Tracking: stable ids for faces across frames, and boxes carried between detections.

A :class:`Tracker` follows the faces of ONE source. On frames that went through the
detector call :meth:`Tracker.update`; on the others :meth:`Tracker.predict`. Both return a
:class:`TrackUpdate` with a box for every live track, so every output frame has faces.

* Matching: greedy by IoU between each track's predicted box and the detections (a centre
  distance fallback catches fast motion between sparse detections).
* Motion: a constant-velocity model per track (box corners, px/s) estimated from successive
  detections and smoothed exponentially; predictions never extrapolate more than
  ``max_extrapolation`` seconds, so carried boxes move with the face instead of freezing,
  and never fly away.
* Smoothing: a detected box is blended with the prediction (``smoothing``), which removes
  the frame-to-frame jitter of the detector without lagging behind real motion.
* Lifetime: a new track is reported ("appeared") once confirmed: ``min_hits`` detections, or
  one detection scoring ``confirm_score`` or more; a track unseen by the detector for
  longer than its *patience* is lost (unconfirmed tracks vanish silently). The patience is
  ``max_age`` seconds, or ``max_age_detections`` detection intervals when detection runs
  slower than planned (measured from the spacing of :meth:`Tracker.update` calls, capped at
  ``max_age_limit``): a face is lost for having been missed by the detector, never for the
  detector being slow. While no detection runs at all, carried tracks are kept (up to the
  cap).

Times are seconds on any monotonic clock (the pipeline passes stream pts or capture time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import iou_matrix
from .types import Faces


@dataclass(frozen=True)
class TrackerOptions:
    iou_threshold: float = 0.3
    max_age: float = 1.0
    """seconds a track survives without a detection (at least; see the two below)"""
    max_age_detections: float = 3.0
    """...and at least this many (measured) detection intervals, so a detector running at
    0.5 Hz does not lose a seated face between two detections"""
    max_age_limit: float = 10.0
    """cap, seconds, on the patience scaled by the detection interval"""
    smoothing: float = 1.0
    """weight of the new detection in the blended box (1.0: raw detections)"""
    velocity_smoothing: float = 0.5
    max_extrapolation: float = 0.5
    min_hits: int = 2
    """detections needed before a new track is reported (a one-frame false positive is not)"""
    confirm_score: float = 0.95
    """...unless its first detection scores at least this (reported at once)"""
    refine_misses: int = 3
    """a track whose refinement (:meth:`Tracker.refine`) fails this many times in a row ends
    at once: the face left or turned away, so no box is carried where no face is"""
    max_carried: float | None = None
    """show a track's box at most this many seconds after the networks last saw it, and not
    at all once they looked for it and did not find it (None: as long as the track lives).
    The track itself lives on (its id is kept if the face is found again); only what is
    reported is what was verified, give or take a few unchecked frames. The live pipeline
    sets it when refinement is on"""
    detect_misses: int = 2
    """with refinement on (``max_carried`` set), a track that this many full detections in a
    row did not find ends (reason ``not_found``)"""
    max_size_change: float = 2.0
    """a face matched to a track may be at most this many times larger or smaller than the
    track's box: anything else is another face (after a cut, say), not this one"""


@dataclass
class Track:
    """One followed face; arrays in input pixels."""

    id: int
    box: np.ndarray  # (4,) float32 xyxy, current (smoothed / predicted) box
    landmarks: np.ndarray  # (5, 2) float32
    score: float
    velocity: np.ndarray  # (4,) float32 px/s of the box corners
    t: float  # time of the last detection that matched
    first_seen: float
    hits: int = 1
    detected: bool = True  # box came from the networks on the current frame
    confirmed: bool = False
    how: str = "detected"
    """how the current box was obtained: ``detected`` (full cascade), ``refined`` (the
    cascade in the track's region) or ``tracked`` (carried by the motion model)"""
    misses: int = 0
    """refinements failed in a row"""
    unseen: bool = False
    """the networks looked for this face on the last frame they checked (refinement or full
    detection) and did not find it"""
    announced: bool = False
    """reported as appeared (shown for the first time); only announced tracks are reported lost"""
    doubted: int = 0
    """full detections in a row that did not find this face (refinement alone may keep a
    face the full detector does not report: it is not shown until a full detection finds it
    again, and ends after ``detect_misses``)"""
    end_reason: str | None = None
    """why a lost track ended: ``not_found`` (its refinements failed), else a timeout"""
    anchor: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    """(4,) the smoothed box at time ``t`` (the origin of predictions)"""

    def __post_init__(self) -> None:
        if not self.anchor.any():
            self.anchor = self.box.copy()


@dataclass
class TrackUpdate:
    """Result of one tracker step.

    Attributes:
        faces: every live track's box/score/landmarks on this frame.
        ids: ``(N,)`` int64 track ids, parallel to ``faces``.
        detected: ``(N,)`` bool, True where the face was verified by the networks this frame
            (detected or refined).
        how: ``(N,)`` str: ``detected``, ``refined`` or ``tracked`` per face.
        appeared: ids of tracks shown for the first time on this frame.
        lost: tracks dropped on this frame (their last state).
        missed: ids of tracks whose refinement failed on this frame (the face was not found
            where it was expected: the pipeline looks for it with a full detection).
    """

    faces: Faces
    ids: np.ndarray
    detected: np.ndarray
    appeared: list[int] = field(default_factory=list)
    lost: list[Track] = field(default_factory=list)
    how: np.ndarray = field(default_factory=lambda: np.zeros((0,), "<U8"))
    missed: list[int] = field(default_factory=list)
    unshown: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    """(K, 4) boxes of live tracks left out of ``faces`` (not verified here; see ``max_carried``)"""


class Tracker:
    """Face tracker for one source (not thread-safe; the detect loop owns it)."""

    def __init__(self, options: TrackerOptions = TrackerOptions(), first_id: int = 1) -> None:
        self.options = options
        self.tracks: list[Track] = []
        self._next_id = first_id
        self._last_update: float | None = None
        self.detect_interval: float | None = None
        """seconds between detections (:meth:`update` calls), smoothed; None before two"""

    def _predicted(self, tr: Track, t: float) -> np.ndarray:
        dt = min(max(t - tr.t, 0.0), self.options.max_extrapolation)
        return (tr.anchor + tr.velocity * dt).astype(np.float32)

    def patience(self, t: float) -> float:
        """Seconds a track may go undetected at time ``t``: ``max_age``, or more when the
        detector runs less often (its measured interval, or the time since the last detection
        if that is longer already), times ``max_age_detections``, capped at ``max_age_limit``."""
        o = self.options
        interval = self.detect_interval or 0.0
        if self._last_update is not None:
            interval = max(interval, t - self._last_update)
        return max(o.max_age, min(o.max_age_limit, o.max_age_detections * interval))

    def _expire(self, t: float) -> list[Track]:
        keep, lost = [], []
        patience = self.patience(t)
        for tr in self.tracks:
            if t - tr.t <= patience:
                keep.append(tr)
            else:
                lost.append(tr)  # reported only if it appeared (_result)
        self.tracks = keep
        return lost

    def predict(self, t: float) -> TrackUpdate:
        """Carry every track to time ``t`` without a detection."""
        lost = self._expire(t)
        for tr in self.tracks:
            self._carry(tr, t)
        return self._result(lost, t)

    def predictions(self, t: float) -> list[tuple[Track, np.ndarray]]:
        """Where each track's face is expected at time ``t``: ``(track, box xyxy)``, for a
        refinement by the networks (:meth:`refine`)."""
        return [(tr, self._predicted(tr, t)) for tr in self.tracks]

    def refine(self, found: list[tuple[Track, Faces]], t: float) -> TrackUpdate:
        """Apply refinements at time ``t``: for each ``(track, faces the networks found at its
        predicted box)`` the face that overlaps the prediction most verifies the track (like a detection, but
        without creating tracks); a track with none is carried and, after
        :attr:`TrackerOptions.refine_misses` failures in a row, ended. Tracks not listed are
        carried."""
        o = self.options
        lost: list[Track] = []
        ended: set[int] = set()
        alive = {tr.id for tr in self.tracks}
        found = [(tr, faces) for tr, faces in found if tr.id in alive]  # ended meanwhile
        listed = {tr.id for tr, _ in found}
        claimed: list[np.ndarray] = []  # boxes already verifying a track on this frame
        missed: list[int] = []
        for tr, faces in found:
            pred = self._predicted(tr, t)
            best = self._pick(pred, faces, claimed)
            if best < 0:
                missed.append(tr.id)
                tr.misses += 1
                tr.unseen = True
                if tr.misses >= o.refine_misses:
                    ended.add(tr.id)
                    tr.end_reason = "not_found"
                    lost.append(tr)  # reported only if it appeared (_result)
                    continue
                self._carry(tr, t)
                continue
            claimed.append(faces.boxes[best])
            self._match(tr, faces, best, pred, t)
            tr.how = "refined"
            if tr.hits >= o.min_hits:
                tr.confirmed = True
        self.tracks = [tr for tr in self.tracks if tr.id not in ended]
        for tr in self.tracks:
            if tr.id not in listed:
                self._carry(tr, t)
        lost += self._expire(t)
        upd = self._result(lost, t)
        upd.missed = missed
        return upd

    def _pick(self, pred: np.ndarray, faces: Faces, claimed: list[np.ndarray]) -> int:
        """Which of ``faces`` (found around a track predicted at ``pred``) is the track's face:
        the one overlapping the prediction most, else the nearest centre within half the
        face's size; never one whose size differs by more than ``max_size_change`` or that
        another track took already on this frame; -1 for none."""
        if not len(faces):
            return -1
        o = self.options
        size = float(max(pred[2] - pred[0], pred[3] - pred[1], 1.0))
        sizes = np.maximum(faces.boxes[:, 2] - faces.boxes[:, 0], faces.boxes[:, 3] - faces.boxes[:, 1])
        ok = (sizes <= o.max_size_change * size) & (sizes * o.max_size_change >= size)
        if claimed:
            ok &= iou_matrix(faces.boxes, np.array(claimed, np.float32)).max(axis=1) < 0.5
        if not ok.any():
            return -1
        iou = np.where(ok, iou_matrix(pred[None], faces.boxes)[0], -1.0)
        best = int(np.argmax(iou))
        if iou[best] >= o.iou_threshold:
            return best
        centres = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
        dist = np.where(ok, np.hypot(*(centres - (pred[:2] + pred[2:]) / 2).T), np.inf)
        best = int(np.argmin(dist))
        return best if dist[best] <= 0.5 * size else -1

    def _carry(self, tr: Track, t: float) -> None:
        new_box = self._predicted(tr, t)
        shift = ((new_box[:2] + new_box[2:]) - (tr.box[:2] + tr.box[2:])) / 2
        tr.landmarks = (tr.landmarks + shift).astype(np.float32)
        tr.box = new_box
        tr.detected = False
        tr.how = "tracked"

    def _match(self, tr: Track, faces: Faces, di: int, pred: np.ndarray, t: float) -> None:
        """Face ``di`` of ``faces`` verifies ``tr`` (predicted at ``pred``) at time ``t``."""
        o = self.options
        det = faces.boxes[di].astype(np.float32)
        dt = t - tr.t
        if dt > 1e-3:
            v = (det - tr.anchor) / dt
            a = o.velocity_smoothing
            tr.velocity = (a * v + (1 - a) * tr.velocity).astype(np.float32)
        box = (o.smoothing * det + (1 - o.smoothing) * pred).astype(np.float32)
        shift = ((box[:2] + box[2:]) - (det[:2] + det[2:])) / 2
        tr.box = box
        tr.anchor = box
        tr.landmarks = (faces.landmarks[di] + shift).astype(np.float32)
        tr.score = float(faces.scores[di])
        tr.t = t
        tr.hits += 1
        tr.misses = 0
        tr.unseen = False
        tr.detected = True

    def update(self, faces: Faces, t: float, blind_below: float = 0.0) -> TrackUpdate:
        """Match ``faces`` (detected on the frame at time ``t``) to the tracks.

        ``blind_below``: faces smaller than this (box side, px) are beyond what this
        detection could see reliably (it ran on a shrunk image): a track of such a face that
        it did not find is not doubted for it."""
        o = self.options
        preds = np.array([self._predicted(tr, t) for tr in self.tracks], np.float32).reshape(-1, 4)
        iou = iou_matrix(preds, faces.boxes)
        pairs: list[tuple[int, int]] = []
        used_t: set[int] = set()
        used_d: set[int] = set()
        if iou.size:
            for flat in np.argsort(-iou, axis=None):
                ti, di = divmod(int(flat), iou.shape[1])
                if iou[ti, di] < o.iou_threshold:
                    break
                if ti in used_t or di in used_d:
                    continue
                pairs.append((ti, di))
                used_t.add(ti)
                used_d.add(di)
            # fallback for fast motion: nearest centre within one box size
            for ti in range(len(preds)):
                if ti in used_t:
                    continue
                c = (preds[ti, :2] + preds[ti, 2:]) / 2
                size = max(preds[ti, 2] - preds[ti, 0], preds[ti, 3] - preds[ti, 1])
                best, best_d = -1, 1.0 * size
                for di in range(len(faces)):
                    if di in used_d:
                        continue
                    b = faces.boxes[di]
                    other = max(b[2] - b[0], b[3] - b[1])
                    if not size / o.max_size_change <= other <= size * o.max_size_change:
                        continue
                    dc = (faces.boxes[di, :2] + faces.boxes[di, 2:]) / 2
                    d = float(np.hypot(*(dc - c)))
                    if d < best_d:
                        best, best_d = di, d
                if best >= 0:
                    pairs.append((ti, best))
                    used_t.add(ti)
                    used_d.add(best)
        for tr in self.tracks:
            tr.detected = False
        for ti, di in pairs:
            tr = self.tracks[ti]
            self._match(tr, faces, di, preds[ti], t)
            tr.how = "detected"
            tr.doubted = 0
        lost: list[Track] = []
        if o.max_carried is not None:  # refinement on: the full detector has the last word
            matched = {ti for ti, _ in pairs}
            keep = []
            for ti, tr in enumerate(self.tracks):
                if ti not in matched and max(tr.box[2] - tr.box[0], tr.box[3] - tr.box[1]) >= blind_below:
                    tr.doubted += 1
                    if tr.doubted >= o.detect_misses:
                        tr.end_reason = "not_found"
                        lost.append(tr)  # reported only if it appeared (_result)
                        continue
                keep.append(tr)
            self.tracks = keep
        for tr in self.tracks:
            if tr.hits >= o.min_hits:
                tr.confirmed = True
        for di in range(len(faces)):
            if di in used_d:
                continue
            box = faces.boxes[di].astype(np.float32).copy()
            tr = Track(self._next_id, box, faces.landmarks[di].astype(np.float32).copy(),
                       float(faces.scores[di]), np.zeros(4, np.float32), t, t)
            self._next_id += 1
            self.tracks.append(tr)
            if tr.score >= o.confirm_score or o.min_hits <= 1:
                tr.confirmed = True
        lost += self._expire(t)
        if self._last_update is not None and 0 < t - self._last_update <= o.max_age_limit:
            gap = t - self._last_update
            self.detect_interval = gap if self.detect_interval is None else \
                0.7 * self.detect_interval + 0.3 * gap
        self._last_update = t
        for tr in self.tracks:
            if not tr.detected:  # coasting through a missed detection
                tr.unseen = True
                self._carry(tr, t)
        return self._result(lost, t)

    def clear(self) -> list[Track]:
        """Drop every track (the source went away); returns the announced ones as lost."""
        lost, self.tracks = [tr for tr in self.tracks if tr.announced], []
        self._last_update = None  # the next detection starts a new spacing
        return lost

    def _result(self, lost: list[Track], t: float) -> TrackUpdate:
        """The update of this step. A track *appears* when it is first shown (which may be
        after it was confirmed, if it was hidden then); of ``lost``, the tracks ended on this
        step, those never shown are left out: no event ever named them."""
        carried = self.options.max_carried
        shown = [tr for tr in self.tracks if tr.confirmed
                 and (carried is None or (not tr.doubted and (
                     tr.detected or (not tr.unseen and t - tr.t <= carried))))]
        appeared = [tr.id for tr in shown if not tr.announced]
        for tr in shown:
            tr.announced = True
        lost = [tr for tr in lost if tr.announced]
        if not shown:
            faces = Faces.empty()
        else:
            faces = Faces(np.stack([tr.box for tr in shown]).astype(np.float32),
                          np.array([tr.score for tr in shown], np.float32),
                          np.stack([tr.landmarks for tr in shown]).astype(np.float32))
        ids = {tr.id for tr in shown}
        unshown = np.array([tr.box for tr in self.tracks if tr.id not in ids], np.float32)
        return TrackUpdate(faces, np.array([tr.id for tr in shown], np.int64),
                           np.array([tr.detected for tr in shown], bool), appeared, lost,
                           np.array([tr.how for tr in shown], "<U8"),
                           unshown=unshown.reshape(-1, 4))
