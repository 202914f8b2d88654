"""Presence per person and camera for ``livefaces serve`` with ``people:``: who is on which
camera now (:class:`Presence`, from the face events of live identification), and the sink
that publishes it (:class:`PresenceSink`: retained MQTT topics, the hub's people list for
``/api/people`` and the page)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..types import FrameResult, PipelineStats
from .hub import Hub

#: seconds a person stays present on a camera after their last track there ended or lost
#: their name (``people.absent_after``): a track change, a look away, a scene cut is no leaving
ABSENT_AFTER_S = 10.0


class Presence:
    """Who is on which camera now, from the face events: a name is present on a camera while
    one of its tracks there is identified as that name (``face.identified`` sets or changes a
    track's name, ``face.lost`` ends the track), and for ``absent_after`` seconds after the
    last such track ended (a hold-off: the next track of the same person, a moment later,
    changes nothing; :meth:`tick` reports who left). Not thread-safe: :class:`PresenceSink`
    guards it."""

    def __init__(self, names: tuple[str, ...] | list[str], absent_after: float = ABSENT_AFTER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not absent_after >= 0:
            raise ValueError(f"absent_after must be >= 0 (got {absent_after})")
        self.names = tuple(names)
        self.absent_after, self.clock = float(absent_after), clock
        self._tracks: dict[tuple[str, int], str] = {}
        self._leaving: dict[tuple[str, str], float] = {}  # (camera, name) -> unseen since
        self.last_seen: dict[str, tuple[str, str]] = {}  # name -> (camera, ISO time)

    def _tracked(self, camera: str) -> set[str]:
        return {n for (c, _), n in self._tracks.items() if c == camera}

    def here(self, camera: str) -> set[str]:
        """The names present on ``camera`` (those in their hold-off included)."""
        return self._tracked(camera) | {n for (c, n) in self._leaving if c == camera}

    def update(self, event: dict[str, Any]) -> list[tuple[str, str, bool]]:
        """The ``(camera, name, present)`` changes ``event`` makes (and :meth:`tick`'s)."""
        kind = event.get("type")
        if kind not in ("face.identified", "face.updated", "face.lost"):
            return self.tick()
        cam, tid = str(event.get("source")), event.get("track_id")
        name = (event.get("identity") or {}).get("name")
        if isinstance(name, str) and kind != "face.lost":
            self.last_seen[name] = (cam, str(event.get("time")))
        if kind == "face.updated" or not isinstance(tid, int):
            return self.tick()
        before = self.here(cam)
        tracked_before = self._tracked(cam)
        if kind == "face.lost" or not isinstance(name, str):
            self._tracks.pop((cam, tid), None)
        else:
            self._tracks[(cam, tid)] = name
        tracked = self._tracked(cam)
        now = self.clock()
        for n in tracked:  # seen again within the hold-off: still present, nothing to say
            self._leaving.pop((cam, n), None)
        if self.absent_after > 0:
            for n in tracked_before - tracked:
                self._leaving.setdefault((cam, n), now)
        after = self.here(cam)
        return ([(cam, n, True) for n in sorted(after - before)]
                + [(cam, n, False) for n in sorted(before - after)] + self.tick())

    def tick(self) -> list[tuple[str, str, bool]]:
        """The ``(camera, name, False)`` of those unseen for ``absent_after`` seconds now."""
        if not self._leaving:
            return []
        now = self.clock()
        gone = sorted(k for k, t in self._leaving.items() if now - t >= self.absent_after)
        for k in gone:
            del self._leaving[k]
        return [(cam, n, False) for cam, n in gone]

    def snapshot(self) -> list[dict[str, Any]]:
        """``[{name, present: [cameras], last_seen, last_camera}]`` for ``/api/people``."""
        where: dict[str, set[str]] = {}
        for (cam, _), n in self._tracks.items():
            where.setdefault(n, set()).add(cam)
        for cam, n in self._leaving:
            where.setdefault(n, set()).add(cam)
        return [{"name": n, "present": sorted(where.get(n, ())),
                 "last_seen": self.last_seen.get(n, (None, None))[1],
                 "last_camera": self.last_seen.get(n, (None, None))[0]} for n in self.names]


class PresencePublisher(Protocol):
    """Where presence goes on MQTT (:class:`~livefaces.publish.mqtt.MqttPublisher`)."""

    def publish_presence(self, camera: str, name: str, present: bool) -> None:
        """Retained ``<prefix>/<camera>/people/<name>``: ``present`` or ``absent``."""


class PresenceSink:
    """Turns face events into presence: retained ``<prefix>/<camera>/people/<name>``
    ``present``/``absent`` on MQTT (every name starts ``absent`` on every camera) and the
    hub's people list (``/api/people``, the page). A :class:`~livefaces.publish.Sink` (by its
    methods); results are not needed (one slot)."""

    result_queue = 1

    def __init__(self, presence: Presence, hub: Hub, cameras: list[str],
                 publisher: PresencePublisher | None = None) -> None:
        self.presence, self.hub, self.publisher = presence, hub, publisher
        self.cameras = cameras
        # the sink thread (events) and the web's naming thread (enrolled) both change it
        self._lock = threading.Lock()

    def announce(self, names: tuple[str, ...] | list[str] | None = None) -> None:
        """Every name ``absent`` on every camera (so the entities exist before anyone comes);
        with ``names`` (the people after an enrolment), only the new ones."""
        with self._lock:
            if names is None:
                new: tuple[str, ...] = self.presence.names
            else:
                new = tuple(n for n in names if n not in self.presence.names)
                self.presence.names = tuple(names)
            if self.publisher is not None:
                for cam in self.cameras:
                    for n in new:
                        self.publisher.publish_presence(cam, n, False)
            self.hub.put_people(self.presence.snapshot())

    def on_result(self, result: FrameResult) -> None:
        pass  # presence comes from the events

    def on_event(self, event: dict[str, Any]) -> None:
        with self._lock:
            changes = self.presence.update(event)
            self._publish(changes)
            if changes or event.get("type") in ("face.identified", "face.updated"):
                self.hub.put_people(self.presence.snapshot())

    def on_stats(self, stats: PipelineStats) -> None:
        """About once a second: who has now been unseen for ``absent_after`` seconds."""
        with self._lock:
            changes = self.presence.tick()
            self._publish(changes)
            if changes:
                self.hub.put_people(self.presence.snapshot())

    def _publish(self, changes: list[tuple[str, str, bool]]) -> None:
        if self.publisher is not None:
            for cam, name, present in changes:
                self.publisher.publish_presence(cam, name, present)

    def close(self) -> None:
        """The run ends: everyone present is marked ``absent`` (before MQTT says offline)."""
        if self.publisher is not None:
            with self._lock:
                for cam in self.cameras:
                    for n in sorted(self.presence.here(cam)):
                        self.publisher.publish_presence(cam, n, False)
