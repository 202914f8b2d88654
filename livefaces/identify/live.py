"""Live identification: who each *track* is, from votes over its frames.

::

    detect loop ──observe(result)──► TrackVotes (per camera) ──crop──► bounded queue ──► worker process
         ▲                           which frames to embed                (drop_newest,      dlib: embed +
         └──────────poll()────────── votes per track, decision ◄──────── counted)          gallery match
                                                                         ◄── results queue ──┘

* **Not blocking the detect loop**: embedding (dlib, ~200 ms a face on a laptop CPU) runs in
  a child process (its own interpreter, so its own GIL). Requests go through a bounded queue
  of ``queue`` slots with the policy **drop_newest**: when it is full the new request is not
  queued (counted in :attr:`IdentifyStats.dropped`) and the track asks again on a later
  frame. Results come back on a second bounded queue, read without waiting by
  :meth:`LiveIdentifier.poll`. Every wait has a timeout; :meth:`LiveIdentifier.close` ends the
  child within its timeout (terminated, then killed, if it does not leave by itself).

The vote policy (which frames, how votes become a name): :mod:`livefaces.identify.votes`; the
worker process: :mod:`livefaces.identify.worker`; their messages:
:mod:`livefaces.identify.messages`. This module owns the process and its two threads.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..align import crop_region
from ..errors import LiveFacesError
from ..types import Faces, Frame, Identified, IdentifyStats
from .messages import (
    Answer,
    Embed,
    EmbedFailed,
    Enrol,
    EnrolFailed,
    Enrolled,
    Matched,
    Ready,
    Request,
    Start,
    StrangerAction,
)
from .votes import IdentifyOptions, TrackVotes, _Track, decide

__all__ = ["IdentifyOptions", "IdentifyStats", "Identified", "LiveIdentifier", "TrackVotes",
           "_Track", "decide"]

log = logging.getLogger(__name__)


@dataclass
class _Waiter:
    """An :meth:`LiveIdentifier.enrol` call waiting for its answer (set by the reader)."""

    done: threading.Event = field(default_factory=threading.Event)
    answer: Enrolled | EnrolFailed | None = None


class LiveIdentifier:
    """Identities for the tracks of every camera of a pipeline, from a people folder.

    Args:
        people: the people folder (made by ``livefaces people add``; see
            docs/identify.md), loaded by the worker process.
        options: :class:`IdentifyOptions`.

    Use: :meth:`start` (raises :class:`~livefaces.errors.LiveFacesError` with the worker's
    one-line reason when the folder or the ``identify`` extra is unusable), hand it to
    :class:`~livefaces.pipeline.Pipeline` (``identifier=``), :meth:`close` after the pipeline
    stopped (the pipeline closes it too).

    The worker is a child interpreter (``python -m livefaces.identify.worker``, started with
    :mod:`subprocess`) talking pickled :mod:`~livefaces.identify.messages` over its
    stdin/stdout: unlike ``multiprocessing``'s spawn it never re-imports the user's main
    script (which would need an ``if __name__ == "__main__"`` guard). Two threads of
    this process feed it: a writer (from the bounded request queue) and a reader (into the
    bounded result queue).
    """

    def __init__(self, people: str | os.PathLike[str], options: IdentifyOptions | None = None
                 ) -> None:
        self.people = Path(people)
        self.options = options or IdentifyOptions()
        self._requests: queue.Queue[Request] = queue.Queue(self.options.queue)
        # at most queue + 1 requests are unanswered, so this never fills; bounded all the same
        self._results: queue.Queue[Answer | None] = queue.Queue(4 * self.options.queue + 16)
        self._proc: subprocess.Popen[bytes] | None = None
        self._cameras: dict[str, TrackVotes] = {}
        self._pending: dict[int, tuple[str, int, float, float]] = {}  # key -> camera, id, weight, t
        self._keys = itertools.count(1)  # request keys (next() is atomic: any thread)
        self.names: tuple[str, ...] = ()
        self.threshold: float | None = None
        self.requested = self.dropped = self.embedded = self.errors = 0
        self._embed_s = 0.0
        self._started = False
        self._closed = False
        self._died = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._waiters: dict[int, _Waiter] = {}  # enrolment key -> its answer, when it comes
        self._wlock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> LiveIdentifier:
        """Start the worker and wait (up to ``start_timeout`` s) until it has loaded the
        recogniser and the people folder."""
        if self._started:
            return self
        from .gallery import check_people_dir

        check_people_dir(self.people)  # here, in one line, before a worker is started
        self._started = True
        import livefaces

        root = str(Path(livefaces.__file__).resolve().parents[1])  # the same livefaces
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen([sys.executable, "-m", "livefaces.identify.worker"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, env=env)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        reader = threading.Thread(target=self._read, args=(self._proc.stdout,),
                                  name="identify-read", daemon=True)
        reader.start()
        self._threads.append(reader)
        try:
            pickle.dump(Start(str(self.people.resolve()), self.options.strangers), self._proc.stdin)
            self._proc.stdin.flush()
            msg = self._results.get(timeout=self.options.start_timeout)
        except queue.Empty:
            self.close()
            raise LiveFacesError("identification: the worker did not load the people "
                                 f"folder within {self.options.start_timeout:g} s") from None
        except OSError:
            msg = None
        if not isinstance(msg, Ready):
            self.close()
            if msg is None:
                raise LiveFacesError("identification: the worker process ended while starting "
                                     "(is the identify extra installed?)")
            raise LiveFacesError(str(getattr(msg, "reason", msg)))
        self.names, self.threshold = tuple(msg.names), msg.threshold
        writer = threading.Thread(target=self._write, args=(self._proc.stdin,),
                                  name="identify-write", daemon=True)
        writer.start()
        self._threads.append(writer)
        log.info("identification: %d people from %s (threshold %.2f)", len(self.names),
                 self.people, self.threshold)
        return self

    def _read(self, rx: Any) -> None:
        """Reader thread: results from the child into the result queue; ``None`` at the end."""
        while True:
            try:
                msg = pickle.load(rx)
            except Exception:  # noqa: BLE001 - EOF, a dead child: the end either way
                msg = None
            if isinstance(msg, (Enrolled, EnrolFailed)):
                with self._wlock:
                    w = self._waiters.pop(msg.key, None)
                if w is not None:
                    w.answer = msg
                    w.done.set()
                continue
            try:
                self._results.put(msg, timeout=1.0)
            except queue.Full:  # cannot happen (see __init__); never block for ever
                self.errors += 1
            if msg is None:
                return

    def _write(self, tx: Any) -> None:
        """Writer thread: requests from the bounded queue to the child's stdin."""
        while not self._stop.is_set():
            try:
                msg = self._requests.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                pickle.dump(msg, tx, protocol=pickle.HIGHEST_PROTOCOL)
                tx.flush()
            except (OSError, ValueError):  # the child is gone
                return
            if msg is None:
                return

    def close(self, timeout: float = 2.0) -> bool:
        """Ask the worker to leave; terminate (then kill) it if it has not within ``timeout``."""
        if self._closed or not self._started or self._proc is None:
            self._closed = True
            return True
        self._closed = True
        deadline = time.monotonic() + timeout
        p = self._proc
        while True:  # make room for the goodbye (pending requests are dropped)
            try:
                self._requests.get_nowait()
            except queue.Empty:
                break
        try:
            self._requests.put(None, timeout=0.1)
        except queue.Full:
            pass
        for t in self._threads:
            if t.name == "identify-write":
                t.join(max(0.0, 0.5 * (deadline - time.monotonic())))
        self._stop.set()
        try:
            if p.stdin is not None:
                p.stdin.close()  # end of input: the child leaves
        except OSError:
            pass
        try:
            p.wait(max(0.05, deadline - time.monotonic()))
            ok = True
        except subprocess.TimeoutExpired:
            ok = False
            p.terminate()
            try:
                p.wait(0.5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(0.5)
        for t in self._threads:
            t.join(0.2)
        if p.stdout is not None:
            p.stdout.close()
        return ok

    def __enter__(self) -> LiveIdentifier:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the detect loop's side --------------------------------------------------------------------
    def camera(self, name: str) -> TrackVotes:
        """The votes of camera ``name`` (made on first use)."""
        tv = self._cameras.get(name)
        if tv is None:
            tv = self._cameras[name] = TrackVotes(name, self)
        return tv

    def submit(self, camera: str, track_id: int, frame: Frame, face: Faces, weight: float) -> bool:
        """Queue one face for embedding; False (counted) when the queue is full."""
        if self._closed or not self._started:
            return False
        crop, f = crop_region(frame.image, face, 0.6)  # the worker gets a small image, not the frame
        key = next(self._keys)
        try:
            self._requests.put_nowait(Embed(key, crop, f, camera))
        except queue.Full:
            self.dropped += 1
            return False
        self._pending[key] = (camera, track_id, weight, time.monotonic())
        self.requested += 1
        return True

    def poll(self) -> list[Identified]:
        """Apply the results that came back (never waits); the tracks whose name changed.
        Requests older than ``request_timeout`` s are given up (the track may ask again)."""
        out: list[Identified] = []
        while True:
            try:
                msg = self._results.get_nowait()
            except queue.Empty:
                break
            if msg is None:  # the worker's output ended
                if not self._closed and not self._died:
                    self._died = True
                    log.warning("identification: the worker process ended unexpectedly (exit "
                                "code %s); faces are no longer named", self._exit_code())
                continue
            if not isinstance(msg, (Matched, EmbedFailed)):
                continue
            item = self._pending.pop(msg.key, None)
            if item is None:
                continue
            cam, tid, weight, _t = item
            tv = self._cameras.get(cam)
            if isinstance(msg, EmbedFailed):
                self.errors += 1
                log.debug("identification failed for a face of %s: %s", cam, msg.reason)
                if tv is not None:
                    tv.failed(tid)
                continue
            self.embedded += 1
            self._embed_s += msg.seconds
            if tv is not None:
                ev = tv.vote(tid, msg.name, msg.distance, weight, msg.stranger, msg.ignored)
                if ev is not None:
                    out.append(ev)
        if self._pending:
            now = time.monotonic()
            for k, (cam, tid, _w, t) in list(self._pending.items()):
                if now - t > self.options.request_timeout:
                    del self._pending[k]
                    self.errors += 1
                    tv = self._cameras.get(cam)
                    if tv is not None:
                        tv.failed(tid)
        return out

    def enrol(self, name: str, crop: np.ndarray, face: Faces, timeout: float = 15.0
              ) -> tuple[str, ...]:
        """Add the face ``face`` (one row, in pixels of ``crop``) to person ``name`` in the
        people folder, through the worker (which embeds it, writes it with the people-folder
        code and reloads the gallery); the enrolled names after it. Any thread may call it.
        Raises :class:`~livefaces.errors.LiveFacesError` (a bad name, a folder that cannot be
        written, the worker busy or gone)."""
        return self._ask(lambda key: Enrol(key, name, np.ascontiguousarray(crop), face), timeout)

    def stranger(self, stranger: str, action: str, name: str | None = None,
                 timeout: float = 30.0) -> tuple[str, ...]:
        """``name`` (enrol all its views as ``name``), ``ignore`` or ``forget`` a stranger of
        the worker's store (strangers on); the enrolled names after it. Any thread may call it.
        Raises :class:`~livefaces.errors.LiveFacesError` (no such stranger, a bad name,
        strangers off, the worker busy or gone)."""
        return self._ask(lambda key: StrangerAction(key, stranger, action, name), timeout)

    def _ask(self, make: Any, timeout: float) -> tuple[str, ...]:
        """Send the request ``make(key)`` and wait for its Enrolled/EnrolFailed answer."""
        if self._closed or not self._started:
            raise LiveFacesError("identification is not running")
        w = _Waiter()
        key = next(self._keys)
        with self._wlock:
            self._waiters[key] = w
        try:
            self._requests.put(make(key), timeout=2.0)
        except queue.Full:
            with self._wlock:
                self._waiters.pop(key, None)
            raise LiveFacesError("identification is busy; try again in a moment") from None
        if not w.done.wait(timeout):
            with self._wlock:
                self._waiters.pop(key, None)
            raise LiveFacesError(f"the worker did not answer within {timeout:g} s")
        if not isinstance(w.answer, Enrolled):
            raise LiveFacesError(str(getattr(w.answer, "reason", w.answer)))
        self.names = tuple(w.answer.names)
        return self.names

    def _exit_code(self) -> int | None:
        if self._proc is None:
            return None
        try:
            return self._proc.wait(0.1)  # its output ended: it is exiting
        except subprocess.TimeoutExpired:
            return None

    def stats(self) -> IdentifyStats:
        alive = bool(self._started and not self._closed and self._proc is not None
                     and self._proc.poll() is None)
        return IdentifyStats(self.requested, self.dropped, self.embedded, self.errors,
                             1000.0 * self._embed_s / self.embedded if self.embedded else None,
                             len(self.names), alive)
