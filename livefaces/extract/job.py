"""``extract``: every face of videos and image folders, as crops plus ``index.jsonl``.

Three threads, one stop event::

    decode thread ──► frames ring ──► detect (caller's thread, batches across frames
    (PyAV / OpenCV)    (bounded,        and inputs) ──► results ring ──► writer thread
                        policy "wait":   (bounded, "wait")              (crops, index.jsonl,
                        no frame lost)                                  done.jsonl)

Both rings are :class:`~livefaces.ringbuffer.RingBuffer` with the ``"wait"`` policy (nothing is
dropped; ``dropped`` stays 0); ``close()`` is the end marker (``Closed`` on get).

What is written, and how it survives a crash: :mod:`livefaces.extract.output`; the
settings: :mod:`livefaces.extract.options`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..avio import count_frames, declared_frames
from ..detect import rescale
from ..errors import ImageReadError, InputError, OutputError, SourceError
from ..imageio import make_folder, read_image
from ..ringbuffer import Closed, RingBuffer
from ..specs import file_problem
from ..types import Faces
from .decode import Input, iter_video, plan_inputs
from .options import ClusterOptions, ExtractOptions
from .output import (
    DONE_FILE,
    INDEX_FILE,
    ExtractReport,
    Progress,
    append_lines,
    assign_names,
    cut_short,
    damaged,
    done_line,
    drop_failed,
    prepare_out_dir,
    write_frame,
)

if TYPE_CHECKING:
    from ..detect.engine import Engine

#: Seconds every blocking ring call waits before re-checking the stop event.
POLL_S = 0.1


# -- items travelling between the threads ------------------------------------------------------
@dataclass
class _Frame:
    inp: Input
    index: int
    pts: float | None
    image: np.ndarray  # full-resolution RGB
    small: np.ndarray  # what the detector sees


@dataclass
class _End:
    inp: Input
    frames: int
    error: str | None = None


_Item = _Frame | _End  # what the decoder hands the detect loop, in decode order
_Result = tuple[_Frame, Faces] | _End  # what the detect loop hands the writer




# -- threads ------------------------------------------------------------------------------------
def _decode_worker(inputs: list[Input], options: ExtractOptions, frames: RingBuffer[_Item],
                   stop: threading.Event) -> None:
    """Frames and end-of-input markers of ``inputs`` into ``frames`` (waits for room, never
    drops); closes ``frames`` at the end, however it ends."""
    def small(rgb: np.ndarray) -> np.ndarray:
        return rescale.resize(rgb, options.resize)

    try:
        for inp in inputs:
            if stop.is_set():
                return
            count, error = 0, None
            try:
                if inp.kind == "image":
                    rgb = read_image(inp.path, options.max_pixels)
                    if not frames.put(_Frame(inp, 0, None, rgb, small(rgb)), stop=stop):
                        return
                    count = 1
                else:
                    declared, last = declared_frames(inp.path), -1
                    try:
                        for index, pts, rgb in iter_video(inp.path, options.stride, stop,
                                                          options.max_pixels):
                            if not frames.put(_Frame(inp, index, pts, rgb, small(rgb)), stop=stop):
                                return
                            count, last = count + 1, index
                    except SourceError as e:
                        if last < 0:
                            raise
                        error = damaged(inp.source, last, declared, str(e))
                    else:
                        if not stop.is_set():
                            error = cut_short(inp.source, last, options.stride, declared)
            except (SourceError, ImageReadError) as e:
                error = str(e)
            except Exception as e:  # noqa: BLE001 - one bad file must not stop the job
                error = f"{inp.source}: {type(e).__name__}: {e}"
            if stop.is_set():
                return  # an input cut short by the stop event is not finished
            if not frames.put(_End(inp, count, error), stop=stop):
                return
    finally:
        frames.close()  # the end marker: the detect loop drains what is left, then ends


class _Writer:
    """Writes crops and index lines in its own thread; marks inputs done."""

    def __init__(self, out_dir: Path, options: ExtractOptions, report: ExtractReport) -> None:
        self.out_dir = out_dir
        self.options = options
        self.report = report
        self.queue: RingBuffer[_Result] = RingBuffer(4 * options.batch_size, "wait")
        self.error: BaseException | None = None
        self.faces_per_input: dict[str, int] = {}
        self._index = (out_dir / INDEX_FILE).open("a", encoding="utf-8")
        self._done = (out_dir / DONE_FILE).open("a", encoding="utf-8")
        self.thread = threading.Thread(target=self._run, name="livefaces-extract-writer", daemon=True)

    def _write_frame(self, item: _Frame, faces: Faces) -> None:
        lines = write_frame(self.out_dir, self.options, item.inp, item.index, item.pts,
                            item.image, faces)
        if lines:
            self._index.write("".join(lines))  # whole lines only
            self._index.flush()
        self.faces_per_input[item.inp.key] = self.faces_per_input.get(item.inp.key, 0) + len(faces)

    def _finish_input(self, end: _End) -> None:
        if end.error is not None:
            self.report.failed.append((end.inp.source, end.error))
            return
        os.fsync(self._index.fileno())
        faces = self.faces_per_input.pop(end.inp.key, 0)
        append_lines(self._done, [done_line(end.inp, end.frames, faces)])
        self.report.done += 1

    def _run(self) -> None:
        try:
            while True:
                try:
                    item = self.queue.get(timeout=POLL_S)
                except Closed:  # the detect loop is done and everything it gave is written
                    return
                if item is None:
                    continue
                if isinstance(item, _End):
                    self._finish_input(item)
                else:
                    self._write_frame(*item)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self.error = e
        finally:
            self.queue.close()  # after an error: the detect loop's puts fail instead of waiting
            self._index.close()
            self._done.close()


def _frames_total(todo: list[Input], stride: int) -> int | None:
    """Frames to detect on over ``todo`` (after the stride); ``None`` if a count is unknown."""
    total = 0
    for inp in todo:
        if inp.kind == "image":
            total += 1
            continue
        n = count_frames(inp.path)
        if n is None:
            return None
        total += -(-n // stride)
    return total


class _Job:
    """One run over the inputs not done yet: decoder thread, detect loop, writer thread."""

    def __init__(self, out: Path, todo: list[Input], options: ExtractOptions, detector: Engine,
                 report: ExtractReport, progress: Callable[[Progress], None] | None,
                 stop: threading.Event | None) -> None:
        self.options = options
        self.detector = detector
        self.report = report
        self.progress = progress
        self.stop = stop
        self.state = Progress(frames_total=_frames_total(todo, options.stride),
                              inputs_total=len(todo))
        self.halt = threading.Event()  # the one stop event of the threads
        self.frames: RingBuffer[_Item] = RingBuffer(2 * options.batch_size, "wait")
        self.writer = _Writer(out, options, report)
        self.decoder = threading.Thread(target=_decode_worker,
                                        args=(todo, options, self.frames, self.halt),
                                        name="livefaces-extract-decode", daemon=True)

    def _stopped(self) -> bool:
        """Asked to stop from outside, or the writer failed."""
        return (self.stop is not None and self.stop.is_set()) or self.writer.error is not None

    def _next_items(self) -> tuple[list[_Item], bool]:
        """Up to ``batch_size`` frames plus the end-of-input markers between them, in decode
        order, and whether the decoder has finished (its ring closed and drained)."""
        items: list[_Item] = []
        n_frames = 0
        while n_frames < self.options.batch_size and not (self.halt.is_set() or self._stopped()):
            try:
                item = self.frames.get(timeout=POLL_S)
            except Closed:
                return items, True
            if item is not None:
                items.append(item)
                n_frames += isinstance(item, _Frame)
        return items, False

    def _detect(self, items: list[_Item], start: float) -> bool:
        """Detect on the frames of ``items`` (one batch) and hand everything to the writer;
        False when the writer takes no more (it failed)."""
        state = self.state
        batch = [it for it in items if isinstance(it, _Frame)]
        found = iter(self.detector.detect_batch([it.small for it in batch]) if batch else [])
        ok = True
        for it in items:
            if isinstance(it, _Frame):
                faces = rescale.to_original(next(found), it.small.shape, it.image.shape)
                state.faces += len(faces)
                state.current = it.inp.source
                ok = self.writer.queue.put((it, faces), stop=self.halt)
            else:
                state.inputs_done += 1
                ok = self.writer.queue.put(it, stop=self.halt)
            if not ok:
                break
        state.frames_done += len(batch)
        state.elapsed_s = time.monotonic() - start
        if self.progress is not None and batch:
            self.progress(state)
        return ok

    def run(self) -> None:
        """Start the threads, detect until the inputs end or a stop, then shut down (in
        ``finally``: also on ``KeyboardInterrupt``) and fill in the report."""
        start = time.monotonic()
        self.writer.thread.start()
        self.decoder.start()
        try:
            finished = False
            while not finished and not self._stopped():
                items, finished = self._next_items()
                if self._stopped() or not self._detect(items, start):
                    break
        finally:
            self.halt.set()  # the decoder stops; an input it was in the middle of stays not done
            self.writer.queue.close()  # the writer finishes what it was given, then ends
            self.writer.thread.join(timeout=60)
            self.decoder.join(timeout=10)
            self.report.frames = self.state.frames_done
            self.report.faces = self.state.faces
            self.report.seconds = time.monotonic() - start


def extract(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: ExtractOptions | None = None,
    *,
    detector: Engine | None = None,
    progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    cluster: ClusterOptions | str | None = None,
) -> ExtractReport:
    """Extract every face of ``inputs`` (videos, image files, folders, globs) into ``out_dir``.

    Re-running with the same ``out_dir`` and settings skips inputs already done and redoes
    the others. ``detector`` (an :class:`~livefaces.detect.engine.Engine`: anything with
    ``detect_batch``) replaces the engine built from ``options.detector``. ``stop`` (set from
    another thread) ends the run early and cleanly: what is written is complete, unfinished
    inputs are redone next time. On ``KeyboardInterrupt`` the same cleanup runs and the
    exception propagates.

    ``cluster`` (a :class:`~livefaces.extract.options.ClusterOptions`, or just its address:
    ``"local"``, ``"auto"``, ``"ray://host:port"``) runs the job on a Ray cluster instead
    (the ``ray`` extra; ``extract/cluster.py``): same output, resumable per video segment;
    each worker builds its engine from ``options.detector``, so ``detector`` cannot be given.

    Raises :class:`~livefaces.errors.InputError` for bad options or an ``out_dir`` made with
    other settings, :class:`~livefaces.errors.OutputError` when ``out_dir`` is a file or cannot
    be written; unreadable inputs are reported in :attr:`ExtractReport.failed`.
    """
    options = options or ExtractOptions()
    options.check()
    out = Path(out_dir)
    plan = plan_inputs([os.fspath(i) for i in inputs])
    if not plan:
        raise InputError("no inputs: name video files, image files, folders or globs")
    if cluster is not None:
        if isinstance(cluster, str):
            cluster = ClusterOptions(address=cluster)
        cluster.check()
        if detector is not None:
            raise InputError("a detector object cannot be sent to a cluster: each worker builds "
                             "its engine from options.detector")
    make_folder(out, "the crops and index.jsonl")
    done_keys, segments = prepare_out_dir(out, options, keep_segments=cluster is not None)
    plan = assign_names(out, plan)
    todo = [inp for inp in plan if inp.key not in done_keys]
    report = ExtractReport(out_dir=out, inputs=len(plan), skipped=len(plan) - len(todo))
    if not todo:
        return report
    if cluster is not None:
        # Missing files fail here, as the workers would say, before Ray is imported and
        # started for nothing (~9 s when every input was missing).
        problems = [file_problem(inp.path) for inp in todo]  # a FIFO would block a worker
        report.failed += [(inp.source, f"{inp.source}: {why}" + ("; check the path"
                                                                if why == "no such file" else ""))
                          for inp, why in zip(todo, problems) if why is not None]
        todo = [inp for inp, why in zip(todo, problems) if why is None]
        if not todo:
            return report
        try:
            from .cluster import run_on_cluster
        except ImportError as e:
            raise InputError(f"--ray needs Ray: pip install 'livefaces[ray]' ({e})") from None
        run_on_cluster(out, todo, segments, options, cluster, report, progress, stop)
        drop_failed(out, todo, report, keep_segments=True)
        return report
    if detector is None:
        from ..detect.engine import make_engine

        detector = make_engine(options.detector)
    report.engine = str(getattr(detector, "provider", type(detector).__name__))
    job = _Job(out, todo, options, detector, report, progress, stop)
    job.run()
    drop_failed(out, todo, report, keep_segments=False)
    if job.writer.error is not None:
        if isinstance(job.writer.error, OSError):
            raise OutputError(f"cannot write into {out}: {job.writer.error}") from job.writer.error
        raise job.writer.error
    return report
