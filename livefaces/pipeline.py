"""The live pipeline: the composition root that owns every thread.

::

    source ─► CaptureWorker ─► RingBuffer ┐
    source ─► CaptureWorker ─► RingBuffer ┼─► detect loop ─► SinkRunner ─► sink (jsonl, window, mp4, ...)
    source ─► CaptureWorker ─► RingBuffer ┘   (ONE Detector,  SinkRunner ─► sink
                                               batched across sources; a Tracker per source)

* One capture thread per source (never waits for the consumer on live sources; drops are
  counted by the ring buffer).
* One detect loop thread shared by all sources: it takes what each ring holds, lets the
  :mod:`~livefaces.schedule` policy choose which frames go through the detector, runs them
  as ONE :meth:`Detector.detect_batch` call (mixed sizes), and carries faces on the other
  frames with the source's :class:`~livefaces.track.Tracker`. Every captured frame that
  reaches the loop becomes a :class:`FrameResult`, in order per source.
* Each sink runs on its own thread behind bounded queues (:class:`SinkRunner`).
* One stop :class:`threading.Event`; :meth:`Pipeline.stop` completes within its timeout.

Usage::

    with Pipeline(["rtsp://cam1/stream", "rtsp://cam2/stream"], sinks=[JsonlPublisher("-")]) as p:
        p.wait()                      # until the sources end, or Ctrl-C
        print(p.stats())
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .capture import CaptureOptions, CaptureWorker
from .detect.rescale import detect_scaled
from .errors import SourceError
from .events import (
    FACE_APPEARED,
    FACE_LOST,
    FACE_UPDATED,
    UpdateLimiter,
    face_event,
    face_state,
    status_event,
)
from .meter import LatencyWindow, RateMeter
from .publish import Sink, SinkRunner
from .publish.memory import QueueSink
from .ringbuffer import Closed, RingBuffer
from .schedule import Adaptive, DetectPolicy
from .sources import FrameSource, open_source
from .track import Track, Tracker, TrackerOptions, TrackUpdate
from .types import Faces, Frame, FrameResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceStats:
    """A snapshot of one source (rates are over the last 2 s; times in seconds).

    Attributes:
        name: redacted source name.  status: connecting/connected/stalled/reconnecting/
        ended/failed/stopped.  live: dropped frames are possible (camera/stream).
        frames_captured: decoded frames.  frames_processed: frames turned into results.
        frames_detected / frames_tracked: of those, detector vs tracker.
        dropped: frames lost in the capture ring buffer (newest-wins).
        reconnects: successful or attempted reconnections after a failure.
        capture_fps / detect_fps / output_fps: recent rates.
        latency_ms_p50 / latency_ms_p95: capture → result delivered to sinks, recent frames.
        last_frame_age: seconds since the newest frame was captured (None: none yet).
        faces: faces on the newest result.  error: last one-line error (redacted) or None.
        detect_interval_s: seconds between detections on this source, smoothed (source
            clock: capture time for live sources, stream time for files); None before two.
        detect_expected_s: the interval the detection policy asks for (live sources; None
            when unknown or not applicable).
        detect_behind: True while detection runs well behind the policy (a WARNING is logged
            once per such episode): the detector cannot keep up; faces are carried longer.
        busy_s: seconds from the pipeline's start to this source's newest result (throughput
            of files: ``frames_processed / busy_s``); None before the first.
    """

    name: str
    status: str | None
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
    detect_behind: bool = False
    busy_s: float | None = None


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

    def source(self, name: str | None = None) -> SourceStats:
        """The stats of source ``name`` (default: the first)."""
        if name is None:
            return self.sources[0]
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


@dataclass
class _Src:
    source: FrameSource
    ring: RingBuffer[Frame]
    worker: CaptureWorker
    tracker: Tracker
    live: bool
    stills: bool = False  # independent photos: fresh tracks on every frame
    finished: bool = False
    expected_interval: float | None = None
    behind: bool = False
    last_output: float | None = None
    flush_reason: str | None = None
    processed: int = 0
    detected: int = 0
    tracked: int = 0
    faces: int = 0
    detect_rate: RateMeter = field(default_factory=RateMeter)
    output_rate: RateMeter = field(default_factory=RateMeter)
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    states: dict[int, dict[str, Any]] = field(default_factory=dict)  # last event state per track
    first_seen: dict[int, float] = field(default_factory=dict)  # wall time per track
    last_seen: dict[int, dict[str, Any]] = field(default_factory=dict)  # newest detected state


SourceLike = FrameSource | str | int | os.PathLike


class Pipeline:
    """Sources → one shared detector (batched) + a tracker per source → sinks.

    Args:
        sources: :class:`FrameSource` objects or specs for :func:`open_source`.
        detector: a :class:`~livefaces.Detector` (shared by all sources); None makes one.
        policy: which frames to detect (:mod:`livefaces.schedule`); default :class:`Adaptive`.
        sinks: receivers of results and events (:class:`~livefaces.publish.Sink`).
        capture: capture options (timeouts, backoff, ring size).
        tracker: tracker options.
        update_interval: at most one ``face.updated`` per track per this many seconds.
        max_frames: stop after this many results (all sources together).
        duration: stop after this many seconds.
        source_options: keyword arguments for :func:`open_source` when specs are given.
        source_scale: extra detector input scale per source name (≤ 1), on top of the
            policy's; e.g. ``min_face_of_detector / min_face_of_camera`` lets one detector
            serve cameras that want different minimum face sizes.
        clock: monotonic clock (tests may inject one).
    """

    def __init__(self, sources: Sequence[SourceLike], detector: Any = None, *,
                 policy: DetectPolicy | None = None, sinks: Sequence[Sink] = (),
                 capture: CaptureOptions | None = None, tracker: TrackerOptions | None = None,
                 update_interval: float = 1.0, max_frames: int | None = None,
                 duration: float | None = None, source_options: dict[str, Any] | None = None,
                 source_scale: dict[str, float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not sources:
            raise ValueError("Pipeline needs at least one source")
        self.detector = detector
        self.source_scale = dict(source_scale or {})
        self.policy = policy or Adaptive()
        self.capture_options = capture or CaptureOptions()
        self.tracker_options = tracker or TrackerOptions()
        self.max_frames = max_frames
        self.duration = duration
        self._clock = clock
        self._stop = threading.Event()
        self._done = threading.Event()
        self._cond = threading.Condition()
        self._limiter = UpdateLimiter(update_interval)
        self.output_closed = False
        self._runners = [SinkRunner(s, self._stop, self._on_output_closed) for s in sinks]
        self._srcs: list[_Src] = []
        self._started_at: float | None = None
        self._processed = 0
        self.limit_reached = False
        self._thread = threading.Thread(target=self._loop, name="detect", daemon=True)
        self._crash: str | None = None
        names: set[str] = set()
        for spec in sources:
            src = spec if isinstance(spec, FrameSource) else open_source(spec, **(source_options or {}))
            name, n = src.name, 2
            while name in names:  # two sources with one name: keep them apart
                name, n = f"{src.name}#{n}", n + 1
            src.name = name
            names.add(name)
            ring: RingBuffer[Frame] = RingBuffer(self.capture_options.capacity,
                                                  "drop_oldest" if src.live else "wait",
                                                  notify=self._cond)
            worker = CaptureWorker(src, ring, self._stop, self.capture_options, self._on_status)
            # a folder of photos: each image stands alone (no motion, no identity between
            # them), so every image is detected and its faces get fresh tracks
            stills = bool(getattr(src, "stills", False))
            topts = replace(self.tracker_options, min_hits=1) if stills else self.tracker_options
            self._srcs.append(_Src(src, ring, worker, Tracker(topts), src.live, stills))

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Pipeline:
        """Start the sink, detect and capture threads (creates the detector if needed)."""
        if self.detector is None:
            from .detect import Detector

            self.detector = Detector()
        self._started_at = self._clock()
        for r in self._runners:
            r.start()
        self._thread.start()
        for s in self._srcs:
            s.worker.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every source has ended/failed, a limit was reached, or :meth:`stop`;
        True if so, False on timeout."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def request_stop(self) -> None:
        """Ask every thread to stop (returns at once; signal handlers may call it)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop every thread and close every sink (recordings finalised); True if everything
        ended within ``timeout`` seconds (threads left over are daemons and die with the
        process)."""
        deadline = time.monotonic() + timeout
        self.request_stop()
        ok = True
        for s in self._srcs:
            ok &= s.worker.join(max(0.0, deadline - time.monotonic() - 0.5 * timeout))
            s.ring.close()
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join(max(0.0, deadline - time.monotonic() - 0.3 * timeout))
            ok &= not self._thread.is_alive()
        for r in self._runners:
            ok &= r.close(max(0.05, deadline - time.monotonic()))
        self._done.set()
        if not ok:
            log.warning("some threads did not stop within %.1f s", timeout)
        return ok

    def run(self) -> PipelineStats:
        """start(), wait() until the sources end or a limit is reached, stop(); the stats."""
        self.start()
        try:
            self.wait()
        finally:
            self.stop()
        return self.stats()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- statistics ----------------------------------------------------------------------------
    def stats(self) -> PipelineStats:
        now = self._clock()
        out = []
        for s in self._srcs:
            w = s.worker
            p50, p95 = s.latency.percentiles_ms(50, 95)
            out.append(SourceStats(
                name=s.source.name, status=w.status, live=s.live, frames_captured=w.frames,
                frames_processed=s.processed, frames_detected=s.detected, frames_tracked=s.tracked,
                dropped=s.ring.dropped, reconnects=w.reconnects,
                capture_fps=w.rate.rate(now), detect_fps=s.detect_rate.rate(now),
                output_fps=s.output_rate.rate(now), latency_ms_p50=p50, latency_ms_p95=p95,
                last_frame_age=None if w.last_frame is None else now - w.last_frame,
                faces=s.faces, error=w.error or self._crash,
                detect_interval_s=s.tracker.detect_interval, detect_expected_s=s.expected_interval,
                detect_behind=s.behind,
                busy_s=None if s.last_output is None or self._started_at is None
                else s.last_output - self._started_at))
        sinks = tuple(SinkStats(r.name, r.results_dropped, r.events_dropped, r.errors, r.error,
                                r.output_closed)
                      for r in self._runners)
        return PipelineStats(tuple(out), sinks, self.policy.detect_seconds, self.policy.scale,
                             self.policy.describe(), not self._done.is_set(),
                             0.0 if self._started_at is None else now - self._started_at)

    # -- events --------------------------------------------------------------------------------
    def _on_output_closed(self, sink: str) -> None:
        """A sink's reader went away (``watch --events - | head``): a normal, clean stop."""
        log.info("%s: output closed by its reader; stopping", sink)
        self.output_closed = True
        self.request_stop()

    def _publish(self, event: dict[str, Any]) -> None:
        for r in self._runners:
            r.put_event(event)

    def _on_status(self, name: str, before: str | None, after: str, detail: str | None) -> None:
        s = next((x for x in self._srcs if x.source.name == name), None)
        extra: dict[str, Any] = {}
        if s is not None:
            extra = {"frames": s.worker.frames, "dropped": s.ring.dropped,
                     "reconnects": s.worker.reconnects}
            if after in ("stalled", "reconnecting"):
                s.flush_reason = "source_lost"
        self._publish(status_event(name, before, after, detail, **extra))
        with self._cond:
            self._cond.notify_all()

    def _face_events(self, s: _Src, frame: Frame, upd: TrackUpdate) -> list[dict[str, Any]]:
        events = []
        wall = time.time()
        captured_wall = wall - (self._clock() - frame.captured)
        h, w = frame.image.shape[:2]
        for tr in upd.lost:
            events.append(self._lost_event(s, tr, "timeout", wall))
        appeared = set(upd.appeared)
        for i, tid in enumerate(upd.ids.tolist()):
            is_new = tid in appeared
            if upd.detected[i]:
                s.last_seen[tid] = {"i": i, "frame": frame, "wall": captured_wall, "upd": upd}
            if not is_new and not (upd.detected[i] and self._limiter.allow(s.source.name, tid,
                                                                            frame.captured)):
                continue
            st = face_state(upd.faces.boxes[i], upd.faces.scores[i], upd.faces.landmarks[i],
                            detected=bool(upd.detected[i]), frame_index=frame.index, pts=frame.pts,
                            captured_wall=captured_wall, width=w, height=h)
            if is_new:
                s.first_seen[tid] = wall
                self._limiter.allow(s.source.name, tid, frame.captured)
            events.append(face_event(FACE_APPEARED if is_new else FACE_UPDATED, s.source.name, tid,
                                     st, s.states.get(tid), first_seen_wall=s.first_seen[tid],
                                     now_wall=wall))
            s.states[tid] = st
        return events

    def _lost_event(self, s: _Src, tr: Track, reason: str, wall: float) -> dict[str, Any]:
        before = s.states.pop(tr.id, None)
        first = s.first_seen.pop(tr.id, wall)
        self._limiter.forget(s.source.name, tr.id)
        seen = s.last_seen.pop(tr.id, None)
        if seen is not None:  # the last frame on which the detector saw it
            f, u, i = seen["frame"], seen["upd"], seen["i"]
            st = face_state(u.faces.boxes[i], u.faces.scores[i], u.faces.landmarks[i],
                            detected=True, frame_index=f.index, pts=f.pts,
                            captured_wall=seen["wall"], width=f.image.shape[1],
                            height=f.image.shape[0])
        else:
            st = dict(before) if before else {}
        ev = face_event(FACE_LOST, s.source.name, tr.id, st, before, first_seen_wall=first,
                        now_wall=wall)
        ev["reason"] = reason
        return ev

    def _flush(self, s: _Src, reason: str) -> None:
        wall = time.time()
        for tr in s.tracker.clear():
            self._publish(self._lost_event(s, tr, reason, wall))
        s.faces = 0

    # -- the detect loop -----------------------------------------------------------------------
    def _check_rate(self, s: _Src, now: float) -> None:
        """One WARNING per episode in which a live source's detections fall well behind what
        the policy asks for (and an INFO when they catch up)."""
        interval = s.tracker.detect_interval
        rate = s.worker.rate.rate(now)
        s.expected_interval = expected = self.policy.expected_interval(1.0 / rate if rate else None)
        if not s.live or interval is None or expected is None or s.detected < 5:
            return
        if not s.behind and interval > 2.0 * expected + 0.1:
            s.behind = True
            log.warning("%s: the detector runs every %.2f s, the schedule (%s) asks for every "
                        "%.2f s; it cannot keep up (busy CPU, many sources or large frames): "
                        "faces are carried by the tracker meanwhile", s.source.name, interval,
                        self.policy.describe(), expected)
        elif s.behind and interval < 1.5 * expected + 0.05:
            s.behind = False
            log.info("%s: detection keeps up again (every %.2f s)", s.source.name, interval)

    def _emit(self, s: _Src, frame: Frame, faces: Faces | None) -> None:
        t = frame.pts if (not s.live and frame.pts is not None) else frame.captured
        if s.stills and faces is not None and s.tracker.tracks:
            self._flush(s, "next_image")  # the previous photo's faces end with it
        upd = s.tracker.update(faces, t) if faces is not None else s.tracker.predict(t)
        result = FrameResult(frame, upd.faces, faces is not None, upd.ids, upd.detected)
        events = self._face_events(s, frame, upd)
        for r in self._runners:
            for e in events:
                r.put_event(e)
            r.put_result(result)
        now = self._clock()
        s.last_output = now
        s.latency.add(now - frame.captured)
        s.output_rate.tick(now)
        s.processed += 1
        s.faces = len(upd.faces)
        if faces is not None:
            s.detected += 1
            s.detect_rate.tick(now)
            self._check_rate(s, now)
        else:
            s.tracked += 1
        self._processed += 1

    def _limits_hit(self) -> bool:
        if self.max_frames is not None and self._processed >= self.max_frames:
            return True
        return (self.duration is not None and self._started_at is not None
                and self._clock() - self._started_at >= self.duration)

    def _detect(self, frames: list[Frame]) -> list[Faces]:
        scales = [min(1.0, self.policy.scale * self.source_scale.get(f.source, 1.0)) for f in frames]
        t0 = self._clock()
        found = detect_scaled(self.detector, [f.image for f in frames], scales)
        self.policy.observe(self._clock() - t0)
        return found

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                with self._cond:
                    if not any(len(s.ring) or s.ring.closed or s.flush_reason
                               for s in self._srcs if not s.finished):
                        self._cond.wait(0.1)
                if self._limits_hit():
                    self.limit_reached = True
                    break
                plan: list[tuple[_Src, list[tuple[Frame, bool]]]] = []
                due: list[Frame] = []
                budget = None if self.max_frames is None else self.max_frames - self._processed
                for s in self._srcs:
                    if s.finished:
                        continue
                    if s.flush_reason:
                        self._flush(s, s.flush_reason)
                        s.flush_reason = None
                    try:
                        frames = s.ring.get_all()
                    except Closed:
                        s.finished = True
                        self._flush(s, "source_ended")
                        continue
                    if budget is not None:
                        frames = frames[:max(0, budget)]
                        budget -= len(frames)
                    if not frames:
                        continue
                    flags = []
                    for i, f in enumerate(frames):
                        now = f.pts if (not s.live and f.pts is not None) else self._clock()
                        d = s.stills or ((not s.live or i == len(frames) - 1)
                                         and self.policy.due(f, s.live, now))
                        if d:
                            self.policy.detected(f, now)
                        flags.append(d)
                    k = flags.index(True) if True in flags else len(frames)
                    for f in frames[:k]:  # before the first detection: out at once
                        self._emit(s, f, None)
                    if k < len(frames):
                        plan.append((s, list(zip(frames[k:], flags[k:], strict=False))))
                        due += [f for f, d in zip(frames[k:], flags[k:], strict=False) if d]
                found = dict(zip(map(id, due), self._detect(due), strict=False)) if due else {}
                for s, items in plan:
                    for f, d in items:
                        self._emit(s, f, found[id(f)] if d else None)
                if all(s.finished for s in self._srcs):
                    break
        except Exception as e:  # noqa: BLE001 - report, and let stop() close everything
            log.exception("detect loop crashed")
            self._crash = f"internal error in the detect loop: {type(e).__name__}: {e}"
        finally:
            for s in self._srcs:
                if s.tracker.tracks:
                    self._flush(s, "stopped")
            self._done.set()


def stream(source: SourceLike, *, detector: Any = None, policy: DetectPolicy | None = None,
           capture: CaptureOptions | None = None, tracker: TrackerOptions | None = None,
           max_frames: int | None = None, duration: float | None = None, buffer: int = 32,
           **source_options: Any) -> Iterator[FrameResult]:
    """Iterate over the results of one source::

        for result in livefaces.stream("rtsp://cam/stream", duration=10):
            print(result.frame.index, result.track_ids, result.faces.boxes)

    Files and folders lose no frame (the pipeline waits for you); live sources drop the
    oldest undelivered results if you fall behind (``buffer`` results are kept). Raises
    :class:`~livefaces.errors.SourceError` if the source cannot be opened or fails.
    Leaving the loop early (``break``) stops every thread.
    """
    src = source if isinstance(source, FrameSource) else open_source(source, **source_options)
    q = QueueSink(buffer, "drop_oldest" if src.live else "wait")
    p = Pipeline([src], detector, policy=policy, sinks=[q], capture=capture, tracker=tracker,
                 max_frames=max_frames, duration=duration)
    p.start()
    stopper: threading.Thread | None = None
    try:
        while True:
            try:
                r = q.queue.get(timeout=0.2)
            except Closed:
                break
            if r is not None:
                yield r
            elif p.done and stopper is None:  # drain the sink while stop() closes it
                stopper = threading.Thread(target=p.stop, name="stream-stop", daemon=True)
                stopper.start()
    finally:
        p.stop()
    st = p.stats().source()
    if st.status == "failed":
        raise SourceError(st.error or f"{st.name}: failed")
