"""The in-process meeting point between the pipeline (writer threads) and the web server.

The pipeline hands every :class:`~livefaces.types.FrameResult` and every event dict to the
hub; those calls are O(1) and never block (a lock held for a few assignments). The web
server reads from it: the latest result per camera (annotated and JPEG-encoded lazily, once
per frame, only when someone looks), the recent events (a bounded ring, oldest dropped, each
with an increasing id for ``since`` queries) and per-camera statistics.

Nothing here knows about HTTP, MQTT or the detector.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..align import crop_region
from ..blur import blur_unknown, names_of
from ..meter import Latency
from ..render import render_result
from ..types import HOW, Faces, FrameResult, PipelineStats, SourceStats
from .config import CameraConfig


@dataclass(frozen=True)
class CameraHealth:
    """What ``serve`` judges of one camera from its :class:`~livefaces.types.SourceStats`
    (:func:`~livefaces.serve.app.camera_health`, the detection-rate watch): ``health``
    (``streaming``, ``starting``, ``ended``, ``off`` or ``error``), the reason when it is not
    streaming, and whether the detector falls behind the camera's ``detect_fps``."""

    health: str
    error: str | None = None
    behind: bool = False

    def to_json(self) -> dict[str, Any]:
        """The API's fields of this judgement (its ``error`` is the one the API shows)."""
        return {"health": self.health, "streaming": self.health == "streaming",
                "error": self.error, "detect_behind": self.behind}


@dataclass
class _CameraState:
    config: CameraConfig
    seq: int = 0
    result: FrameResult | None = None
    last_seen_wall: float | None = None
    last_seen_mono: float | None = None
    jpeg_seq: int = -1
    jpeg: bytes | None = None
    # the newest snapshot of the pipeline and serve's judgement of it (put_stats)
    stats: SourceStats | None = None
    judged: CameraHealth | None = None
    faces_seen: int = 0
    events: int = 0
    # the newest source.status event: state, frames captured at that moment, when (monotonic)
    status_after: str | None = None
    status_frames: int | None = None
    status_mono: float | None = None


#: views kept per unknown track (naming the face enrols them all)
UNKNOWN_VIEWS = 3
#: seconds between two kept views of one unknown track (different moments, not one burst)
UNKNOWN_VIEW_GAP_S = 1.0
#: named tracks remembered so that they are not kept as unknown again
NAMED_KEPT = 256


class Hub:
    """Latest frames, recent events and statistics for a set of cameras (thread-safe).

    Args:
        cameras: every configured camera (disabled ones are listed, never fed).
        events_capacity: recent events kept for ``/api/events`` (oldest dropped, counted in
            :attr:`events_dropped`).
        jpeg_quality: 1-100 for the annotated snapshots.
        blur_unknown: blur faces without a recognised name in the annotated frames.
        unknown_crops: keep crops of each of this many recent tracks that were settled as
            unknown, in memory only, for :meth:`unknown_faces`: up to
            :data:`UNKNOWN_VIEWS` views a track, the best by size × confidence, at least
            :data:`UNKNOWN_VIEW_GAP_S` apart (naming a face enrols them all, so one poor
            frame, a decoding smear say, does not make the enrolment).
        clock: monotonic seconds (injectable in tests).
    """

    def __init__(self, cameras: tuple[CameraConfig, ...] | list[CameraConfig], *,
                 events_capacity: int = 1000, jpeg_quality: int = 80,
                 blur_unknown: bool = False, unknown_crops: int = 0,
                 clock: Callable[[], float] = time.monotonic):
        self._cams = {c.name: _CameraState(c) for c in cameras}
        self._lock = threading.Lock()
        self._events: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(
            maxlen=events_capacity)
        self._event_id = 0
        self.events_dropped = 0
        self.jpeg_quality = int(jpeg_quality)
        self.clock = clock
        self.started = clock()
        self.latency = {n: Latency() for n in self._cams}  # capture → here, verified frames
        self._jpeg_lock = threading.Lock()
        # pushed about once a second (put_stats), never pulled from the pipeline
        self._health: dict[str, Any] = {}
        self.pipeline_stats: PipelineStats | None = None
        self.publisher_stats: dict[str, Any] | None = None
        self.blur_unknown = bool(blur_unknown)
        self.people: list[dict[str, Any]] | None = None  # None: no identification
        self.unknown_capacity = int(unknown_crops)
        # (camera, track id) -> views, best first: (quality, crop RGB, the face in crop
        # pixels, wall time); the oldest track is dropped beyond capacity
        self._unknown: collections.OrderedDict[tuple[str, int],
                                               list[tuple[float, np.ndarray, Faces, float]]] = \
            collections.OrderedDict()
        # tracks named from the page or the CLI (oldest dropped beyond NAMED_KEPT)
        self._named: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()

    # ------------------------------------------------------------------ writers (pipeline)

    @property
    def camera_names(self) -> list[str]:
        return list(self._cams)

    def camera(self, name: str) -> CameraConfig | None:
        st = self._cams.get(name)
        return st.config if st else None

    def put_result(self, camera: str, result: FrameResult) -> None:
        """Record the newest result of ``camera`` (unknown names are ignored)."""
        st = self._cams.get(camera)
        if st is None:
            return
        now = self.clock()
        with self._lock:
            st.seq += 1
            st.result = result
            st.last_seen_mono = now
            st.last_seen_wall = time.time()
        if result.mode in ("detected", "refined"):  # frames the networks worked on
            self.latency[camera].add(max(0.0, now - result.frame.captured))
            if self.unknown_capacity and result.identities:
                self._keep_unknown(camera, result)

    def _keep_unknown(self, camera: str, result: FrameResult) -> None:
        """Keep the best verified views of each track settled as unknown (bounded)."""
        now = time.time()
        for i, ident in enumerate(result.identities):
            if not ident.settled or ident.name is not None or result.how[i] == "tracked":
                continue
            x1, y1, x2, y2 = (float(v) for v in result.faces.boxes[i])
            quality = (x2 - x1) * (y2 - y1) * float(result.faces.scores[i])
            key = (camera, int(result.track_ids[i]))
            with self._lock:
                if key in self._named:
                    continue
                views = self._unknown.get(key, [])
                recent = any(now - v[3] < UNKNOWN_VIEW_GAP_S for v in views)
                if recent or (len(views) >= UNKNOWN_VIEWS and views[-1][0] >= quality):
                    continue
            crop, face = crop_region(result.frame.image, result.faces.select(np.array([i])), 0.3)
            with self._lock:
                views = sorted([*self._unknown.get(key, []), (quality, crop, face, now)],
                               key=lambda v: -v[0])[:UNKNOWN_VIEWS]
                self._unknown[key] = views
                self._unknown.move_to_end(key)
                while len(self._unknown) > self.unknown_capacity:
                    self._unknown.popitem(last=False)

    def unknown_faces(self) -> list[dict[str, Any]]:
        """Recent unknown tracks (newest first): ``[{id, camera, track_id, seen, views}]``."""
        with self._lock:
            items = [(k, len(v), max(x[3] for x in v)) for k, v in self._unknown.items()]
        return [{"id": f"{cam}.{tid}", "camera": cam, "track_id": tid,
                 "seen": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)), "views": n}
                for (cam, tid), n, t in reversed(items)]

    def unknown_crop(self, face_id: str) -> np.ndarray | None:
        """The best kept crop (RGB) of ``camera.track_id``, or None."""
        views = self.unknown_views(face_id)
        return views[0][0] if views else None

    def unknown_views(self, face_id: str) -> list[tuple[np.ndarray, Faces]]:
        """The kept crops of ``camera.track_id``, best first, each with the face in its
        pixels; empty when none is kept."""
        cam, _, tid = face_id.rpartition(".")
        with self._lock:
            views = self._unknown.get((cam, int(tid)), []) if tid.isdigit() else []
        return [(v[1], v[2]) for v in views]

    def forget_unknown(self, face_id: str) -> None:
        """Drop the kept views of a face that was just named; its track is not kept again
        (it stays unknown until its next votes come in, and must not reappear meanwhile)."""
        cam, _, tid = face_id.rpartition(".")
        if tid.isdigit():
            with self._lock:
                self._unknown.pop((cam, int(tid)), None)
                self._named[(cam, int(tid))] = None
                while len(self._named) > NAMED_KEPT:
                    self._named.popitem(last=False)

    def put_people(self, people: list[dict[str, Any]]) -> None:
        """The enrolled names and where each is now (from the presence sink)."""
        with self._lock:
            self.people = [dict(p) for p in people]

    def people_status(self) -> list[dict[str, Any]] | None:
        """``[{name, present: [cameras], last_seen, last_camera}]``; None without people."""
        with self._lock:
            return None if self.people is None else [dict(p) for p in self.people]

    def put_event(self, event: dict[str, Any]) -> None:
        """Append an event dict (the JSON Lines schema) to the recent-events ring."""
        cam = event.get("source")
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self.events_dropped += 1
            self._event_id += 1
            self._events.append((self._event_id, event))
            st = self._cams.get(cam) if isinstance(cam, str) else None
            if st is not None:
                if event.get("type") == "source.status":
                    frames = event.get("frames")
                    st.status_after = str(event.get("after"))
                    st.status_frames = frames if isinstance(frames, int) else None
                    st.status_mono = self.clock()
                st.events += 1
                if event.get("type") == "face.appeared":
                    st.faces_seen += 1

    def last_status(self, camera: str) -> tuple[str | None, int | None, float | None]:
        """``(after, frames, since)`` of the camera's newest ``source.status`` event: the state,
        the frames it had captured then, and the monotonic time the hub got it."""
        st = self._cams.get(camera)
        if st is None:
            return None, None, None
        with self._lock:
            return st.status_after, st.status_frames, st.status_mono

    def put_stats(self, pipeline: PipelineStats, judged: dict[str, CameraHealth] | None = None,
                  *, health: dict[str, Any] | None = None,
                  publisher: dict[str, Any] | None = None) -> None:
        """The newest statistics (pushed about once a second): the pipeline's snapshot (each
        camera's :class:`~livefaces.types.SourceStats`, by name), serve's judgement of each
        camera, the publisher's counters (``/metrics``) and the ``/health`` fields."""
        by_name = {s.name: s for s in pipeline.sources}
        judged = judged or {}
        with self._lock:
            self.pipeline_stats = pipeline
            for name, st in self._cams.items():
                st.stats = by_name.get(name)
                st.judged = judged.get(name)
            if health is not None:
                self._health = dict(health)
            if publisher is not None:
                self.publisher_stats = dict(publisher)

    def health(self) -> dict[str, Any]:
        """The newest ``/health`` fields (``problems``, ...; empty before the first push)."""
        with self._lock:
            return dict(self._health)

    # ------------------------------------------------------------------ readers (web)

    def events_since(self, since: int = 0, limit: int = 200) -> tuple[list[dict[str, Any]], int]:
        """Events with id > ``since`` (oldest first, at most ``limit``, the newest ones when
        more) and the cursor to pass as ``since`` next time."""
        with self._lock:
            items = [(i, e) for i, e in self._events if i > since]
            last = self._event_id
        if len(items) > limit:
            items = items[-limit:]
        return [e for _, e in items], (items[-1][0] if items else last)

    def frame_seq(self, camera: str) -> int:
        st = self._cams.get(camera)
        return st.seq if st else 0

    def jpeg(self, camera: str) -> tuple[int, bytes] | None:
        """``(seq, JPEG bytes)`` of the newest annotated frame, encoded at most once per frame."""
        st = self._cams.get(camera)
        if st is None:
            return None
        with self._jpeg_lock:
            with self._lock:
                seq, result, cached, cseq = st.seq, st.result, st.jpeg, st.jpeg_seq
            if result is None:
                return None
            if cseq == seq and cached is not None:
                return seq, cached
            data = encode_jpeg(annotate_result(result, self.blur_unknown), self.jpeg_quality)
            with self._lock:
                st.jpeg, st.jpeg_seq = data, seq
            return seq, data

    def source_stats(self, camera: str) -> tuple[SourceStats | None, CameraHealth | None]:
        """The newest pushed snapshot of ``camera`` and serve's judgement of it (None, None
        before the first push, for a disabled camera or an unknown name)."""
        st = self._cams.get(camera)
        if st is None:
            return None, None
        with self._lock:
            return st.stats, st.judged

    def status(self) -> dict[str, dict[str, Any]]:
        """Per-camera status (``/api/cameras``): config (password-free), what the hub saw
        (newest frame, events), then the pushed :meth:`SourceStats.to_json
        <livefaces.types.SourceStats.to_json>` and serve's :class:`CameraHealth`."""
        now = self.clock()
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for name, st in self._cams.items():
                c = st.config
                r = st.result
                out[name] = {
                    "name": name,
                    "url": c.safe_url,
                    "enabled": c.enabled,
                    "detect_fps_target": c.detect_fps,
                    "min_face_size": c.min_face_size,
                    "faces_now": len(r.faces) if r is not None else 0,
                    # how the newest frame's faces were obtained (detected/refined/tracked)
                    "faces_now_obtained": ({h: int((r.how == h).sum()) for h in HOW}
                                           if r is not None else {h: 0 for h in HOW}),
                    "newest_frame_mode": r.mode if r is not None else None,
                    # names of the newest frame's faces (null: unknown); absent without people
                    **({"faces_now_names": [i.name for i in r.identities]}
                       if r is not None and r.identities else {}),
                    "faces_seen": st.faces_seen,
                    "events": st.events,
                    "last_seen": (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.last_seen_wall))
                                  if st.last_seen_wall else None),
                    "last_seen_age_s": (round(now - st.last_seen_mono, 3)
                                        if st.last_seen_mono is not None else None),
                    "frame_size": ([int(r.frame.image.shape[1]), int(r.frame.image.shape[0])]
                                   if r is not None else None),
                }
                if st.stats is not None:
                    out[name].update(st.stats.to_json(), name=name)
                if st.judged is not None:
                    out[name].update(st.judged.to_json())
        return out


def annotate_result(result: FrameResult, blur: bool = False) -> np.ndarray:
    """The frame drawn for the page: unknown faces blurred first when ``blur``."""
    if blur:
        result = blur_unknown(result)
    return render_result(result, names=names_of(result))


def encode_jpeg(rgb: np.ndarray, quality: int = 80) -> bytes:
    """JPEG bytes of an ``(H, W, 3)`` uint8 RGB image."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
        raise ValueError("JPEG encoding failed")
    return bytes(buf)
