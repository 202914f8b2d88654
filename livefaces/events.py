"""Event dicts: what the pipeline tells the world (JSON Lines, MQTT, web sockets, ...).

Every event is a plain JSON-serialisable dict with these top-level keys (schema
:data:`SCHEMA`, documented with examples in ``docs/events.md``)::

    schema   "livefaces.event/1"
    type     face.appeared | face.updated | face.lost | face.identified | source.status
    source   the source's name, credentials removed
    time     wall-clock time the event was made, ISO 8601 UTC with microseconds ("...Z")

Face events add the track's state (``track_id``, ``box``, ``confidence``, ``landmarks``,
``detected``, ``obtained``, ``frame_index``, ``pts``, ``captured``, ``width``, ``height``), ``first_seen``,
``duration`` (frame capture times: ``first_seen`` is the confirming frame's ``captured``) and
``before`` (the state at this track's previous event, ``null`` for ``face.appeared``) —
Frigate's new/update/end pattern; boxes are clipped to the frame. ``source.status`` adds ``before``,
``after`` and ``detail``. With live identification, face events also carry ``identity``
(``{name, distance, votes}``, :meth:`livefaces.types.Identity.to_json`) and
``face.identified`` says that a track's settled name changed (``previous``: the name
announced before). Consumers must ignore keys and event types they do not know (new ones
are added within a schema version; meanings never change without bumping it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np

from .types import Faces, Frame, Status, face_json

SCHEMA_VERSION = 1
SCHEMA = f"livefaces.event/{SCHEMA_VERSION}"
FACE_APPEARED = "face.appeared"
FACE_UPDATED = "face.updated"
FACE_LOST = "face.lost"
FACE_IDENTIFIED = "face.identified"
SOURCE_STATUS = "source.status"
EVENT_TYPES = (FACE_APPEARED, FACE_UPDATED, FACE_LOST, FACE_IDENTIFIED, SOURCE_STATUS)
#: the command line's minimum score for face events and snapshots (``--event-min-score``): on
#: the hamilton clip it drops the 8 tracks of hands, hair and dark background the detector
#: scores 0.70-0.82 at best and keeps every face (0.988 and up); docs/events.md
EVENT_MIN_SCORE = 0.9
#: the events of one track (they carry ``track_id``)
FACE_EVENTS = (FACE_APPEARED, FACE_UPDATED, FACE_LOST, FACE_IDENTIFIED)


def iso_utc(t: float | None = None) -> str:
    """Wall-clock seconds since the epoch (default: now) as ``2024-05-01T12:00:00.123456Z``."""
    t = time.time() if t is None else t
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_event(type: str, source: str, *, time: float | None = None, **fields: Any) -> dict:
    """The envelope every event has, plus ``fields``. ``time`` is wall-clock epoch seconds."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; one of {EVENT_TYPES}")
    return {"schema": SCHEMA, "type": type, "source": source, "time": iso_utc(time), **fields}


def clip_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """``box`` (xyxy pixels) clipped to a ``width`` × ``height`` frame: what events report
    (the detector's box of a face at the edge reaches beyond the frame)."""
    b = np.asarray(box, np.float64).reshape(4).copy()
    b[[0, 2]] = np.clip(b[[0, 2]], 0.0, float(width))
    b[[1, 3]] = np.clip(b[[1, 3]], 0.0, float(height))
    return b


def face_state(box: np.ndarray, confidence: float, landmarks: np.ndarray, *, detected: bool,
               frame_index: int, pts: float | None, captured_wall: float, width: int,
               height: int, obtained: str | None = None) -> dict[str, Any]:
    """One face at one frame: box xyxy (clipped to the frame) and landmarks (not clipped: a
    face at the edge may have them outside) in frame pixels (2 decimals); ``detected``:
    verified by the networks on this frame; ``obtained``: how (``detected``, ``refined`` or
    ``tracked``; default from ``detected``)."""
    return {
        **face_json(clip_box(box, width, height), confidence, landmarks, confidence_digits=5),
        "detected": bool(detected),
        "obtained": obtained or ("detected" if detected else "tracked"),
        "frame_index": int(frame_index),
        "pts": None if pts is None else round(float(pts), 6),
        "captured": iso_utc(captured_wall),
        "width": int(width),
        "height": int(height),
    }


def face_event(type: str, source: str, track_id: int, state: dict[str, Any],
               before: dict[str, Any] | None, *, first_seen_wall: float, now_wall: float | None = None,
               seen_wall: float | None = None) -> dict:
    """``face.appeared`` / ``face.updated`` / ``face.lost`` for one track.

    ``first_seen_wall``: capture time (wall clock) of the frame that confirmed the track;
    ``seen_wall``: capture time of the frame of ``state`` (its ``captured``), so that
    ``duration`` is frame time to frame time (default ``now_wall``: when it is made)."""
    now_wall = time.time() if now_wall is None else now_wall
    seen_wall = now_wall if seen_wall is None else seen_wall
    return make_event(type, source, time=now_wall, track_id=int(track_id), **state,
                      first_seen=iso_utc(first_seen_wall),
                      duration=round(max(0.0, seen_wall - first_seen_wall), 3), before=before)


def status_event(source: str, before: Status | str | None, after: Status | str, detail: str | None = None,
                 **fields: Any) -> dict:
    """``source.status``: ``before`` → ``after`` (connecting, connected, stalled,
    reconnecting, ended, failed, stopped), ``detail`` a one-line reason or None."""
    return make_event(SOURCE_STATUS, source, before=None if before is None else Status(before).value,
                      after=Status(after).value, detail=detail, **fields)


class UpdateLimiter:
    """Rate limit for ``face.updated``: at most one per track every ``interval`` seconds."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._last: dict[tuple[str, int], float] = {}

    def allow(self, source: str, track_id: int, now: float) -> bool:
        key = (source, track_id)
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        return True

    def forget(self, source: str, track_id: int) -> None:
        self._last.pop((source, track_id), None)


class TrackSet(Protocol):
    """What :meth:`FaceEvents.update` reads from a tracker step (a
    :class:`~livefaces.track.TrackUpdate`): faces and ids of every shown track, which of them
    the detector matched on this frame, the ids that appeared and the tracks (``.id``) lost."""

    @property
    def faces(self) -> Faces: ...

    @property
    def ids(self) -> np.ndarray: ...

    @property
    def detected(self) -> np.ndarray: ...

    @property
    def appeared(self) -> Sequence[int]: ...

    @property
    def lost(self) -> Sequence[Any]: ...


class FaceEvents:
    """The face events of ONE source: ``face.appeared`` / ``face.updated`` / ``face.lost``.

    Remembers, per confirmed track, the state sent with its previous event (``before``), the
    capture time of the frame that confirmed it (``first_seen``) and the last frame on which the detector
    saw it (what ``face.lost`` reports); ``face.updated`` is rate limited to one per track per
    ``update_interval`` seconds (on the capture clock) and only sent on frames where the
    networks verified the face (detected or refined). Every time in a face event but the
    envelope's ``time`` is a frame's capture time (``captured``, ``first_seen``; ``duration``
    is from the one to the other), so they are consistent whatever the processing delay.

    ``min_score``: a track gets events only from the first frame on which the networks
    verified it with at least this confidence (its ``face.appeared``); a track that never
    reaches it gets none at all (no ``face.lost`` either): false positives such as hands or a
    microphone score lower than faces (docs/events.md). 0 (default): every confirmed track.

    Args:
        source: the source's name (the events' ``source``).
        update_interval: seconds between ``face.updated`` of one track.
        min_score: see above (settable later: the attribute of the same name).
        clock: the monotonic clock of :attr:`Frame.captured` (to date captures in wall time).
        wall: wall-clock time (event times).
    """

    def __init__(self, source: str, update_interval: float = 1.0, *, min_score: float = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.source = source
        self.min_score = float(min_score)
        self._limiter = UpdateLimiter(update_interval)
        self._clock = clock
        self._wall = wall
        self._states: dict[int, dict[str, Any]] = {}  # state sent with the last event per track
        self._state_wall: dict[int, float] = {}  # capture time (wall) of that state's frame
        self._first_seen: dict[int, float] = {}  # capture time (wall) of the confirming frame per track
        self._waiting: set[int] = set()  # confirmed by the tracker, not yet scored min_score
        self._last_seen: dict[int, tuple[int, Frame, float, TrackSet]] = {}  # newest detection

    @property
    def active(self) -> list[int]:
        """Ids of the tracks that appeared and are not lost yet (in order of appearance)."""
        return list(self._states)

    def update(self, frame: Frame, tracks: TrackSet) -> list[dict[str, Any]]:
        """The events of one tracker step on ``frame`` (lost ones first)."""
        events = []
        wall = self._wall()
        captured_wall = wall - (self._clock() - frame.captured)
        h, w = frame.image.shape[:2]
        for tr in tracks.lost:
            tid = int(tr.id)
            if tid in self._states:  # not a track that never reached min_score
                events.append(self._lost(tid, getattr(tr, "end_reason", None) or "timeout", wall))
            self._forget(tid)
        how = getattr(tracks, "how", None)
        for tid in tracks.appeared:
            self._waiting.add(int(tid))
            self._first_seen.setdefault(int(tid), captured_wall)
        for i, tid in enumerate(tracks.ids.tolist()):
            is_new = False
            if tid in self._waiting:
                if not (tracks.detected[i] and float(tracks.faces.scores[i]) >= self.min_score):
                    continue
                self._waiting.discard(tid)
                is_new = True
            elif tid not in self._states:
                continue  # not confirmed by the tracker (it only shows such tracks briefly)
            if tracks.detected[i]:
                self._last_seen[tid] = (i, frame, captured_wall, tracks)
            if not is_new and not (tracks.detected[i]
                                   and self._limiter.allow(self.source, tid, frame.captured)):
                continue
            st = face_state(tracks.faces.boxes[i], tracks.faces.scores[i],
                            tracks.faces.landmarks[i], detected=bool(tracks.detected[i]),
                            frame_index=frame.index, pts=frame.pts, captured_wall=captured_wall,
                            width=w, height=h,
                            obtained=str(how[i]) if how is not None and len(how) > i else None)
            if is_new:
                self._limiter.allow(self.source, tid, frame.captured)
            events.append(face_event(FACE_APPEARED if is_new else FACE_UPDATED, self.source, tid,
                                     st, self._states.get(tid), first_seen_wall=self._first_seen[tid],
                                     now_wall=wall, seen_wall=captured_wall))
            self._states[tid] = st
            self._state_wall[tid] = captured_wall
        return events

    def identified(self, track_id: int, identity: dict[str, Any], previous: str | None
                   ) -> dict[str, Any] | None:
        """``face.identified`` for an active track whose settled name changed: its latest
        state (as sent with its previous event), ``identity`` and ``previous`` (the name
        announced before, None: unknown). None if the track is not active (it ended first,
        or it has not reached ``min_score``)."""
        tid = int(track_id)
        st = self._states.get(tid)
        if st is None:
            return None
        wall = self._wall()
        seen = self._state_wall.get(tid, wall)
        ev = face_event(FACE_IDENTIFIED, self.source, tid, st, None,
                        first_seen_wall=self._first_seen.get(tid, seen), now_wall=wall,
                        seen_wall=seen)
        del ev["before"]
        ev["identity"] = identity
        ev["previous"] = previous
        return ev

    def clear(self, reason: str, ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """``face.lost`` with ``reason`` for tracks ``ids`` (default: every active one), e.g.
        when the source stalls, ends or the pipeline stops."""
        wall = self._wall()
        out = []
        for t in (self.active if ids is None else [int(i) for i in ids]):
            if t in self._states:
                out.append(self._lost(t, reason, wall))
            self._forget(t)
        return out

    def _forget(self, tid: int) -> None:
        self._waiting.discard(tid)
        self._first_seen.pop(tid, None)
        self._last_seen.pop(tid, None)
        self._state_wall.pop(tid, None)

    def _lost(self, tid: int, reason: str, wall: float) -> dict[str, Any]:
        before = self._states.pop(tid, None)
        before_wall = self._state_wall.get(tid, wall)
        first = self._first_seen.get(tid, before_wall)
        self._limiter.forget(self.source, tid)
        seen = self._last_seen.pop(tid, None)
        seen_wall = before_wall
        if seen is not None and seen[2] >= before_wall:  # the last frame the detector saw it on
            i, f, seen_wall, u = seen
            how = getattr(u, "how", None)
            st = face_state(u.faces.boxes[i], u.faces.scores[i], u.faces.landmarks[i],
                            detected=True, frame_index=f.index, pts=f.pts,
                            captured_wall=seen_wall, width=f.image.shape[1],
                            height=f.image.shape[0],
                            obtained=str(how[i]) if how is not None and len(how) > i else None)
        else:
            st = dict(before) if before else {}
        ev = face_event(FACE_LOST, self.source, tid, st, before, first_seen_wall=first,
                        now_wall=wall, seen_wall=seen_wall)
        ev["reason"] = reason
        return ev
