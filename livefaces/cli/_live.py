"""What ``livefaces watch`` and ``livefaces preview`` share: options, pipeline, signals."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..capture import CaptureOptions
from ..errors import LiveFacesError
from ..events import EVENT_MIN_SCORE
from ..imageio import make_folder
from ..motion import MotionOptions
from ..schedule import Adaptive, DetectPolicy, EveryN, FixedRate, GateOptions
from ..types import PipelineStats, Status, source_fps
from ._common import (
    COUNT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_PIPE,
    EXIT_SETUP,
    POSITIVE,
    SCORE,
    SECONDS,
    Number,
    add_detector_arguments,
    add_max_pixels_argument,
    error,
    say,
    say_if_possible,
    silence_stdout,
)

if TYPE_CHECKING:
    from ..pipeline import Pipeline

SOURCE_HELP = """\
sources:
  0, /dev/video0                 webcam
  clip.mp4                       video file (--loop to repeat, --realtime to pace it)
  rtsp://USER:PASS@host/path     RTSP/RTSPS camera (TCP; --transport udp for UDP)
  http(s)://host/stream          HTTP(S) stream (HLS, MJPEG, MP4)
  photos/                        folder of images, in name order
  synthetic:1280x720@25          a moving test face, no hardware needed
  (none)                         the bundled demo clip
credentials in URLs are never printed, logged or written into events.
"""


def demo_clip() -> str:
    p = Path(str(resources.files("livefaces.data") / "demo.mp4"))
    return str(p) if p.is_file() else "synthetic:"


def add_live_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", default=None, metavar="SOURCE",
                   help="webcam number, file, folder, rtsp:// or http(s):// URL "
                        "(default: the bundled demo clip)")
    g = p.add_argument_group("source")
    g.add_argument("--transport", choices=["tcp", "udp"], default="tcp",
                   help="RTSP transport (default: tcp)")
    g.add_argument("--loop", action="store_true", help="files and folders: start over at the end")
    g.add_argument("--realtime", action="store_true",
                   help="files and folders: deliver frames at their frame rate, like a camera")
    g.add_argument("--stall-timeout", type=SECONDS, default=10.0, metavar="S",
                   help="watchdog: no frame for S seconds counts as a failure and reconnects "
                        "(default: 10)")
    g.add_argument("--open-timeout", type=SECONDS, default=10.0, metavar="S",
                   help="time allowed to connect to a stream (default: 10)")
    g.add_argument("--retry", action="store_true",
                   help="keep retrying a live source that cannot be reached at start "
                        "(default: give up with an error; after a first frame, live sources "
                        "always reconnect; a source that answers with something that is not "
                        "video, such as a login page, fails even so)")
    add_max_pixels_argument(g, "images of a folder (skipped) and video files")
    g = p.add_argument_group("detection schedule (default: adaptive)")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--detect-every", type=COUNT, metavar="N",
                   help="run the detector on every N-th frame; the tracker carries the others")
    m.add_argument("--detect-fps", type=POSITIVE, metavar="F", help="run the detector F times a second")
    m.add_argument("--latency-budget", type=Number(float, 0, lo_open=True, unit="(ms)"), default=100.0,
                   metavar="MS",
                   help="adaptive mode: keep one detection under MS milliseconds by shrinking "
                        "the image the detector sees when needed (default: 100)")
    g = p.add_argument_group(
        "motion gating and refinement (live sources)",
        "Frames without a full detection have their tracked faces checked by the networks in "
        "each face's region (refined); a still scene with no face runs the full detector only "
        "every --idle-interval seconds. Files and folders are detected on every frame (or as "
        "the schedule says) and refined in between.")
    g.add_argument("--no-motion-gating", dest="motion", action="store_false",
                   help="run the full detector as the schedule says even on a still scene")
    g.add_argument("--no-refine", dest="refine", action="store_false",
                   help="carry faces between full detections with the tracker alone")
    g.add_argument("--idle-interval", type=SECONDS, default=GateOptions().idle_interval, metavar="S",
                   help="full detection of a still scene (no motion outside tracked faces) "
                        "every S seconds (default: %(default)g)")
    g.add_argument("--full-interval", type=SECONDS, default=GateOptions().full_interval, metavar="S",
                   help="full detection every S seconds while something moves outside the "
                        "tracked faces (default: %(default)g); with no face tracked, motion gets "
                        "one as often as the schedule allows, and a scene cut or a tracked face "
                        "not found where expected gets one at once")
    g.add_argument("--motion-threshold", type=Number(float, 0, 100, hi_open=True, unit="(percent)"),
                   default=0.2, metavar="PCT",
                   help="a frame moves when more than PCT %% of it changes (default: 0.2)")
    g = p.add_argument_group(
        "known people (the identify extra)",
        "Each face track is named from votes over its frames: its first frames of adequate "
        "size, then one a second, embedded in a worker process so detection never waits; a "
        "face that matches nobody stays unknown. Events carry 'identity' and face.identified "
        "says when a track's name is settled (docs/identify.md).")
    g.add_argument("--people", type=Path, metavar="DIR",
                   help="recognise the people of this folder (made by 'livefaces people add "
                        "NAME PHOTO... --people DIR')")
    g.add_argument("--blur-unknown", action="store_true",
                   help="blur faces that are not recognised in --record and the window "
                        "(without --people: every face)")
    g = p.add_argument_group("output and limits")
    g.add_argument("--stats", type=Path, metavar="FILE.json",
                   help="at exit, write the run's statistics to FILE.json: frames, captured, "
                        "dropped, detected, refined, tracked, skipped_no_motion, latency_ms "
                        "{p50, p95, max} (capture to result), cpu_seconds")
    g.add_argument("--record", type=Path, metavar="OUT.mp4",
                   help="write an annotated MP4: OUT.part.mp4 while recording (fragmented, a "
                        "keyframe every second), renamed to OUT.mp4 when finalised (Ctrl-C, end, "
                        "--duration); after a crash or kill -9, OUT.part.mp4 plays up to about "
                        "1 s before it")
    g.add_argument("--snapshots", type=Path, metavar="DIR",
                   help="save one crop per face track into DIR: its best view (largest, most "
                        "confident, most frontal) over its first second; faces under 40 px are "
                        "skipped. Named SOURCE_trackID_frameN.jpg (SOURCE: the file's name or "
                        "the stream's host and path, short); an existing file is never replaced")
    g.add_argument("--event-min-score", type=SCORE, default=EVENT_MIN_SCORE, metavar="S",
                   help="a face track gets events and a snapshot only once the detector scores it "
                        "at least S (default: %(default)g; separate from --thresholds, which "
                        "decide what is drawn and tracked): hands, hair or a microphone the "
                        "detector boxes score lower than faces; 0 keeps every track")
    g.add_argument("--update-interval", type=Number(float, 0, unit="(seconds)"), default=1.0, metavar="S",
                   help="at most one face.updated event per face every S seconds (default: 1)")
    g.add_argument("--duration", type=SECONDS, metavar="SECONDS", help="stop after SECONDS")
    g.add_argument("--max-frames", type=COUNT, metavar="N", help="stop after N frames")
    add_detector_arguments(p)


def make_gate(args: argparse.Namespace) -> tuple[GateOptions, MotionOptions]:
    """Motion gating and refinement options from the flags (ValueError: one line)."""
    pct = args.motion_threshold
    if not 0 <= pct < 100:
        raise ValueError(f"--motion-threshold must be a percentage in [0, 100), got {pct}")
    gate = GateOptions(motion=args.motion, refine=args.refine, idle_interval=args.idle_interval,
                       full_interval=args.full_interval)
    return gate, MotionOptions(min_area=pct / 100.0)


def make_policy(args: argparse.Namespace) -> DetectPolicy:
    if args.detect_every is not None:
        return EveryN(n=args.detect_every)
    if args.detect_fps is not None:
        return FixedRate(fps=args.detect_fps)
    return Adaptive(budget=args.latency_budget / 1000.0)


#: seconds between statistics snapshots: how often the HUD (recording, window) changes
HUD_INTERVAL = 0.5


def build(args: argparse.Namespace, sinks: list[Any] | Callable[[bool], list[Any]]) -> Any:
    """``(pipeline, live)``: the pipeline for ``args`` (not started) and the source's ``live``
    flag.

    ``sinks``: a list, or a function of the source's ``live`` flag returning one (a sink whose
    drop policy depends on it: its runner takes the policy when the pipeline is built).
    Raises LiveFacesError/ValueError for unusable input (one line)."""
    from ..sources import open_source

    spec = args.source if args.source is not None else demo_clip()
    source = open_source(spec, transport=args.transport, loop=args.loop, realtime=args.realtime,
                         max_pixels=args.max_pixels)
    sinks = list(sinks(source.live) if callable(sinks) else sinks)
    try:
        policy = make_policy(args)
        gate, motion = make_gate(args)
    except ValueError as e:
        raise LiveFacesError(str(e).replace("idle_interval", "--idle-interval")
                             .replace("full_interval", "--full-interval")) from None
    if args.stats is not None:
        _check_parent(args.stats)
    capture = CaptureOptions(stall_timeout=args.stall_timeout, open_timeout=args.open_timeout,
                             retry_at_start=args.retry)
    identifier = make_identifier(args)  # before any output file is made: it may fail
    try:
        return _assemble(args, source, sinks, policy, gate, motion, capture, identifier)
    except BaseException:
        if identifier is not None:
            identifier.close()
        raise


def _check_parent(path: Path) -> None:
    """An output file's folder must already exist; one line (exit 3) when it does not."""
    if not path.parent.is_dir():
        if path.parent.exists():
            raise LiveFacesError(f"{path}: {path.parent} is a file, not a folder")
        raise LiveFacesError(f"{path}: folder {path.parent} does not exist")


def _assemble(args: argparse.Namespace, source: Any, sinks: list[Any], policy: DetectPolicy,
              gate: GateOptions, motion: MotionOptions, capture: CaptureOptions,
              identifier: Any) -> Any:
    from ..pipeline import Pipeline
    from ..publish.record import RecordSink
    from ..publish.snapshots import SnapshotSink
    from ._common import make_detector

    if args.snapshots:
        make_folder(args.snapshots, "the snapshots")  # OutputError: one line, exit 3
        sinks.append(SnapshotSink(args.snapshots, min_score=args.event_min_score))
    if args.record:
        _check_parent(args.record)
        sinks.append(RecordSink(args.record, fps=source_fps(source) or 25.0, hud=True,
                                live=source.live, blur_unknown=args.blur_unknown))
    detector = make_detector(args)
    p = Pipeline([source], detector, policy=policy, sinks=sinks, capture=capture,
                 update_interval=args.update_interval, max_frames=args.max_frames,
                 duration=args.duration, gate=gate, motion=motion, stats_interval=HUD_INTERVAL,
                 identifier=identifier, event_min_score=args.event_min_score)
    return p, source.live


def make_identifier(args: argparse.Namespace) -> Any:
    """The started :class:`~livefaces.identify.live.LiveIdentifier` of ``--people`` (None
    without it); LiveFacesError (one line) when the folder or the identify extra is unusable."""
    if getattr(args, "people", None) is None:
        return None
    from ..identify.live import LiveIdentifier

    return LiveIdentifier(args.people).start()


#: the signals that stop a command cleanly: Ctrl-C, a service manager's stop, and a hang-up
#: (the terminal or SSH session closed, 'kill -HUP'), which by default would kill the process
#: with the recording unfinished, no statistics and no MQTT 'offline'
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class Signals:
    """SIGINT/SIGTERM/SIGHUP: the first asks ``stop`` politely, the second exits at once (130).

    The one signal handling of the CLI (``watch``, ``preview``, ``serve``...): explicit
    handlers for each of :data:`STOP_SIGNALS`, as uvicorn has (a shell starts background jobs
    with SIGINT ignored, and Python then never raises KeyboardInterrupt). :attr:`signum`
    remembers the first signal, so a command can tell Ctrl-C (exit 130) from a service
    manager's SIGTERM or a hang-up (a requested stop: exit 0). Handlers are only installed
    from the main thread and are restored on exit. A SIGTERM or SIGHUP the process was
    started ignoring (``nohup``) stays ignored.
    """

    def __init__(self, stop: Callable[[], None]) -> None:
        self.stop = stop
        self.count = 0
        #: the first signal received (``signal.SIGINT`` / ``signal.SIGTERM``), None before
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if sig != signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN:
                    continue  # 'nohup livefaces watch ...': a hang-up is to be ignored, as asked
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count == 1:
            self.signum = signum
            self.stop()
            say_if_possible("livefaces: stopping (press Ctrl-C again to quit at once)")
        else:
            say_if_possible("livefaces: forced exit")
            os._exit(EXIT_INTERRUPTED)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    @property
    def interrupted(self) -> bool:
        return self.count > 0


def summary(st: PipelineStats) -> str:
    """The one-line report of the (first) source. Live sources (cameras, streams, files with
    --realtime) report latency: capture to results handed to the outputs. Files and folders
    that are not paced have no such latency (frames wait in a queue by design, so it would
    only measure the queue); they report throughput instead."""
    s = st.source()
    how = f"{s.frames_detected} detected, {s.frames_refined} refined, {s.frames_tracked} tracked"
    if s.frames_skipped:
        how += f", {s.frames_skipped} skipped: no motion"
    line = (f"livefaces: {s.name}: {s.frames_processed} frames ({how}), {s.dropped} dropped, "
            f"{s.reconnects} reconnects")
    if s.live:
        if s.latency_ms_p50 is not None:
            line += f", latency p50 {s.latency_ms_p50:.0f} ms p95 {s.latency_ms_p95:.0f} ms"
    elif s.frames_processed and s.busy_s:
        line += (f", in {s.busy_s:.1f} s ({s.frames_processed / s.busy_s:.1f} fps; "
                 f"not paced: --realtime plays it like a camera)")
    return line


def run_stats(st: PipelineStats) -> dict[str, Any]:
    """The ``--stats`` object of the (first) source: frames by how their faces were obtained,
    drops, whole-run capture → result latency and the process CPU time."""
    s = st.source()
    return {
        "source": s.name, "frames": s.frames_processed, "captured": s.frames_captured,
        "dropped": s.dropped, "detected": s.frames_detected, "refined": s.frames_refined,
        "tracked": s.frames_tracked, "skipped_no_motion": s.frames_skipped,
        "latency_ms": s.latency_ms_run, "cpu_seconds": round(st.cpu_seconds, 3),
        "wall_seconds": round(st.uptime, 3), "live": s.live, "policy": st.policy,
        **({"identify": {"requested": st.identify.requested, "dropped": st.identify.dropped,
                         "embedded": st.identify.embedded, "errors": st.identify.errors,
                         "embed_ms": None if st.identify.embed_ms is None
                         else round(st.identify.embed_ms, 1)}}
           if st.identify is not None else {}),
    }


def write_stats(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as one JSON object: a plain file atomically (a reader never sees half a
    file), a symlink, device or FIFO (``/dev/stdout``) written through, never replaced
    (:mod:`livefaces.outfile`)."""
    import json

    from ..outfile import write_output

    try:
        write_output(path, json.dumps(data, indent=1) + "\n")
    except OSError as e:
        raise LiveFacesError(f"cannot write the statistics: {e}") from None


def _file_path(p: Pipeline) -> Path | None:
    """The path of the pipeline's (first) source when it is a video file read once."""
    src = p.cameras[0].source
    path = getattr(src, "path", None)
    if not isinstance(path, Path) or getattr(src, "loop", True) or not path.is_file():
        return None
    return path


def _cut_short(p: Pipeline, frames: int) -> str | None:
    """A file that ended (no limit, no stop) before the frames its header lists: truncated
    or damaged (the decoder stopped without an error). One frame of slack, as extract."""
    path = _file_path(p)
    if path is None or p.limit_reached:
        return None
    from ..avio import declared_frames

    declared = declared_frames(path)
    if declared is None or frames >= declared - 1:
        return None
    return (f"{p.cameras[0].source.name}: truncated or damaged: it ends after {frames} of the "
            f"{declared} frames its header lists")


def finish(p: Pipeline, interrupted: bool, quiet: bool = False, stats: Path | None = None) -> int:
    """Stop ``p`` (2 s for capture and detection, then up to ``SINK_CLOSE_S`` for the outputs
    to finish), write ``stats``, report, and choose the exit code: an output left unfinished
    (``OUT.part.mp4``) or failed is exit 1, with one line each."""
    p.stop(2.0)
    st = p.stats()
    if stats is not None:
        try:
            write_stats(stats, run_stats(st))
        except LiveFacesError as e:
            error(str(e))
            return EXIT_PARTIAL
    if p.output_closed:  # '| head' has what it wanted: no summary, no error
        silence_stdout()
        return EXIT_PIPE
    s = st.source()
    for sk in st.sinks:
        if sk.error:
            error(f"{sk.name}: {sk.error}")
    # a sink that can be left unfinished (a recording) says so: RecordSink.unfinished
    unfinished = [left for sink in p.sinks
                  if callable(check := getattr(sink, "unfinished", None)) and (left := check())]
    for left in unfinished:
        error(f"the recording was not finalised: {left} is incomplete (it plays up to its "
              "last fragment)")
    cannot_start = s.status == Status.FAILED and s.frames_captured == 0
    if not quiet and not cannot_start:  # a source that never started: its error line says all
        say(summary(st))
    if interrupted:
        return EXIT_INTERRUPTED
    if s.status == Status.FAILED:
        why = s.error or f"{s.name}: failed"
        if _file_path(p) is not None and s.frames_captured:  # say how far it got
            why += f" (after {s.frames_captured} frames)"
        error(why)
        return EXIT_SETUP if cannot_start else EXIT_PARTIAL
    short = _cut_short(p, s.frames_captured) if s.status == Status.ENDED else None
    if short is not None:
        error(short)
        return EXIT_PARTIAL
    if any(sk.error for sk in st.sinks) or unfinished:
        return EXIT_PARTIAL
    return EXIT_OK
