"""Strangers: unknown faces, clustered by embedding across time and cameras, each with a stable
id (``stranger-7``) so that a stranger seen again is recognised as the same stranger.

A plain module (no process, no thread): :class:`StrangerStore` is given the embedding of an
unknown face with the image it came from (:meth:`StrangerStore.observe`), finds the stranger
whose kept views lie within ``threshold`` of it (or makes a new one) and keeps the view if it
passes the quality gates (:func:`quality`). Named strangers become people
(:meth:`StrangerStore.name`: every kept view enrolled with :func:`~.gallery.save_person`);
ignored ones stay as negatives (matched, never reported again); forgotten ones are deleted.

Layout, inside the people folder (same privacy rules: folder 0700, files 0600, refused when
other users may read it; no pickle)::

    PEOPLE/.strangers/
      strangers.npz     "embeddings" (K, 128) float32, "owners" (K,) int64 (the stranger's
                        number), "index": the JSON text below, as a 0-d unicode array;
                        written whole to a temp file and renamed (never half a store)
      stranger-7.1.jpg  a face thumbnail per kept view

    index = {"model": ..., "next": 8, "strangers": [{"id": "stranger-7", "first_seen": t,
             "last_seen": t, "cameras": ["door"], "seen": 3, "ignored": false,
             "best": "stranger-7.1.jpg", "views": [{"thumbnail": "stranger-7.1.jpg",
             "camera": "door", "time": t, "score": q}, ...]}, ...]}

The folder name starts with ``.``: :func:`~.gallery.read_people` skips it, so a stranger is
never read as a person. Bounded: at most ``max_strangers`` (the least recently seen go
first), ``max_views`` views each (the best scores kept), and none older than
``retention_days`` since last seen (privacy: :meth:`StrangerStore.prune`, run on every save).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import InputError, PeopleError
from ..imageio import write_image
from .gallery import (
    MODEL_ID,
    _private_dir,
    check_name,
    check_private,
    save_person,
    thumbnail,
)
from .recognizer import DEFAULT_THRESHOLD, EMBEDDING_SIZE

#: the store's folder inside the people folder (a leading ``.``: never a person)
STRANGERS_DIR = ".strangers"
STORE_FILE = "strangers.npz"
#: files of the store's folder that no view refers to are deleted at a save once this old (s)
ORPHAN_AGE = 60.0
ID_RE = re.compile(r"^stranger-([1-9][0-9]{0,8})$")


@dataclass(frozen=True)
class StrangerOptions:
    """How strangers are clustered, kept and bounded.

    Attributes:
        threshold: an unknown face within this distance of a stranger's kept view is that
            stranger (default: the recogniser's :data:`~.recognizer.DEFAULT_THRESHOLD`).
        min_face: quality gate: the face's box, shorter side, in pixels of the frame
            (Frigate #23450: 22x28 px crops gave confident false matches).
        min_sharpness: quality gate: variance of the Laplacian of the grey 96 px face
            thumbnail (the sharp faces of the knn example photos: 100-1800; the same blurred
            by a Gaussian of 1/30 of the face's width: under 40).
        min_frontality: quality gate: 1 for a face looking at the camera, 0 for a profile
            (the nose and the mouth between the eyes; 5 landmarks). The knn photos' faces:
            0.53-0.98; a profile in the background: 0.02.
        max_views: views kept per stranger (the best quality scores).
        max_strangers: strangers kept (the least recently seen are dropped first).
        retention_days: a stranger not seen for this long is deleted (privacy).
    """

    threshold: float = DEFAULT_THRESHOLD
    min_face: float = 48.0
    min_sharpness: float = 60.0
    min_frontality: float = 0.4
    max_views: int = 5
    max_strangers: int = 200
    retention_days: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 2:
            raise InputError(f"strangers threshold must be between 0 and 2, not {self.threshold}")
        if self.max_views < 1 or self.max_strangers < 1 or not self.retention_days > 0:
            raise InputError("strangers: max_views and max_strangers must be at least 1, "
                             "retention_days above 0")


@dataclass(frozen=True)
class Quality:
    """The quality gates' measures of one face (:func:`quality`)."""

    size: float
    sharpness: float
    frontality: float

    def refusal(self, o: StrangerOptions) -> str | None:
        """Why the face is not good enough to keep (``None``: it is)."""
        if self.size < o.min_face:
            return f"face {self.size:.0f} px, under {o.min_face:g}"
        if self.sharpness < o.min_sharpness:
            return f"blurred (sharpness {self.sharpness:.0f}, under {o.min_sharpness:g})"
        if self.frontality < o.min_frontality:
            return f"turned away (frontality {self.frontality:.2f}, under {o.min_frontality:g})"
        return None

    @property
    def score(self) -> float:
        """One number to rank views: bigger, sharper, more frontal is better."""
        return float(min(self.size, 160.0) / 160.0 + min(self.sharpness, 500.0) / 500.0
                     + self.frontality)


def sharpness(image: np.ndarray, box: np.ndarray) -> float:
    """Variance of the Laplacian of the face (``box`` xyxy in ``image`` RGB) as a grey 96 px
    thumbnail: low for a blurred face, whatever its size in the frame."""
    grey = cv2.cvtColor(np.ascontiguousarray(thumbnail(image, box)), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def frontality(landmarks: np.ndarray) -> float:
    """1 for a frontal face, towards 0 for a turned one, from the 5 landmarks (eyes, nose,
    mouth corners; :data:`livefaces.types.LANDMARK_NAMES` order): where the nose falls between
    the eyes along the eye line (0.5 frontal), and the mouth's mid-point likewise."""
    p = np.asarray(landmarks, np.float64).reshape(5, 2)
    le, re_, nose, ml, mr = p
    axis = re_ - le
    span = float(np.dot(axis, axis))
    if span <= 1e-6:
        return 0.0
    t_nose = float(np.dot(nose - le, axis)) / span
    t_mouth = float(np.dot((ml + mr) / 2 - le, axis)) / span
    off = max(abs(t_nose - 0.5), abs(t_mouth - 0.5))
    return float(max(0.0, 1.0 - 2.0 * off))


def quality(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> Quality:
    """The quality gates' measures of one face of ``image`` (RGB; ``box`` xyxy pixels)."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
    return Quality(max(0.0, min(x2 - x1, y2 - y1)), sharpness(image, box), frontality(landmarks))


@dataclass
class Stranger:
    """One stranger of the store (see the module docstring for the fields)."""

    id: str
    first_seen: float
    last_seen: float
    cameras: list[str] = field(default_factory=list)
    seen: int = 0
    ignored: bool = False
    views: list[dict[str, Any]] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, EMBEDDING_SIZE), np.float32))

    @property
    def best(self) -> str | None:
        """The thumbnail file of the best view (``None``: no view kept)."""
        if not self.views:
            return None
        return str(max(self.views, key=lambda v: float(v.get("score", 0.0)))["thumbnail"])

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """What the API and ``livefaces people strangers`` show (never the embeddings);
        ``new_today``: first seen on the (UTC) day of ``now`` (default: now)."""
        today = time.gmtime(time.time() if now is None else now)[:3]
        return {"id": self.id, "first_seen": _iso(self.first_seen), "last_seen": _iso(self.last_seen),
                "cameras": list(self.cameras), "seen": self.seen, "views": len(self.views),
                "ignored": self.ignored, "new_today": time.gmtime(self.first_seen)[:3] == today}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class Sighting:
    """What :meth:`StrangerStore.observe` found.

    Attributes:
        id: the stranger (``stranger-7``).
        new: made by this sighting.
        new_today: first seen today (UTC) — this sighting or an earlier one today.
        ignored: an ignored stranger (a negative: callers do not report it).
        kept: the view was kept (it passed the gates and ranks among the best).
        distance: to the nearest kept view of that stranger (``inf`` when new).
    """

    id: str
    new: bool
    new_today: bool
    ignored: bool
    kept: bool
    distance: float


def _num(sid: str) -> int:
    m = ID_RE.match(sid)
    if m is None:
        raise InputError(f"{sid!r} is not a stranger id (stranger-N, as 'livefaces people "
                         "strangers' lists them)")
    return int(m.group(1))


class StrangerStore:
    """The strangers of a people folder (``PEOPLE/.strangers``); see the module docstring.

    Not thread-safe: one owner calls it (serve's identification side, or the CLI).
    """

    def __init__(self, people_dir: str | os.PathLike[str], options: StrangerOptions | None = None
                 ) -> None:
        self.people = Path(people_dir)
        self.folder = self.people / STRANGERS_DIR
        self.options = options or StrangerOptions()
        self._strangers: dict[str, Stranger] = {}
        self._next = 1
        self._disk: tuple[int, int, int] | None = None  # the store file as last read/written
        self._saved: set[str] = set()  # ids that were on disk then

    # -- loading and saving ------------------------------------------------------------------
    @classmethod
    def open(cls, people_dir: str | os.PathLike[str], options: StrangerOptions | None = None
             ) -> StrangerStore:
        """The store of ``people_dir`` (empty when it has none yet). Raises
        :class:`~livefaces.errors.PeopleError` when the folder is open to other users or the
        store is damaged (the message says what to delete)."""
        store = cls(people_dir, options)
        if store.people.is_dir():
            check_private(store.people)
        f = store.folder / STORE_FILE
        if f.is_file():
            store._load(f)
            store._disk = _stamp(f)
            store._saved = set(store._strangers)
        return store

    def _sync(self) -> None:
        """Another process (``livefaces people name|ignore|forget`` beside a running serve)
        changed the file since this store read or wrote it: its decisions win. A stranger
        that was on disk and is gone was named or forgotten (dropped here too); one ignored
        there is ignored here; strangers made here since stay."""
        f = self.folder / STORE_FILE
        if not f.is_file() or _stamp(f) == self._disk:
            return
        disk = StrangerStore(self.people, self.options)
        disk._load(f)
        for sid in list(self._strangers):
            if sid in self._saved and sid not in disk._strangers:
                del self._strangers[sid]
            elif sid in disk._strangers and disk._strangers[sid].ignored:
                self._strangers[sid].ignored = True
        for sid, st in disk._strangers.items():
            if sid not in self._strangers and sid not in self._saved:
                self._strangers[sid] = st  # made there (another writer): kept
        self._next = max(self._next, disk._next)
        self._disk, self._saved = _stamp(f), set(disk._strangers)

    def _damaged(self, why: str) -> PeopleError:
        return PeopleError(f"{self.folder / STORE_FILE}: damaged stranger store ({why}); delete "
                           f"{self.folder} (only the strangers are lost, not the people)")

    def _load(self, f: Path) -> None:
        try:
            with np.load(f, allow_pickle=False) as z:
                emb = np.asarray(z["embeddings"], np.float32)
                owners = np.asarray(z["owners"], np.int64)
                index = json.loads(str(z["index"]))
        except Exception as e:  # noqa: BLE001 - damaged, whichever way (as gallery._read_person)
            raise self._damaged(type(e).__name__) from e
        if not isinstance(index, dict) or index.get("model") != MODEL_ID:
            raise self._damaged("another face model or not a store")
        if emb.ndim != 2 or emb.shape[1:] != (EMBEDDING_SIZE,) or owners.shape != (len(emb),):
            raise self._damaged(f"embeddings {emb.shape}, owners {owners.shape}")
        try:
            self._next = int(index.get("next", 1))
            for s in index.get("strangers", []):
                st = Stranger(str(s["id"]), float(s["first_seen"]), float(s["last_seen"]),
                              [str(c) for c in s.get("cameras", [])], int(s.get("seen", 0)),
                              bool(s.get("ignored", False)), [dict(v) for v in s.get("views", [])])
                st.embeddings = emb[owners == _num(st.id)]
                if len(st.embeddings) != len(st.views):
                    raise ValueError(f"{st.id}: {len(st.embeddings)} embeddings, {len(st.views)} views")
                self._strangers[st.id] = st
        except (KeyError, TypeError, ValueError, InputError) as e:
            raise self._damaged(str(e).splitlines()[0] if str(e) else type(e).__name__) from e

    def save(self, now: float | None = None) -> None:
        """Prune (:meth:`prune`), then write the store whole (temp file, rename) and delete the
        thumbnails no view refers to any more. What another process changed in the file since
        this store read it is taken in first (its names, ignores and forgets win)."""
        if not self.people.exists():
            _private_dir(self.people)
        _private_dir(self.folder)
        self._sync()
        self.prune(now)
        rows, owners, index = [], [], []
        for st in self._strangers.values():
            rows.append(st.embeddings)
            owners.extend([_num(st.id)] * len(st.embeddings))
            index.append({"id": st.id, "first_seen": st.first_seen, "last_seen": st.last_seen,
                          "cameras": st.cameras, "seen": st.seen, "ignored": st.ignored,
                          "best": st.best, "views": st.views})
        emb = np.concatenate(rows) if rows else np.zeros((0, EMBEDDING_SIZE), np.float32)
        text = json.dumps({"model": MODEL_ID, "next": self._next, "strangers": index})
        tmp = self.folder / f".{STORE_FILE}.{uuid.uuid4().hex[:8]}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, embeddings=emb.astype(np.float32),
                         owners=np.asarray(owners, np.int64), index=np.array(text))
            os.replace(tmp, self.folder / STORE_FILE)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._disk = _stamp(self.folder / STORE_FILE)
        self._saved = set(self._strangers)
        keep = {str(v["thumbnail"]) for st in self._strangers.values() for v in st.views}
        old = time.time() - ORPHAN_AGE
        for p in self.folder.iterdir():
            # dropped views, temp files of an interrupted save; not a file just written by
            # another process (its thumbnail before its save, its temp file before the rename)
            if p.name != STORE_FILE and p.name not in keep and p.is_file() \
                    and p.stat().st_mtime < old:
                p.unlink(missing_ok=True)

    # -- the strangers -----------------------------------------------------------------------
    def strangers(self) -> list[Stranger]:
        """Every stranger, the most recently seen first."""
        return sorted(self._strangers.values(), key=lambda s: (-s.last_seen, _num(s.id)))

    def get(self, sid: str) -> Stranger:
        st = self._strangers.get(sid)
        if st is None:
            _num(sid)
            raise PeopleError(f"{sid}: no such stranger in {self.people} (see 'livefaces people "
                              "strangers')")
        return st

    def __len__(self) -> int:
        return len(self._strangers)

    def thumbnail_path(self, sid: str) -> Path | None:
        """The best view's thumbnail file of ``sid`` (``None``: none kept)."""
        best = self.get(sid).best
        return self.folder / best if best else None

    def nearest(self, embedding: np.ndarray) -> tuple[Stranger | None, float]:
        """The stranger with the kept view nearest ``embedding``, and that distance."""
        e = np.asarray(embedding, np.float32).reshape(EMBEDDING_SIZE)
        best, dist = None, math.inf
        for st in self._strangers.values():
            if len(st.embeddings):
                d = float(np.min(np.linalg.norm(st.embeddings - e[None], axis=1)))
                if d < dist:
                    best, dist = st, d
        return best, dist

    def observe(self, embedding: np.ndarray, image: np.ndarray, box: np.ndarray,
                landmarks: np.ndarray, camera: str, now: float | None = None) -> Sighting | None:
        """One unknown face (its ``embedding``; ``box``/``landmarks`` in pixels of ``image``
        RGB, seen by ``camera``): the stranger it is, made if new. ``None`` when the face fails
        the quality gates (:func:`quality`): it neither makes nor feeds a stranger. Call
        :meth:`save` to write."""
        now = time.time() if now is None else float(now)
        q = quality(image, box, landmarks)
        if q.refusal(self.options) is not None:
            return None
        self._sync()  # one stat; the file is read again only when another process changed it
        st, dist = self.nearest(embedding)
        new = st is None or dist > self.options.threshold
        if new:
            st = Stranger(f"stranger-{self._next}", now, now)
            self._next += 1
            self._strangers[st.id] = st
            dist = math.inf
        assert st is not None
        st.last_seen = max(st.last_seen, now)
        st.seen += 1
        if camera not in st.cameras:
            st.cameras.append(camera)
        kept = self._keep(st, embedding, thumbnail(image, box), camera, now, q.score)
        today = time.gmtime(now)[:3]
        return Sighting(st.id, new, time.gmtime(st.first_seen)[:3] == today, st.ignored, kept, dist)

    def _keep(self, st: Stranger, embedding: np.ndarray, thumb: np.ndarray, camera: str,
              now: float, score: float) -> bool:
        """Keep a view (replacing the worst when ``max_views`` are kept and it is better)."""
        if len(st.views) >= self.options.max_views:
            worst = int(np.argmin([float(v.get("score", 0.0)) for v in st.views]))
            if score <= float(st.views[worst].get("score", 0.0)):
                return False
            self._drop_view(st, worst)
        k = 1 + max((int(str(v["thumbnail"]).rsplit(".", 2)[-2]) for v in st.views), default=0)
        name = f"{st.id}.{k}.jpg"
        if not self.people.exists():
            _private_dir(self.people)
        _private_dir(self.folder)
        write_image(self.folder / name, thumb)
        if os.name == "posix":
            os.chmod(self.folder / name, 0o600)
        st.views.append({"thumbnail": name, "camera": camera, "time": now, "score": round(score, 4)})
        st.embeddings = np.concatenate(
            [st.embeddings, np.asarray(embedding, np.float32).reshape(1, EMBEDDING_SIZE)])
        return True

    def _drop_view(self, st: Stranger, i: int) -> None:
        st.views.pop(i)
        st.embeddings = np.delete(st.embeddings, i, axis=0)

    def prune(self, now: float | None = None) -> list[str]:
        """Delete the strangers not seen for ``retention_days`` and, past ``max_strangers``,
        the least recently seen; the ids deleted."""
        now = time.time() if now is None else float(now)
        limit = now - 86400.0 * self.options.retention_days
        gone = [s.id for s in self._strangers.values() if s.last_seen < limit]
        alive = sorted((s for s in self._strangers.values() if s.id not in gone),
                       key=lambda s: s.last_seen, reverse=True)
        gone += [s.id for s in alive[self.options.max_strangers:]]
        for sid in gone:
            del self._strangers[sid]
        return gone

    def forget(self, sid: str) -> None:
        """Delete a stranger (its views and thumbnails, at the next :meth:`save`)."""
        del self._strangers[self.get(sid).id]

    def ignore(self, sid: str) -> None:
        """Keep ``sid`` as a negative: still matched (so it is not made again), never reported."""
        self.get(sid).ignored = True

    def merge(self, keep: str, other: str) -> Stranger:
        """Fold ``other`` into ``keep`` (views, cameras, times; the best ``max_views`` views)."""
        a, b = self.get(keep), self.get(other)
        if a is b:
            raise InputError(f"{keep}: cannot merge a stranger with itself")
        a.first_seen, a.last_seen = min(a.first_seen, b.first_seen), max(a.last_seen, b.last_seen)
        a.seen += b.seen
        a.cameras += [c for c in b.cameras if c not in a.cameras]
        a.ignored = a.ignored or b.ignored
        a.views += b.views
        a.embeddings = np.concatenate([a.embeddings, b.embeddings])
        while len(a.views) > self.options.max_views:
            self._drop_view(a, int(np.argmin([float(v.get("score", 0.0)) for v in a.views])))
        del self._strangers[b.id]
        return a

    def name(self, sid: str, person: str) -> int:
        """Enrol every kept view of ``sid`` as ``person`` (:func:`~.gallery.save_person`, all
        or nothing), then delete the stranger (at the next :meth:`save`); the views enrolled."""
        check_name(person)
        st = self.get(sid)
        if not st.views:
            raise PeopleError(f"{sid}: no view kept to enrol")
        from ..imageio import read_image

        photos: list[tuple[str, np.ndarray, np.ndarray]] = []
        for v, emb in zip(st.views, st.embeddings):
            thumb = self.folder / str(v["thumbnail"])
            if "/" in str(v["thumbnail"]) or not thumb.is_file():
                continue  # a view whose thumbnail is gone: its embedding has nothing to show
            photos.append((f"{sid}:{v['thumbnail']}", emb, read_image(thumb)))
        if not photos:
            raise PeopleError(f"{sid}: no view with its thumbnail kept to enrol")
        save_person(self.people, person, photos)
        del self._strangers[st.id]
        return len(photos)


def _stamp(f: Path) -> tuple[int, int, int]:
    st = f.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino

