"""Event dicts: what the pipeline tells the world (JSON Lines, MQTT, web sockets, ...).

Every event is a plain JSON-serialisable dict with these top-level keys (schema
:data:`SCHEMA`, documented with examples in ``docs/events.md``)::

    schema   "livefaces.event/1"
    type     face.appeared | face.updated | face.lost | source.status
    source   the source's name, credentials removed
    time     wall-clock time the event was made, ISO 8601 UTC with microseconds ("...Z")

Face events add the track's state (``track_id``, ``box``, ``confidence``, ``landmarks``,
``detected``, ``frame_index``, ``pts``, ``captured``, ``width``, ``height``), ``first_seen``,
``duration`` and ``before`` (the state at this track's previous event, ``null`` for
``face.appeared``) — Frigate's new/update/end pattern. ``source.status`` adds ``before``,
``after`` and ``detail``. Consumers must ignore keys they do not know (new keys are added
within a schema version; meanings never change without bumping it).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .types import face_json

SCHEMA_VERSION = 1
SCHEMA = f"livefaces.event/{SCHEMA_VERSION}"
FACE_APPEARED = "face.appeared"
FACE_UPDATED = "face.updated"
FACE_LOST = "face.lost"
SOURCE_STATUS = "source.status"
EVENT_TYPES = (FACE_APPEARED, FACE_UPDATED, FACE_LOST, SOURCE_STATUS)


def iso_utc(t: float | None = None) -> str:
    """Wall-clock seconds since the epoch (default: now) as ``2024-05-01T12:00:00.123456Z``."""
    t = time.time() if t is None else t
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_event(type: str, source: str, *, time: float | None = None, **fields: Any) -> dict:
    """The envelope every event has, plus ``fields``. ``time`` is wall-clock epoch seconds."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; one of {EVENT_TYPES}")
    return {"schema": SCHEMA, "type": type, "source": source, "time": iso_utc(time), **fields}


def face_state(box: np.ndarray, confidence: float, landmarks: np.ndarray, *, detected: bool,
               frame_index: int, pts: float | None, captured_wall: float, width: int,
               height: int) -> dict[str, Any]:
    """One face at one frame: box xyxy and landmarks in frame pixels (2 decimals)."""
    return {
        **face_json(box, confidence, landmarks, confidence_digits=5),
        "detected": bool(detected),
        "frame_index": int(frame_index),
        "pts": None if pts is None else round(float(pts), 6),
        "captured": iso_utc(captured_wall),
        "width": int(width),
        "height": int(height),
    }


def face_event(type: str, source: str, track_id: int, state: dict[str, Any],
               before: dict[str, Any] | None, *, first_seen_wall: float, now_wall: float | None = None
               ) -> dict:
    """``face.appeared`` / ``face.updated`` / ``face.lost`` for one track."""
    now_wall = time.time() if now_wall is None else now_wall
    return make_event(type, source, time=now_wall, track_id=int(track_id), **state,
                      first_seen=iso_utc(first_seen_wall),
                      duration=round(max(0.0, now_wall - first_seen_wall), 3), before=before)


def status_event(source: str, before: str | None, after: str, detail: str | None = None,
                 **fields: Any) -> dict:
    """``source.status``: ``before`` → ``after`` (connecting, connected, stalled,
    reconnecting, ended, failed, stopped), ``detail`` a one-line reason or None."""
    return make_event(SOURCE_STATUS, source, before=before, after=after, detail=detail, **fields)


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
