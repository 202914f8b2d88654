"""The live pipeline: the composition root that owns every thread.

::

    source ─► CaptureWorker ─► RingBuffer ┐
    source ─► CaptureWorker ─► RingBuffer ┼─► detect loop ─► SinkRunner ─► sink (jsonl, window, mp4, ...)
    source ─► CaptureWorker ─► RingBuffer ┘   (ONE Detector,  SinkRunner ─► sink
                                               batched across sources; a Tracker per source)

* One :class:`Camera` per source, built from its :class:`CameraOptions`: it owns the
  capture worker, ring buffer, schedule state, detector scale, tracker, face-event state
  (:class:`~livefaces.events.FaceEvents`) and counters.
* One capture thread per source (never waits for the consumer on live sources; drops are
  counted by the ring buffer).
* One detect loop thread shared by all sources: it takes what each ring holds, lets the
  :mod:`~livefaces.schedule` policy choose which frames go through the detector, runs them
  as ONE :meth:`Detector.detect_batch` call (mixed sizes), and carries faces on the other
  frames with the source's :class:`~livefaces.track.Tracker`. Every captured frame that
  reaches the loop becomes a :class:`FrameResult`, in order per source.
* Each sink runs on its own thread behind bounded queues (:class:`SinkRunner`); every
  ``stats_interval`` seconds it also gets a frozen :class:`PipelineStats` (``on_stats``).
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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .capture import CaptureOptions, CaptureWorker
from .detect.engine import Engine
from .detect.rescale import detect_scaled, refine
from .errors import SourceError
from .events import EVENT_MIN_SCORE, FACE_EVENTS, FACE_LOST, FaceEvents, status_event
from .health import Watch
from .meter import Latency, RateMeter
from .motion import MotionDetector, MotionOptions
from .publish import Sink, SinkRunner
from .publish.memory import QueueSink
from .ringbuffer import Closed, RingBuffer
from .schedule import (
    REFINE_BACKLOG,
    Action,
    Adaptive,
    DetectPolicy,
    DetectSchedule,
    FrameState,
    GateOptions,
    plan,
)
from .sources import FrameSource, open_source
from .track import Track, Tracker, TrackerOptions
from .types import (
    Faces,
    Frame,
    FrameResult,
    Identifier,
    PipelineStats,
    SinkStats,
    SourceStats,
    Status,
    TrackIdentities,
    source_stills,
)

log = logging.getLogger(__name__)


SourceLike = FrameSource | str | int | os.PathLike


@dataclass(frozen=True)
class CameraOptions:
    """Everything that is one camera's own (Frigate's ``CameraConfig.detect``).

    Attributes:
        source: a :class:`FrameSource` or a spec for :func:`open_source`.
        name: the name used in events, stats, topics and labels (default: the source's).
        detect_fps: this camera's detections per second under :class:`PerCameraRate`
            (None: the policy's own rule).
        scale: extra detector input scale (≤ 1) on top of the policy's, e.g.
            ``min_face_of_detector / min_face_of_camera``: one detector serves cameras that
            want different minimum face sizes (bigger faces are found on smaller images).
        tracker: tracker options (None: the pipeline's).
        update_interval: at most one ``face.updated`` per track per this many seconds
            (None: the pipeline's).
        gate: motion gating and refinement (None: the pipeline's).
    """

    source: SourceLike
    name: str | None = None
    detect_fps: float | None = None
    scale: float = 1.0
    tracker: TrackerOptions | None = None
    update_interval: float | None = None
    gate: GateOptions | None = None


Refinements = list[tuple[Track, Faces]]
#: With refinement on, a tracked face the networks have not seen for this many seconds is not
#: shown (results, events, drawings); its track waits for it (a few frames) or ends.
MAX_CARRIED = 0.25


class Camera:
    """One source and everything that is its own: capture worker, ring buffer, schedule state,
    detector scale, tracker, face-event state and counters. Built by :class:`Pipeline`; read
    and written by its detect loop only (the capture worker writes its own counters)."""

    def __init__(self, source: FrameSource, options: CameraOptions, *, capture: CaptureOptions,
                 tracker: TrackerOptions, update_interval: float, stop: threading.Event,
                 notify: threading.Condition,
                 on_status: Callable[[Camera, Status | None, Status, str | None], None],
                 clock: Callable[[], float], gate: GateOptions | None = None,
                 motion: MotionOptions | None = None,
                 event_min_score: float = EVENT_MIN_SCORE) -> None:
        self.source = source
        self.name = source.name
        self.options = options
        self.live = source.live
        # a folder of photos: each image stands alone (no motion, no identity between them),
        # so every image is detected and its faces get fresh tracks
        self.stills = source_stills(source)
        self.scale = min(1.0, options.scale)
        self.schedule = DetectSchedule(fps=options.detect_fps)
        self.ring: RingBuffer[Frame] = RingBuffer(capture.capacity,
                                                  "drop_oldest" if self.live else "wait",
                                                  notify=notify)
        self.worker = CaptureWorker(source, self.ring, stop, capture,
                                    lambda _name, before, after, detail:
                                    on_status(self, before, after, detail))
        self.gate = options.gate or gate or GateOptions()
        topts = options.tracker or tracker
        if self.stills:
            topts = replace(topts, min_hits=1)
        if self.gate.refine and topts.max_carried is None:
            # refined faces are verified on (nearly) every frame: a box the networks have not
            # seen for a few frames is not shown (its track lives on until it is found again)
            topts = replace(topts, max_carried=MAX_CARRIED)
        self.tracker = Tracker(topts)
        self.events = FaceEvents(self.name, update_interval if options.update_interval is None
                                 else options.update_interval, clock=clock,
                                 min_score=event_min_score)
        # live sources: motion (for the gate) and scene cuts (always: no track, name or
        # unblurred face may cross a cut, gated or not)
        self.motion = MotionDetector(motion or MotionOptions()) if self.live else None
        self.last_full: float | None = None  # capture time of the last full detection
        self.last_refine: float | None = None
        self.searching = False  # a tracked face was not found where expected: detect again
        self.finished = False
        self.expected_interval: float | None = None
        # is this camera keeping up? (livefaces.health: one WARNING per episode, INFO at its end)
        self._carried_watch = Watch(
            lambda n, m, _t: f"{n}: only {100 * m:.0f} % of the frames with faces are checked by "
                             "the networks, the others carried by the tracker: the CPU cannot keep "
                             "up (many faces, sources or large frames)",
            lambda n, m, _t: f"{n}: the networks check the faces on {100 * m:.0f} % of the frames "
                             "again", window=2.0, low=0.5, high=0.8, clock=clock)
        self._detect_watch = Watch(
            lambda n, m, t: f"{n}: the detector runs every {1 / m:.2f} s, the schedule asks for "
                            f"every {1 / t - 0.05:.2f} s; it cannot keep up (busy CPU, many sources "
                            "or large frames): faces are carried by the tracker meanwhile",
            lambda n, m, _t: f"{n}: detection keeps up again (every {1 / m:.2f} s)",
            window=3.0, low=0.5, high=0.67, clock=clock)
        self.last_output: float | None = None
        self.flush_reason: str | None = None
        self.processed = 0
        self.detected = 0
        self.refined = 0
        self.tracked = 0
        self.skipped = 0
        self.faces = 0
        self.detect_rate = RateMeter()
        self.verified_rate = RateMeter()
        self.checked_rate = RateMeter()  # verified, or skipped by the motion gate
        self.output_rate = RateMeter()
        self.latency = Latency()  # capture → result handed to the sinks
        self.votes: TrackIdentities | None = None  # this camera's side of live identification

    def with_identity(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Face events get their track's ``identity``; a lost track's votes are forgotten."""
        if self.votes is None:
            return events
        for e in events:
            if e.get("type") in FACE_EVENTS and "identity" not in e:
                tid = int(e["track_id"])
                e["identity"] = self.votes.identity(tid).to_json()
                if e["type"] == FACE_LOST:
                    self.votes.forget(tid)
        return events

    def clear(self, reason: str) -> list[dict[str, Any]]:
        """Drop every track; their ``face.lost`` events with ``reason``."""
        self.faces = 0
        return self.with_identity(self.events.clear(reason, [tr.id for tr in self.tracker.clear()]))

    def time_of(self, frame: Frame) -> float:
        """The tracker's clock for ``frame``: stream time for files, capture time if live."""
        return frame.pts if (not self.live and frame.pts is not None) else frame.captured

    def plan(self, frame: Frame, now: float, tracks: bool, newest: bool, backlog: bool,
             policy: DetectPolicy) -> tuple[Action, bool]:
        """What ``frame`` goes through (:func:`livefaces.schedule.plan` on this camera's
        state) and whether it is a scene cut. ``tracks``: faces were tracked before this
        batch; ``newest``: the newest frame waiting; ``backlog``: an older one, only carried."""
        m = self.motion.measure(frame.image) if self.motion is not None else None
        cut = bool(m is not None and m.cut and frame.index > 0 and self.processed > 0)
        outside = None
        if m is not None and tracks and not cut:
            outside = m.outside(np.array([tr.box for tr in self.tracker.tracks],
                                         np.float32).reshape(-1, 4))
        state = FrameState(
            live=self.live, stills=self.stills, tracks=tracks and not cut,
            since_full=None if self.last_full is None else frame.captured - self.last_full,
            motion=None if m is None else m.moving, motion_outside=outside, cut=cut,
            searching=self.searching, newest=newest or cut, backlog=backlog and not cut,
            since_refine=None if self.last_refine is None else now - self.last_refine)
        # a scene cut is answered with a full detection, whatever the policy's rate
        act = plan(self.gate, state, lambda: cut or policy.due(frame, self.live, now, self.schedule))
        if act is Action.DETECT:
            policy.detected(frame, now, self.schedule)
            self.last_full = frame.captured
            self.searching = False
        elif act is Action.REFINE:
            self.last_refine = now
        return act, cut

    def predictions(self, frame: Frame) -> list[tuple[Track, np.ndarray]]:
        """Where each tracked face is expected on ``frame``."""
        return self.tracker.predictions(self.time_of(frame))

    def step(self, frame: Frame, action: Action, found: Faces | Refinements | None,
             cut: bool = False, blind_below: float = 0.0) -> tuple[list[dict[str, Any]], FrameResult]:
        """One frame through the tracker: ``found`` is the detector's faces (``DETECT``)
        or the faces found in each track's region (``REFINE``); ``blind_below``: the smallest
        face size the full detection reliably sees (it ran on a shrunk image). Returns the face
        events (a new photo of a folder, or a scene cut, first ends the faces before it) and
        the result."""
        t = self.time_of(frame)
        events = []
        if cut and self.tracker.tracks:
            events = self.clear("scene_cut")  # another scene: nobody carries over
        if action is Action.DETECT:
            assert isinstance(found, Faces)
            if self.stills and self.tracker.tracks:
                events = self.clear("next_image")  # the previous photo's faces end with it
            upd = self.tracker.update(found, t, blind_below)
        elif action is Action.REFINE:
            assert isinstance(found, list)
            upd = self.tracker.refine(found, t)
            if upd.missed:
                self.searching = True
        else:
            upd = self.tracker.predict(t)
        self.faces = len(upd.faces)
        result = FrameResult(frame, upd.faces, track_ids=upd.ids, how=upd.how, mode=action.mode,
                             cut=cut, unshown=upd.unshown)
        events = events + self.events.update(frame, upd)
        if self.votes is not None:
            self.votes.observe(result, t)
            result = replace(result, identities=self.votes.identities(result))
        return self.with_identity(events), result

    def delivered(self, result: FrameResult, now: float, policy: DetectPolicy) -> None:
        """Count a result handed to the sinks at ``now``; judge whether detection keeps up."""
        frame = result.frame
        self.last_output = now
        self.latency.add(now - frame.captured)
        self.output_rate.tick(now)
        self.processed += 1
        mode = result.mode
        if mode == "detected":
            self.detected += 1
            self.detect_rate.tick(now)
            self.verified_rate.tick(now)
            self.checked_rate.tick(now)
        elif mode == "refined":
            self.refined += 1
            self.verified_rate.tick(now)
            self.checked_rate.tick(now)
        elif mode == "skipped":
            self.skipped += 1
            self.checked_rate.tick(now)
        else:
            self.tracked += 1
        if self.gate.refine and self.gate.refine_fps is None:
            if len(result.faces):
                self._judge_carried(mode == "tracked")
        elif mode == "detected":
            self._judge_detect_rate(policy, now)

    def _judge_carried(self, carried: bool) -> None:
        """With refinement on every frame: is the share of frames with faces that the
        networks checked more than half (:mod:`livefaces.health`)?"""
        if self.live:
            self._carried_watch.update(self.name, 1.0, 0.0 if carried else 1.0)

    def _judge_detect_rate(self, policy: DetectPolicy, now: float) -> None:
        """Do a live source's full detections keep up with what the policy asks for?"""
        interval = self.tracker.detect_interval
        rate = self.worker.rate.rate(now)
        self.expected_interval = expected = policy.expected_interval(1.0 / rate if rate else None)
        if not self.live or interval is None or expected is None or self.detected < 5:
            return
        self._detect_watch.update(self.name, 1.0 / (expected + 0.05), 1.0 / interval)

    def stats(self, now: float, started_at: float | None, crash: str | None) -> SourceStats:
        """This camera's snapshot (``crash``: the detect loop's error, if it died)."""
        w = self.worker
        p50, p95 = self.latency.percentiles_ms(50, 95)
        return SourceStats(
            name=self.name, status=w.status, live=self.live, frames_captured=w.frames,
            frames_processed=self.processed, frames_detected=self.detected,
            frames_tracked=self.tracked, frames_refined=self.refined,
            frames_skipped=self.skipped, verified_fps=self.verified_rate.rate(now),
            checked_fps=self.checked_rate.rate(now),
            latency_ms_run=self.latency.run_ms(),
            dropped=self.ring.dropped, reconnects=w.reconnects,
            capture_fps=w.rate.rate(now), detect_fps=self.detect_rate.rate(now),
            output_fps=self.output_rate.rate(now), latency_ms_p50=p50, latency_ms_p95=p95,
            last_frame_age=None if w.last_frame is None else now - w.last_frame,
            faces=self.faces, error=w.error or crash,
            detect_interval_s=self.tracker.detect_interval,
            detect_expected_s=self.expected_interval,
            busy_s=None if self.last_output is None or started_at is None
            else self.last_output - started_at)




#: Seconds :meth:`Pipeline.stop` gives the sinks, after capture and detection stopped, to
#: write what they were handed and close (a recording's queue and its last fragment).
SINK_CLOSE_S = 30.0


class Pipeline:
    """Sources → one shared detector (batched) + a tracker per source → sinks.

    Args:
        sources: :class:`FrameSource` objects, specs for :func:`open_source`, or
            :class:`CameraOptions` (a source with its own settings); one :class:`Camera` each.
        detector: a :class:`~livefaces.Detector` (shared by all sources); None makes one.
        policy: which frames to detect (:mod:`livefaces.schedule`); default :class:`Adaptive`.
        sinks: receivers of results and events (:class:`~livefaces.publish.Sink`).
        capture: capture options (timeouts, backoff, ring size).
        tracker: tracker options (cameras without their own).
        update_interval: at most one ``face.updated`` per track per this many seconds
            (cameras without their own).
        event_min_score: a track gets events only once the detector scored it at least this
            (default :data:`~livefaces.events.EVENT_MIN_SCORE`, 0.9: hands, hair or a microphone
            the detector boxes score lower than faces; 0 keeps every track; docs/events.md).
        max_frames: stop after this many results (all sources together).
        duration: stop after this many seconds.
        source_options: keyword arguments for :func:`open_source` when specs are given.
        gate: motion gating and refinement of tracked faces on live sources
            (:class:`~livefaces.schedule.GateOptions`; default: both on).
        motion: the motion measure's thresholds (:class:`~livefaces.motion.MotionOptions`).
        stats_interval: seconds between the :class:`PipelineStats` snapshots handed to every
            sink (:meth:`Sink.on_stats`; one more when the pipeline stops).
        identifier: live identification (a
            :class:`~livefaces.identify.live.LiveIdentifier`): each track gets an identity
            from votes over its frames (:attr:`FrameResult.identities`, ``identity`` in face
            events, ``face.identified``). Started by :meth:`start` unless it is already,
            closed by :meth:`stop`.
        clock: monotonic clock (tests may inject one).

    Attributes:
        limit_reached: the run stopped at ``max_frames`` or ``duration`` (the CLI does not
            call a file cut short then).
        output_closed: a sink's reader went away (``| head``) and the run stopped.
    """

    def __init__(self, sources: Sequence[SourceLike | CameraOptions], detector: Engine | None = None, *,
                 policy: DetectPolicy | None = None, sinks: Sequence[Sink] = (),
                 capture: CaptureOptions | None = None, tracker: TrackerOptions | None = None,
                 update_interval: float = 1.0, max_frames: int | None = None,
                 duration: float | None = None, source_options: dict[str, Any] | None = None,
                 gate: GateOptions | None = None, motion: MotionOptions | None = None,
                 stats_interval: float = 1.0, identifier: Identifier | None = None,
                 event_min_score: float = EVENT_MIN_SCORE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not sources:
            raise ValueError("Pipeline needs at least one source")
        self.detector = detector
        self.policy = policy or Adaptive()
        self.capture_options = capture or CaptureOptions()
        self.tracker_options = tracker or TrackerOptions()
        self.gate = gate or GateOptions()
        self.motion_options = motion or MotionOptions()
        self.refine_seconds = 0.0
        self.identifier = identifier
        self._cpu0 = 0.0
        self.max_frames = max_frames
        self.duration = duration
        self._clock = clock
        self._stop = threading.Event()
        self.stats_interval = stats_interval
        self._next_stats = 0.0
        self._done = threading.Event()
        self._cond = threading.Condition()
        self.output_closed = False
        self._runners = [SinkRunner(sink, self._stop, self._on_output_closed) for sink in sinks]
        self.cameras: list[Camera] = []
        self._started_at: float | None = None
        self._processed = 0
        self.limit_reached = False
        self._thread = threading.Thread(target=self._loop, name="detect", daemon=True)
        self._crash: str | None = None
        names: set[str] = set()
        for spec in sources:
            opts = spec if isinstance(spec, CameraOptions) else CameraOptions(spec)
            src = (opts.source if isinstance(opts.source, FrameSource)
                   else open_source(opts.source, **(source_options or {})))
            if opts.name is not None:
                src.name = opts.name
            name, n = src.name, 2
            while name in names:  # two sources with one name: keep them apart
                name, n = f"{src.name}#{n}", n + 1
            src.name = name
            names.add(name)
            cam = Camera(src, opts, capture=self.capture_options, tracker=self.tracker_options,
                         update_interval=update_interval, stop=self._stop, notify=self._cond,
                         on_status=self._on_status, clock=clock, gate=self.gate,
                         motion=self.motion_options, event_min_score=event_min_score)
            self.policy.register(name, cam.schedule)
            if identifier is not None:
                cam.votes = identifier.camera(name)
            self.cameras.append(cam)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Pipeline:
        """Start the sink, detect and capture threads (creates the detector if needed)."""
        if self.detector is None:
            from .detect.engine import make_engine

            self.detector = make_engine()
        if self.identifier is not None:
            self.identifier.start()  # no-op when started already (raises LiveFacesError)
        self._started_at = self._clock()
        self._cpu0 = time.process_time()
        for r in self._runners:
            r.start()
        self._thread.start()
        for cam in self.cameras:
            cam.worker.start()
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

    @property
    def sinks(self) -> tuple[Sink, ...]:
        """The sinks, in the order given."""
        return tuple(r.sink for r in self._runners)

    def stop(self, timeout: float = 2.0, *, sinks_timeout: float | None = None) -> bool:
        """Stop every thread and close every sink (recordings finalised); True if everything
        ended in time (threads left over are daemons and die with the process).

        Capture and detection get ``timeout`` seconds; then each sink gets what is left of
        ``sinks_timeout`` (default :data:`SINK_CLOSE_S`) to write what it was handed and
        close: at the end of a file, a recording behind a slow encoder still has its queue
        to write and its last fragment to flush. A sink that does not finish in time gets
        :attr:`SinkStats.error` (its output may be incomplete, e.g. ``OUT.part.mp4``)."""
        deadline = time.monotonic() + timeout
        self.request_stop()
        ok = True
        for cam in self.cameras:
            ok &= cam.worker.join(max(0.0, deadline - time.monotonic() - 0.5 * timeout))
            cam.ring.close()
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join(max(0.0, deadline - time.monotonic() - 0.3 * timeout))
            ok &= not self._thread.is_alive()
        self._push_stats()  # the final numbers (a summary, a last HUD frame)
        budget = SINK_CLOSE_S if sinks_timeout is None else sinks_timeout
        sinks_deadline = max(deadline, time.monotonic() + budget)
        for r in self._runners:
            if not r.close(max(0.05, sinks_deadline - time.monotonic())):
                ok = False
                r.errors += 1
                r.error = r.error or (f"did not finish within {budget:g} s of the end; its "
                                      "output may be incomplete")
        if self.identifier is not None:
            ok &= self.identifier.close(max(0.2, deadline - time.monotonic()))
        self._done.set()
        if not ok:
            log.warning("some threads did not stop within %.1f s (sinks: %.1f s)", timeout,
                        budget)
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
        for cam in self.cameras:
            out.append(cam.stats(now, self._started_at, self._crash))
        sinks = tuple(SinkStats(r.name, r.results_dropped, r.events_dropped, r.errors, r.error,
                                r.output_closed)
                      for r in self._runners)
        return PipelineStats(tuple(out), sinks, self.policy.detect_seconds, self.policy.scale,
                             self.policy.describe(), not self._done.is_set(),
                             0.0 if self._started_at is None else now - self._started_at,
                             0.0 if self._started_at is None else time.process_time() - self._cpu0,
                             None if self.identifier is None else self.identifier.stats())

    def _push_stats(self) -> None:
        st = self.stats()
        for r in self._runners:
            r.put_stats(st)

    def _stats_due(self) -> None:
        """Called by the detect loop: a snapshot to the sinks every ``stats_interval`` s."""
        now = self._clock()
        if now >= self._next_stats:
            self._next_stats = now + self.stats_interval
            self._push_stats()

    # -- events --------------------------------------------------------------------------------
    def _on_output_closed(self, sink: str) -> None:
        """A sink's reader went away (``watch --events - | head``): a normal, clean stop."""
        log.info("%s: output closed by its reader; stopping", sink)
        self.output_closed = True
        self.request_stop()

    def _publish(self, event: dict[str, Any]) -> None:
        for r in self._runners:
            r.put_event(event)

    def _on_status(self, cam: Camera, before: Status | None, after: Status,
                   detail: str | None) -> None:
        extra: dict[str, Any] = {"frames": cam.worker.frames, "dropped": cam.ring.dropped,
                                 "reconnects": cam.worker.reconnects}
        if after in (Status.STALLED, Status.RECONNECTING):
            cam.flush_reason = "source_lost"
        self._publish(status_event(cam.name, before, after, detail, **extra))
        with self._cond:
            self._cond.notify_all()

    def _identified(self) -> None:
        """Identification results that came back: ``face.identified`` for each track whose
        settled name changed (a track that ended first gets none)."""
        if self.identifier is None:
            return
        by_name = {cam.name: cam for cam in self.cameras}
        for ch in self.identifier.poll():
            cam = by_name.get(ch.camera)
            if cam is None:
                continue
            e = cam.events.identified(ch.track_id, ch.identity.to_json(), ch.previous)
            if e is not None:
                self._publish(e)

    def _flush(self, cam: Camera, reason: str) -> None:
        for e in cam.clear(reason):
            self._publish(e)

    # -- the detect loop -----------------------------------------------------------------------
    def _emit(self, cam: Camera, frame: Frame, action: Action,
              found: Faces | Refinements | None = None, cut: bool = False,
              blind_below: float = 0.0) -> None:
        events, result = cam.step(frame, action, found, cut, blind_below)
        for r in self._runners:
            for e in events:
                r.put_event(e)
            r.put_result(result)
        cam.delivered(result, self._clock(), self.policy)
        self._processed += 1

    def _limits_hit(self) -> bool:
        if self.max_frames is not None and self._processed >= self.max_frames:
            return True
        return (self.duration is not None and self._started_at is not None
                and self._clock() - self._started_at >= self.duration)

    def _detect(self, due: list[tuple[Camera, Frame]]) -> list[tuple[Faces, float]]:
        """The faces on each due frame, and the smallest face size its detection saw reliably
        (0: all; on a shrunk live frame, faces up to twice the smallest one looked for are
        found unreliably, so a miss of one says nothing)."""
        frames = [f for _, f in due]
        # the policy's scale is for live sources (a latency to keep); files are detected at
        # their own scale, full resolution unless the camera asks for less
        scales = [min(1.0, (self.policy.scale if cam.live else 1.0) * cam.scale) for cam, f in due]
        assert self.detector is not None, "start() makes the detector"
        t0 = self._clock()
        found = detect_scaled(self.detector, [f.image for f in frames], scales)
        if any(cam.live for cam, _ in due):
            self.policy.observe(self._clock() - t0)
        smallest = 2.0 * float(getattr(self.detector, "min_face_size", 20.0))
        return [(f, smallest / sc if cam.live and sc < 1.0 else 0.0)
                for f, sc, (cam, _) in zip(found, scales, due, strict=True)]

    def _refine(self, jobs: list[tuple[Frame, list[tuple[Track, np.ndarray]]]]
                ) -> list[Refinements]:
        """The face the networks find at each tracked face's predicted box, per job (one
        batched call for all)."""
        assert self.detector is not None, "start() makes the detector"
        t0 = self._clock()
        flat = [(f.image, box) for f, preds in jobs for _, box in preds]
        found = iter(refine(self.detector, flat) if flat else [])
        out = [[(tr, next(found)) for tr, _ in preds] for _, preds in jobs]
        dt = self._clock() - t0
        a = 0.2 if self.refine_seconds else 1.0
        self.refine_seconds = a * dt + (1 - a) * self.refine_seconds
        return out

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                with self._cond:
                    if not any(len(cam.ring) or cam.ring.closed or cam.flush_reason
                               for cam in self.cameras if not cam.finished):
                        self._cond.wait(0.1)
                self._identified()
                self._stats_due()
                if self._limits_hit():
                    self.limit_reached = True
                    break
                plan: list[tuple[Camera, list[tuple[Frame, Action, bool]]]] = []
                due: list[tuple[Camera, Frame]] = []
                refine: list[tuple[Frame, list[tuple[Track, np.ndarray]]]] = []
                budget = None if self.max_frames is None else self.max_frames - self._processed
                for cam in self.cameras:
                    if cam.finished:
                        continue
                    if cam.flush_reason:
                        self._flush(cam, cam.flush_reason)
                        cam.flush_reason = None
                    try:
                        frames = cam.ring.get_all()
                    except Closed:
                        cam.finished = True
                        self._flush(cam, "source_ended")
                        continue
                    if budget is not None:
                        frames = frames[:max(0, budget)]
                        budget -= len(frames)
                    if not frames:
                        continue
                    tracks = bool(cam.tracker.tracks)
                    items: list[tuple[Frame, Action, bool]] = []
                    # a live source that got ahead of the loop: only the newest few frames
                    # get network work; older ones are carried (latency stays bounded)
                    first = len(frames) - REFINE_BACKLOG if cam.live else 0
                    after_cut = False
                    for i, f in enumerate(frames):
                        now = cam.time_of(f) if not cam.live else self._clock()
                        if after_cut:  # the cut'cam detection comes first: carry its faces
                            if cam.motion is not None:
                                cam.motion.measure(f.image)
                            items.append((f, Action.TRACK, False))
                            continue
                        act, cut = cam.plan(f, now, tracks, i == len(frames) - 1, i < first,
                                          self.policy)
                        items.append((f, act, cut))
                        after_cut = cut
                        if act is Action.DETECT:
                            due.append((cam, f))
                            tracks = True  # a detection may start tracks for the frames after it
                        elif act is Action.REFINE:
                            refine.append((f, cam.predictions(f)))
                    k = next((i for i, (_, a, _c) in enumerate(items)
                              if a in (Action.DETECT, Action.REFINE)), len(items))
                    for f, a, c in items[:k]:  # before the first network call: out at once
                        self._emit(cam, f, a, None, c)
                    if k < len(items):
                        plan.append((cam, items[k:]))
                found = (dict(zip((id(f) for _, f in due), self._detect(due), strict=False))
                         if due else {})
                refined = (dict(zip((id(f) for f, _ in refine), self._refine(refine), strict=True))
                           if refine else {})
                for cam, todo in plan:
                    for f, a, c in todo:
                        if a is Action.DETECT:
                            faces, blind = found[id(f)]
                            self._emit(cam, f, a, faces, c, blind)
                        else:
                            self._emit(cam, f, a, refined.get(id(f)) if a is Action.REFINE else None, c)
                if all(cam.finished for cam in self.cameras):
                    break
        except Exception as e:  # noqa: BLE001 - report, and let stop() close everything
            log.exception("detect loop crashed")
            self._crash = f"internal error in the detect loop: {type(e).__name__}: {e}"
        finally:
            for cam in self.cameras:
                if cam.tracker.tracks:
                    self._flush(cam, "stopped")
            self._done.set()


def stream(source: SourceLike, *, detector: Engine | None = None, policy: DetectPolicy | None = None,
           capture: CaptureOptions | None = None, tracker: TrackerOptions | None = None,
           max_frames: int | None = None, duration: float | None = None, buffer: int = 32,
           people: str | os.PathLike[str] | None = None,
           **source_options: Any) -> Iterator[FrameResult]:
    """Iterate over the results of one source::

        for result in livefaces.stream("rtsp://cam/stream", duration=10):
            print(result.frame.index, result.track_ids, result.faces.boxes)

    Files and folders lose no frame (the pipeline waits for you); live sources drop the
    oldest undelivered results if you fall behind (``buffer`` results are kept). Raises
    :class:`~livefaces.errors.SourceError` if the source cannot be opened or fails.
    Leaving the loop early (``break``) stops every thread. ``people`` (a folder made by
    ``livefaces people add``; needs the ``identify`` extra) names tracked faces:
    ``result.identities``.
    """
    identifier = None
    if people is not None:
        from .identify.live import LiveIdentifier

        identifier = LiveIdentifier(people)
    src = source if isinstance(source, FrameSource) else open_source(source, **source_options)
    q = QueueSink(buffer, "drop_oldest" if src.live else "wait")
    p = Pipeline([src], detector, policy=policy, sinks=[q], capture=capture, tracker=tracker,
                 max_frames=max_frames, duration=duration, identifier=identifier)
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
    if st.status == Status.FAILED:
        raise SourceError(st.error or f"{st.name}: failed")
