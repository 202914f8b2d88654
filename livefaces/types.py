"""Plain data types shared by every livefaces module.

Coordinates are always pixels of the *original* input image, origin top-left, x to the
right, y down. Boxes are ``(x1, y1, x2, y2)`` float32; landmarks are ``(x, y)`` float32 in the
order of :data:`LANDMARK_NAMES`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, runtime_checkable

import numpy as np

LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""Order of the 5 landmarks in :attr:`Faces.landmarks` (left/right as seen in the image)."""


def face_json(box: Any, confidence: float, landmarks: Any, confidence_digits: int = 6) -> dict[str, Any]:
    """``{"box": [x1, y1, x2, y2], "confidence": c, "landmarks": {"left_eye": [x, y], ...}}``,
    pixels to 2 decimals: the face shape of ``detect --json`` and of the events."""
    return {
        "box": [round(float(v), 2) for v in box],
        "confidence": round(float(confidence), confidence_digits),
        "landmarks": {name: [round(float(x), 2), round(float(y), 2)]
                      for name, (x, y) in zip(LANDMARK_NAMES, landmarks)},
    }


class Status(str, Enum):
    """A source's state (``source.status`` events, stats, the API), a ``str`` in JSON::

        connecting → connected → (stalled | reconnecting) → connected → ... → ended | failed | stopped

    Members compare equal to their value (``Status.CONNECTED == "connected"``) and format as it.
    """

    CONNECTING = "connecting"
    CONNECTED = "connected"
    STALLED = "stalled"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass(frozen=True)
class Face:
    """One face, a row of :class:`Faces` (convenience view, not used on hot paths)."""

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by ``livefaces detect --json``."""
        return face_json(self.box, self.confidence, self.landmarks)


@dataclass(frozen=True)
class Faces:
    """The faces found in one image, as parallel arrays (N may be 0, never ``None``).

    Attributes:
        boxes: ``(N, 4)`` float32, ``x1, y1, x2, y2`` in input pixels.
        scores: ``(N,)`` float32 O-Net confidence in ``[0, 1]``.
        landmarks: ``(N, 5, 2)`` float32, ``(x, y)`` per point, order :data:`LANDMARK_NAMES`.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes.shape != (n, 4) or self.landmarks.shape != (n, 5, 2):
            raise ValueError(
                f"Faces arrays disagree: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"landmarks {self.landmarks.shape}"
            )

    @classmethod
    def empty(cls) -> Faces:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32),
        )

    def __len__(self) -> int:
        return len(self.scores)

    def __iter__(self) -> Iterator[Face]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> Face:
        b = self.boxes[i]
        return Face(
            box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
            confidence=float(self.scores[i]),
            landmarks=tuple((float(x), float(y)) for x, y in self.landmarks[i]),
        )

    def select(self, index: np.ndarray) -> Faces:
        """A subset by boolean mask or integer index array."""
        return Faces(self.boxes[index], self.scores[index], self.landmarks[index])

    def scaled(self, factor: float) -> Faces:
        """Coordinates multiplied by ``factor`` (e.g. back from a downscaled frame)."""
        return Faces(
            (self.boxes * factor).astype(np.float32),
            self.scores,
            (self.landmarks * factor).astype(np.float32),
        )

    def to_dicts(self) -> list[dict[str, Any]]:
        """One dict per face in the ``livefaces detect --json`` shape."""
        return [f.to_dict() for f in self]

    def to_mtcnn(self) -> list[dict[str, Any]]:
        """ipazc ``mtcnn``'s ``detect_faces`` format, for a one-line switch::

            faces = detector.detect(rgb).to_mtcnn()
            # [{"box": [x, y, w, h], "confidence": c, "keypoints": {"left_eye": (x, y), ...}}]

        Box values are ints as in ``mtcnn`` (x, y clipped at 0); keypoints are int tuples.
        """
        out = []
        for f in self:
            x1, y1, x2, y2 = f.box
            x, y = max(0, int(round(x1))), max(0, int(round(y1)))
            out.append(
                {
                    "box": [x, y, int(round(x2)) - x, int(round(y2)) - y],
                    "confidence": f.confidence,
                    "keypoints": {
                        name: (int(round(px)), int(round(py)))
                        for name, (px, py) in zip(LANDMARK_NAMES, f.landmarks)
                    },
                }
            )
        return out


@dataclass(frozen=True)
class Frame:
    """One decoded video frame.

    Attributes:
        image: ``(H, W, 3)`` uint8 **RGB**.
        source: display name of the source (credentials already removed).
        index: 0-based frame number within the source (counts decoded frames).
        pts: presentation time in seconds from the stream, or ``None`` if unknown.
        captured: ``time.monotonic()`` when the frame left the decoder.
    """

    image: np.ndarray
    source: str
    index: int
    pts: float | None
    captured: float


@dataclass(frozen=True)
class Identity:
    """Who a tracked face is, as far as the evidence of its track goes (live identification).

    Attributes:
        name: the enrolled person's name, or ``None``: unknown (no match under the
            recogniser's threshold, or not enough evidence yet).
        distance: the weighted mean embedding distance to ``name`` (to the nearest enrolled
            person when unknown); ``None`` before the first embedding of the track.
        votes: embeddings of this track so far.
        settled: enough votes were cast for a decision (``name`` may still be ``None``).
        stranger: with strangers on (docs/identify.md), the stranger id (``stranger-7``) of a
            track settled as unknown; ``None`` otherwise.
    """

    name: str | None = None
    distance: float | None = None
    votes: int = 0
    settled: bool = False
    stranger: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"name": ..., "distance": ..., "votes": ...}`` (events, the API), and
        ``"stranger": "stranger-7"`` when there is one (an added key: readers ignore it)."""
        d = self.distance
        out: dict[str, Any] = {
            "name": self.name,
            "distance": None if d is None or not math.isfinite(d) else round(float(d), 4),
            "votes": int(self.votes)}
        if self.stranger is not None:
            out["stranger"] = self.stranger
        return out


#: How a face on a frame was obtained (FrameResult.how, events' ``obtained``).
HOW = ("detected", "refined", "tracked")


_NO_IDS = np.zeros((0,), np.int64)
_NO_BOXES = np.zeros((0, 4), np.float32)


@dataclass(frozen=True, init=False)
class FrameResult:
    """A frame with its faces, and how they were obtained.

    Two fields say how: :attr:`mode` (the frame) and :attr:`how` (each face);
    :attr:`detected` and :attr:`face_detected` are read from them.

    Attributes:
        frame: the decoded frame.
        faces: faces on this frame (detected, or carried by the tracker), frame pixels.
        track_ids: ``(N,)`` int64 stable ids parallel to ``faces`` (empty: no tracker).
        how: ``(N,)`` str per face: ``detected`` (full cascade on the frame), ``refined``
            (the cascade in the region around the tracked face) or ``tracked`` (carried by
            the motion model).
        mode: what the frame went through: ``detected``, ``refined`` (its tracked faces were
            refined), ``tracked`` (faces carried only) or ``skipped`` (a still scene with no
            face: the detector did not run, see motion gating in :mod:`livefaces.schedule`).
        identities: per face, its track's :class:`Identity` (live identification); empty
            when no identifier runs.
        cut: the frame is a scene cut: the tracks before it ended with it (``face.lost``,
            reason ``scene_cut``), and every face on it is new.
        unshown: ``(K, 4)`` float32 boxes of tracks that live on but are not among ``faces``
            (the networks did not confirm them on this frame); ``--blur-unknown`` blurs them.

    The constructor also takes the short forms ``FrameResult(frame, faces, detected,
    track_ids, face_detected)``: left out, ``mode`` follows ``detected`` (``detected`` or
    ``tracked``) and ``how`` follows ``face_detected`` (per face; left out or of another
    length, every face follows ``detected``).
    """

    frame: Frame
    faces: Faces
    track_ids: np.ndarray
    how: np.ndarray
    mode: str
    identities: tuple[Identity, ...]
    cut: bool
    unshown: np.ndarray

    def __init__(self, frame: Frame, faces: Faces, detected: bool | None = None,
                 track_ids: np.ndarray | None = None, face_detected: np.ndarray | None = None,
                 how: np.ndarray | None = None, mode: str = "",
                 identities: tuple[Identity, ...] = (), cut: bool = False,
                 unshown: np.ndarray | None = None) -> None:
        n = len(faces)
        if not mode:
            mode = "detected" if detected else "tracked"
        if how is None or len(how) != n:
            if face_detected is None or len(face_detected) != n:
                face_detected = np.full(n, mode == "detected", bool)
            how = np.where(face_detected, "detected" if mode == "detected" else "refined",
                           "tracked")
        put = object.__setattr__
        put(self, "frame", frame)
        put(self, "faces", faces)
        put(self, "track_ids", _NO_IDS if track_ids is None else track_ids)
        put(self, "how", np.asarray(how).astype("<U8"))
        put(self, "mode", mode)
        put(self, "identities", tuple(identities))
        put(self, "cut", bool(cut))
        put(self, "unshown", _NO_BOXES if unshown is None else unshown)

    @property
    def detected(self) -> bool:
        """The frame went through the full detector (the whole frame): ``mode == "detected"``."""
        return self.mode == "detected"

    @property
    def face_detected(self) -> np.ndarray:
        """``(N,)`` bool, per face: True if the networks verified it on this frame (``how``
        is ``detected`` or ``refined``), False if the tracker carried it."""
        return self.how != "tracked"


# --------------------------------------------------------------------------- statistics
# Snapshots the pipeline hands to its sinks about once a second (Sink.on_stats): the HUD,
# the web hub and /metrics read these, never the pipeline itself.

#: seconds; bucket bounds of the latency histograms (capture → result)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class HistogramSnapshot:
    """A latency histogram at one moment: ``buckets`` are ``(upper_bound_s, cumulative_count)``
    with the last bound ``inf``; ``sum`` in seconds; ``count`` observations."""

    buckets: tuple[tuple[float, int], ...]
    sum: float
    count: int


@dataclass(frozen=True)
class SourceStats:
    """A snapshot of one source (rates are over the last 2 s; times in seconds).

    Attributes:
        name: redacted source name.  status: connecting/connected/stalled/reconnecting/
        ended/failed/stopped.  live: dropped frames are possible (camera/stream).
        frames_captured: decoded frames.  frames_processed: frames turned into results.
        frames_detected / frames_refined / frames_tracked / frames_skipped: of those, how
            (:attr:`FrameResult.mode`): the full detector, refinement of tracked faces, the
            tracker alone, or skipped for want of motion (a still scene with no face).
        dropped: frames lost in the capture ring buffer (newest-wins).
        reconnects: successful or attempted reconnections after a failure.
        capture_fps / detect_fps / output_fps: recent rates (``detect_fps``: full detections).
        verified_fps: recent rate of frames whose faces the networks checked (detected or
            refined).
        checked_fps: ``verified_fps`` plus frames of a still scene with no face that the
            motion gate let pass (nothing to check): the rate at which the schedule is met.
        latency_ms_p50 / latency_ms_p95: capture → result delivered to sinks, recent frames.
        latency_ms_run: capture → result over the whole run, ``{"p50", "p95", "max"}`` in
            milliseconds (:meth:`~livefaces.meter.Latency.run_ms`); None before the first
            result. :attr:`latency_ms_max` is its ``max``.
        last_frame_age: seconds since the newest frame was captured (None: none yet).
        faces: faces on the newest result.  error: last one-line error (redacted) or None.
        detect_interval_s: seconds between detections on this source, smoothed (source
            clock: capture time for live sources, stream time for files); None before two.
        detect_expected_s: the interval the detection policy asks for (live sources; None
            when unknown or not applicable).
        busy_s: seconds from the pipeline's start to this source's newest result (throughput
            of files: ``frames_processed / busy_s``); None before the first.
    """

    name: str
    status: Status | None
    live: bool
    frames_captured: int
    frames_processed: int
    frames_detected: int
    frames_tracked: int
    dropped: int
    reconnects: int
    capture_fps: float
    detect_fps: float
    output_fps: float
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    last_frame_age: float | None
    faces: int
    error: str | None
    detect_interval_s: float | None = None
    detect_expected_s: float | None = None
    busy_s: float | None = None
    frames_refined: int = 0
    frames_skipped: int = 0
    latency_ms_run: dict[str, float] | None = None
    verified_fps: float = 0.0
    checked_fps: float = 0.0

    @property
    def latency_ms_max(self) -> float | None:
        """The largest capture → result latency of the run, milliseconds (None: none yet)."""
        return None if self.latency_ms_run is None else self.latency_ms_run["max"]

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of these statistics (``serve``'s ``/api/cameras``, ``/metrics``):
        every field under its own name, except ``status`` → ``state``, ``frames_skipped`` →
        ``frames_skipped_no_motion`` and ``latency_ms_run`` → ``latency_ms_max`` (its max).
        Numbers as they are (the web server rounds them and writes NaN/inf as null)."""
        return {
            "name": self.name, "state": self.status, "live": self.live,
            "frames_captured": self.frames_captured, "frames_processed": self.frames_processed,
            "frames_detected": self.frames_detected, "frames_refined": self.frames_refined,
            "frames_tracked": self.frames_tracked,
            "frames_skipped_no_motion": self.frames_skipped,
            "dropped": self.dropped, "reconnects": self.reconnects,
            "capture_fps": self.capture_fps, "detect_fps": self.detect_fps,
            "output_fps": self.output_fps, "verified_fps": self.verified_fps,
            "checked_fps": self.checked_fps,
            "latency_ms_p50": self.latency_ms_p50, "latency_ms_p95": self.latency_ms_p95,
            "latency_ms_max": self.latency_ms_max, "last_frame_age": self.last_frame_age,
            "faces": self.faces, "error": self.error,
            "detect_interval_s": self.detect_interval_s,
            "detect_expected_s": self.detect_expected_s, "busy_s": self.busy_s,
        }


@dataclass(frozen=True)
class SinkStats:
    """``output_closed``: the sink's reader went away (a closed pipe) and the run stopped."""

    name: str
    results_dropped: int
    events_dropped: int
    errors: int
    error: str | None
    output_closed: bool = False


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot of the whole pipeline; ``detect_seconds`` is the average batch time."""

    sources: tuple[SourceStats, ...]
    sinks: tuple[SinkStats, ...]
    detect_seconds: float
    detect_scale: float
    policy: str
    running: bool
    uptime: float
    cpu_seconds: float = 0.0
    """process CPU time (user + system) since the pipeline started"""
    identify: IdentifyStats | None = None
    """live identification's counters (:class:`IdentifyStats`: requested, dropped, embedded,
    errors, embed_ms, people, alive), None without it"""

    def source(self, name: str | None = None) -> SourceStats:
        """The stats of source ``name`` (default: the first)."""
        if name is None:
            return self.sources[0]
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


@runtime_checkable
class FrameSource(Protocol):
    """What capture needs from a source. Not thread-safe: one capture thread owns it.

    Attributes:
        name: display name, credentials removed (safe for logs and events).
        live: True for cameras and streams (frames are dropped rather than waited for, and
            errors lead to reconnecting); False for files and folders (no frame is lost).

    Two attributes are optional (a source may leave them out; read them with
    :func:`source_stills` and :func:`source_fps`, never directly): ``stills`` (True: each
    frame is a photo of its own, as from a folder of images: every one is detected, its
    faces get fresh tracks) and ``fps`` (the nominal frame rate, e.g. a recording's).
    """

    name: str
    live: bool

    def open(self, open_timeout: float, stall_timeout: float) -> None:
        """Connect/open; raises :class:`~livefaces.errors.SourceError` with a one-line reason.
        May be called again after :meth:`close` (reconnect)."""

    def read(self) -> Frame:
        """The next frame. Raises :class:`~livefaces.errors.EndOfStream` at the end,
        :class:`~livefaces.errors.StalledError` when no frame came for ``stall_timeout`` s,
        :class:`~livefaces.errors.SourceError` on other failures."""

    def close(self) -> None:
        """Release the device/connection; safe to call twice."""


# -- live identification: what the pipeline and serve see of it (livefaces.identify.live) ----
@dataclass(frozen=True)
class Identified:
    """A track's settled name changed (``face.identified``): ``previous`` was announced
    before (None: unknown)."""

    camera: str
    track_id: int
    identity: Identity
    previous: str | None


@dataclass(frozen=True)
class IdentifyStats:
    """Counters of the identifier (no embedding, no name of a face).

    ``requested``: embeddings queued; ``dropped``: refused by the full queue (its policy is
    drop-newest); ``embedded``: results back; ``errors``: failed embeddings; ``embed_ms``:
    mean CPU time of the worker per face (about 85 ms; the wait for a core on a busy machine
    is not in it); ``people``: enrolled names; ``alive``: the worker process
    runs."""

    requested: int
    dropped: int
    embedded: int
    errors: int
    embed_ms: float | None
    people: int
    alive: bool


class TrackIdentities(Protocol):
    """The identities of ONE camera's tracks (called by that camera's detect loop only)."""

    def observe(self, result: FrameResult, now: float) -> None:
        """Ask for embeddings of the faces of ``result`` that are due."""

    def identities(self, result: FrameResult) -> tuple[Identity, ...]:
        """Per face of ``result``, its track's identity."""

    def identity(self, track_id: int) -> Identity:
        """The identity of one track (unknown if it has none)."""

    def forget(self, track_id: int) -> None:
        """The track ended: drop its votes."""


class Identifier(Protocol):
    """Live identification as the pipeline and serve use it
    (:class:`~livefaces.identify.live.LiveIdentifier`).

    Attributes:
        names: the enrolled people.
    """

    names: tuple[str, ...]

    def start(self) -> Identifier:
        """Ready to identify (a no-op when started); raises
        :class:`~livefaces.errors.LiveFacesError` when it cannot start."""

    def close(self, timeout: float = 2.0) -> bool:
        """Stop within ``timeout`` s; False when that needed force."""

    def camera(self, name: str) -> TrackIdentities:
        """The identities of camera ``name``'s tracks."""

    def poll(self) -> list[Identified]:
        """Results that came back (never waits): the tracks whose settled name changed."""

    def stats(self) -> IdentifyStats:
        """Its counters."""

    def enrol(self, name: str, crop: np.ndarray, face: Faces, timeout: float = 15.0
              ) -> tuple[str, ...]:
        """Add ``face`` (one row, in pixels of ``crop``) to person ``name``; the enrolled
        names after it."""

    def stranger(self, stranger: str, action: str, name: str | None = None,
                 timeout: float = 30.0) -> tuple[str, ...]:
        """``name`` (as person ``name``), ``ignore`` or ``forget`` a stranger; the enrolled
        names after it."""


def source_stills(source: FrameSource) -> bool:
    """The optional ``stills`` of a :class:`FrameSource` (False when it has none)."""
    return bool(getattr(source, "stills", False))


def source_fps(source: FrameSource) -> float | None:
    """The optional nominal ``fps`` of a :class:`FrameSource` (None when it has none or does
    not know)."""
    fps = getattr(source, "fps", None)
    return float(fps) if fps else None
