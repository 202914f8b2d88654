"""Live identification: who each *track* is, from votes over its frames.

::

    detect loop ──observe(result)──► TrackVotes (per camera) ──crop──► bounded queue ──► worker process
         ▲                           which frames to embed                (drop_newest,      dlib: embed +
         └──────────poll()────────── votes per track, decision ◄──────── counted)          gallery match
                                                                         ◄── results queue ──┘

* **Which frames**: only faces the networks verified on that frame (detected or refined), at
  least ``min_face`` px and ``min_confidence``; a track's first ``first_frames`` such faces
  (``first_spacing`` s apart), then one every ``interval`` s; at most one request per track
  in flight.
* **Not blocking the detect loop**: embedding (dlib, ~200 ms a face on a laptop CPU) runs in
  a child process (its own interpreter, so its own GIL). Requests go through a bounded queue
  of ``queue`` slots with the policy **drop_newest**: when it is full the new request is not
  queued (counted in :attr:`IdentifyStats.dropped`) and the track asks again on a later
  frame. Results come back on a second bounded queue, read without waiting by
  :meth:`LiveIdentifier.poll`. Every wait has a timeout; :meth:`LiveIdentifier.close` ends the
  child within its timeout (terminated, then killed, if it does not leave by itself).
* **Votes**: each embedding is matched against the gallery in the child (the embedding never
  leaves it: not in events, logs, metrics or the API) and comes back as ``(name or None,
  distance)``. Its weight grows with the face's size (up to ``full_weight_px``) and the
  detector's confidence, as Frigate's running score weighs face area. A name is *settled* once
  it has ``min_votes`` votes and at least ``settle_share`` of the track's total weight
  (unknown votes count against it); it is kept while it holds ``keep_share``. A vote that
  disagrees with the settled name (another name, or unknown) revokes it at once: the name is
  confirmed on the current face, and must be settled again from votes on the face as it is
  now (a track that landed on someone else never keeps the first person's name). Tracks end
  at scene cuts, so no name crosses a cut. The recogniser's own threshold decides each
  match: no looser threshold guesses a name, so a stranger stays unknown.
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
from ..types import Faces, Frame, FrameResult, Identity

log = logging.getLogger(__name__)

#: the named drop policy of the request queue: a full queue refuses the newest request
DROP_POLICY = "drop_newest"


@dataclass(frozen=True)
class IdentifyOptions:
    """Which frames are embedded and how votes become a name (see the module docstring)."""

    first_frames: int = 3
    first_spacing: float = 0.2
    interval: float = 1.0
    min_face: float = 40.0
    min_confidence: float = 0.9
    min_votes: int = 2
    settle_share: float = 0.6
    keep_share: float = 0.5
    full_weight_px: float = 100.0
    queue: int = 8
    start_timeout: float = 120.0
    request_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.queue < 1 or self.first_frames < 0 or self.min_votes < 1:
            raise ValueError("queue and min_votes must be at least 1, first_frames at least 0")
        if not 0.5 <= self.keep_share <= self.settle_share <= 1.0:
            raise ValueError("need 0.5 <= keep_share <= settle_share <= 1")


@dataclass(frozen=True)
class Identified:
    """A track's settled name changed (``face.identified``): ``previous`` was announced
    before (None: unknown)."""

    camera: str
    track_id: int
    identity: Identity
    previous: str | None


@dataclass
class _Track:
    sent: int = 0
    last_sent: float | None = None
    pending: int = 0
    weights: dict[str | None, float] = field(default_factory=dict)
    counts: dict[str | None, int] = field(default_factory=dict)
    dist: dict[str | None, float] = field(default_factory=dict)  # weighted distance sums
    votes: int = 0
    announced: str | None = None  # the name of the last face.identified (None: none/unknown)
    identity: Identity = field(default_factory=Identity)


def decide(weights: dict[str | None, float], counts: dict[str | None, int],
           dist: dict[str | None, float], current: str | None, o: IdentifyOptions) -> Identity:
    """The identity a track's votes support (pure; see the module docstring)."""
    votes = sum(counts.values())
    if votes == 0:
        return Identity()
    total = sum(weights.values()) or 1e-9
    named = [(w, n) for n, w in weights.items() if n is not None]
    best = max(named, key=lambda t: t[0])[1] if named else None
    name = None
    if current is not None and counts.get(current, 0) >= o.min_votes \
            and weights.get(current, 0.0) >= o.keep_share * total:
        name = current
    elif best is not None and counts.get(best, 0) >= o.min_votes \
            and weights[best] >= o.settle_share * total:
        name = best
    if name is not None:
        d = dist[name] / max(weights[name], 1e-9)
    else:  # distance to the nearest enrolled person, over every vote
        d = sum(dist.values()) / total
    return Identity(name, float(d), votes, votes >= o.min_votes)


class TrackVotes:
    """The identities of ONE camera's tracks; called by the detect loop only."""

    def __init__(self, camera: str, owner: LiveIdentifier) -> None:
        self.camera = camera
        self._owner = owner
        self._tracks: dict[int, _Track] = {}

    def identity(self, track_id: int) -> Identity:
        tr = self._tracks.get(int(track_id))
        return tr.identity if tr is not None else Identity()

    def identities(self, result: FrameResult) -> tuple[Identity, ...]:
        return tuple(self.identity(t) for t in result.track_ids.tolist())

    def forget(self, track_id: int) -> None:
        self._tracks.pop(int(track_id), None)

    def observe(self, result: FrameResult, now: float) -> None:
        """Ask for embeddings of the faces of ``result`` that are due (see the module docs)."""
        o = self._owner.options
        faces = result.faces
        if not len(faces) or len(result.track_ids) != len(faces):
            return
        for i, tid in enumerate(result.track_ids.tolist()):
            if str(result.how[i]) not in ("detected", "refined"):
                continue
            x1, y1, x2, y2 = (float(v) for v in faces.boxes[i])
            size = min(x2 - x1, y2 - y1)
            conf = float(faces.scores[i])
            if size < o.min_face or conf < o.min_confidence:
                continue
            tr = self._tracks.setdefault(int(tid), _Track())
            if tr.pending:
                continue
            gap = o.first_spacing if tr.sent < o.first_frames else o.interval
            if tr.last_sent is not None and now - tr.last_sent < gap:
                continue
            weight = conf * min(1.0, size / o.full_weight_px)
            if self._owner.submit(self.camera, int(tid), result.frame, faces.select(np.array([i])),
                                  weight):
                tr.sent += 1
                tr.pending += 1
                tr.last_sent = now

    def vote(self, track_id: int, name: str | None, distance: float, weight: float
             ) -> Identified | None:
        """One match for a track; the :class:`Identified` if its settled name changed."""
        tr = self._tracks.get(track_id)
        if tr is None:  # the track ended meanwhile
            return None
        tr.pending = max(0, tr.pending - 1)
        if tr.identity.name is not None and name != tr.identity.name:
            # the current face disagrees with the settled name (another person under the
            # track, or no longer recognisable): the name is revoked at once and must be
            # settled again from votes on the face as it is now
            tr.weights, tr.counts, tr.dist = {}, {}, {}
        tr.votes += 1
        tr.weights[name] = tr.weights.get(name, 0.0) + weight
        tr.counts[name] = tr.counts.get(name, 0) + 1
        tr.dist[name] = tr.dist.get(name, 0.0) + weight * distance
        tr.identity = decide(tr.weights, tr.counts, tr.dist, tr.identity.name, self._owner.options)
        if tr.identity.name != tr.announced:
            before, tr.announced = tr.announced, tr.identity.name
            return Identified(self.camera, track_id, tr.identity, before)
        return None

    def failed(self, track_id: int) -> None:
        tr = self._tracks.get(track_id)
        if tr is not None:
            tr.pending = max(0, tr.pending - 1)


@dataclass(frozen=True)
class IdentifyStats:
    """Counters of the identifier (no embedding, no name of a face).

    ``requested``: embeddings queued; ``dropped``: refused by the full queue
    (:data:`DROP_POLICY`); ``embedded``: results back; ``errors``: failed embeddings;
    ``embed_ms``: mean worker time per face; ``people``: enrolled names; ``alive``: the worker
    process runs."""

    requested: int
    dropped: int
    embedded: int
    errors: int
    embed_ms: float | None
    people: int
    alive: bool


def _worker_main() -> int:  # pragma: no cover - runs in the child process
    """The child process (``python -m livefaces.identify.live``): load the recogniser and the
    gallery named on stdin, then embed + match requests until ``None`` or the end of stdin
    (the parent went away). Only names and distances go back on stdout."""
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it closes us
    rx, tx = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print of a library must not corrupt the channel

    def send(msg: tuple[Any, ...]) -> None:
        pickle.dump(msg, tx, protocol=pickle.HIGHEST_PROTOCOL)
        tx.flush()

    try:
        people = pickle.load(rx)
        from . import Gallery, Recognizer

        rec = Recognizer()
        gallery = Gallery.load(people, rec.threshold)
        send(("ready", sorted(set(gallery.names)), float(rec.threshold)))
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        send(("error", str(e).splitlines()[0] if str(e) else type(e).__name__))
        return 1
    while True:
        try:
            msg = pickle.load(rx)
        except (EOFError, OSError, pickle.UnpicklingError):
            return 0
        if msg is None:
            return 0
        if msg[0] == "enrol":
            try:
                send(("enrolled", msg[1], _enrol(people, rec, msg[2], msg[3], Faces(*msg[4:]))))
                gallery = Gallery.load(people, rec.threshold)
            except Exception as e:  # noqa: BLE001 - the caller gets the one line
                send(("enrol_failed", msg[1], str(e).splitlines()[0] if str(e) else
                      type(e).__name__))
            continue
        key, crop, boxes, scores, landmarks = msg
        t0 = time.perf_counter()
        out: tuple[Any, ...]
        try:
            emb = rec.embed(crop, Faces(boxes, scores, landmarks))
            m = gallery.match(emb[0])
            out = ("match", key, m.name, float(m.distance), time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001
            out = ("failed", key, f"{type(e).__name__}: {e}".splitlines()[0])
        try:
            send(out)
        except (BrokenPipeError, OSError):
            return 0


def _enrol(people: str, rec: Any, name: str, crop: np.ndarray, face: Faces) -> list[str]:
    """In the worker: add ``crop``'s face to ``name`` in the people folder (the core's
    :func:`~livefaces.identify.gallery.save_person`: private files, all or nothing); the names
    now enrolled."""
    from .gallery import check_name, read_people, save_person, thumbnail

    check_name(name)
    emb = rec.embed(crop, face)[0]
    save_person(Path(people), name, [("live view", emb, thumbnail(crop, face.boxes[0]))])
    return sorted(p.name for p in read_people(Path(people)))


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

    The worker is a child interpreter (``python -m livefaces.identify.live``) talking pickles
    over its stdin/stdout: unlike ``multiprocessing``'s spawn it never re-imports the user's
    main script (which would need an ``if __name__ == "__main__"`` guard). Two threads of
    this process feed it: a writer (from the bounded request queue) and a reader (into the
    bounded result queue).
    """

    def __init__(self, people: str | os.PathLike[str], options: IdentifyOptions | None = None
                 ) -> None:
        self.people = Path(people)
        self.options = options or IdentifyOptions()
        self._requests: queue.Queue[Any] = queue.Queue(self.options.queue)
        # at most queue + 1 requests are unanswered, so this never fills; bounded all the same
        self._results: queue.Queue[Any] = queue.Queue(4 * self.options.queue + 16)
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
        self._waiters: dict[int, list[Any]] = {}  # enrolment key -> [Event, answer]
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
        self._proc = subprocess.Popen([sys.executable, "-m", "livefaces.identify.live"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, env=env)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        reader = threading.Thread(target=self._read, args=(self._proc.stdout,),
                                  name="identify-read", daemon=True)
        reader.start()
        self._threads.append(reader)
        try:
            pickle.dump(str(self.people.resolve()), self._proc.stdin)
            self._proc.stdin.flush()
            msg = self._results.get(timeout=self.options.start_timeout)
        except queue.Empty:
            self.close()
            raise LiveFacesError("identification: the worker did not load the people "
                                 f"folder within {self.options.start_timeout:g} s") from None
        except OSError:
            msg = None
        if msg is None or msg[0] != "ready":
            self.close()
            if msg is None:
                raise LiveFacesError("identification: the worker process ended while starting "
                                     "(is the identify extra installed?)")
            raise LiveFacesError(str(msg[1]))
        self.names, self.threshold = tuple(msg[1]), msg[2]
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
            if msg is not None and msg[0] in ("enrolled", "enrol_failed"):
                with self._wlock:
                    w = self._waiters.pop(msg[1], None)
                if w is not None:
                    w[1] = msg
                    w[0].set()
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
            self._requests.put_nowait((key, crop, f.boxes, f.scores, f.landmarks))
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
            if msg[0] not in ("match", "failed"):
                continue
            item = self._pending.pop(msg[1], None)
            if item is None:
                continue
            cam, tid, weight, _t = item
            tv = self._cameras.get(cam)
            if msg[0] == "failed":
                self.errors += 1
                log.debug("identification failed for a face of %s: %s", cam, msg[2])
                if tv is not None:
                    tv.failed(tid)
                continue
            self.embedded += 1
            self._embed_s += msg[4]
            if tv is not None:
                ev = tv.vote(tid, msg[2], msg[3], weight)
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
        if self._closed or not self._started:
            raise LiveFacesError("identification is not running")
        w: list[Any] = [threading.Event(), None]
        key = next(self._keys)
        with self._wlock:
            self._waiters[key] = w
        try:
            self._requests.put(("enrol", key, name, np.ascontiguousarray(crop), face.boxes,
                                face.scores, face.landmarks), timeout=2.0)
        except queue.Full:
            with self._wlock:
                self._waiters.pop(key, None)
            raise LiveFacesError("identification is busy; try again in a moment") from None
        if not w[0].wait(timeout):
            with self._wlock:
                self._waiters.pop(key, None)
            raise LiveFacesError(f"the worker did not answer within {timeout:g} s")
        kind, _key, answer = w[1]
        if kind == "enrol_failed":
            raise LiveFacesError(str(answer))
        self.names = tuple(answer)
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


if __name__ == "__main__":  # the worker process
    raise SystemExit(_worker_main())
