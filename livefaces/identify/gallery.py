"""Known people: the ``--people`` folder and matching embeddings against it.

Layout (written by ``livefaces people add``; folder 0700, files 0600)::

    DIR/
      NAME/
        person.json      {"name": ..., "model": ..., "photos": [{"source": "a.jpg",
                          "thumbnail": "1.jpg", "added": "2026-12-03T17:00:00Z"}, ...]}
        embeddings.npz   "embeddings": (K, 128) float32, one row per photo, in that order
        1.jpg ...        a small face thumbnail per photo (for people to check who is who)

No pickle anywhere: ``np.load(..., allow_pickle=False)`` and JSON. Loading refuses a folder
(or anything in it) that other users can read or write: embeddings and thumbnails are
biometric data.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, PeopleError
from ..imageio import write_image
from .recognizer import DEFAULT_THRESHOLD, EMBEDDING_SIZE

#: ``$LIVEFACES_PEOPLE``: the people folder when ``--people`` is not given to ``livefaces people``
PEOPLE_ENV = "LIVEFACES_PEOPLE"
DEFAULT_PEOPLE_DIR = "people"
MODEL_ID = "dlib_face_recognition_resnet_model_v1+livefaces-chip-v1"
#: the face thumbnail kept beside each photo's embedding: pixels, and margin around the box
THUMB_SIZE, THUMB_MARGIN = 96, 16


def thumbnail(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The small face thumbnail stored for a photo (``image`` RGB, ``box`` xyxy pixels)."""
    from ..align import crop_box

    return crop_box(image, box, size=THUMB_SIZE, margin=THUMB_MARGIN)
PERSON_FILE = "person.json"
EMBEDDINGS_FILE = "embeddings.npz"
#: names: letters, digits, ``_ - .``, not starting with ``.`` or ``-``, at most 64 characters
#: (they become folder names and MQTT topic levels: no ``/ + #`` or spaces)
NAME_RE = re.compile(r"^[^\W_][\w.-]{0,63}$")


def default_people_dir() -> Path:
    """``$LIVEFACES_PEOPLE`` if set, else ``./people``."""
    return Path(os.environ.get(PEOPLE_ENV) or DEFAULT_PEOPLE_DIR)


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or name.endswith(".tmp"):
        raise InputError(f"invalid name {name!r}: use letters, digits, '_', '-' or '.' "
                         "(no spaces or '/'), starting with a letter or digit, at most 64 characters")
    return name


@dataclass(frozen=True)
class Match:
    """The person an embedding belongs to.

    Attributes:
        name: the known person, or ``None``: unknown (the nearest person is farther than the
            threshold, or the gallery is empty).
        distance: Euclidean distance to the nearest photo of the nearest person (``inf``
            with an empty gallery). Lower is more alike.
    """

    name: str | None
    distance: float

    def to_json(self) -> dict[str, Any]:
        """``{"name": NAME or null, "distance": d}`` (``distance`` null when infinite)."""
        return {"name": self.name,
                "distance": round(self.distance, 4) if math.isfinite(self.distance) else None}


def _unsafe(path: Path) -> int | None:
    """The mode of ``path`` (of its target, for a symbolic link) if other users may read or
    write it (POSIX), else ``None``."""
    if os.name != "posix":
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & 0o077 else None


def check_people_dir(people_dir: Path) -> None:
    """Raise :class:`PeopleError` if ``people_dir`` is not an existing folder (saying how to
    make one) or is open to other users (:func:`check_private`)."""
    if not people_dir.is_dir():
        raise PeopleError(f"{people_dir}: no such people folder (add someone with "
                          f"'livefaces people add NAME PHOTO --people {people_dir}')")
    check_private(people_dir)


def check_private(people_dir: Path, removing: Path | None = None) -> None:
    """Raise :class:`PeopleError` if ``people_dir`` or anything in it is readable or
    writable by group or others (the message says the ``chmod`` that fixes it), belongs to
    another user (POSIX: the ``chown``), or is a symbolic link to nothing. ``removing``: a
    person folder about to be deleted (its dangling links are no obstacle)."""
    paths = [people_dir] + sorted(people_dir.rglob("*"))
    uid = os.getuid() if hasattr(os, "getuid") else None
    for p in paths:
        if p.is_symlink() and not p.exists():
            if removing is not None and p.parent == removing:
                continue
            raise PeopleError(f"{p}: a symbolic link to nothing ({os.readlink(p)!r}); remove it "
                              "or point it at a person folder")
        owner = p.stat().st_uid
        if uid is not None and owner != uid:
            raise PeopleError(
                f"{p} belongs to another user (uid {owner}; this process runs as uid {uid}); "
                f"face data must be the user's own: run 'chown -R {uid} {people_dir}' or run "
                "livefaces as its owner")
        mode = _unsafe(p)
        if mode is not None:
            raise PeopleError(
                f"{p} is open to other users (mode {mode:04o}); face data must be private: "
                f"run 'chmod -R go= {people_dir}'")


class Gallery:
    """Embeddings of known people; :meth:`match` names the person an embedding belongs to.

    A person may have several photos; the distance to a person is the distance to their
    nearest photo. Build one with :meth:`load` (a ``--people`` folder) or :meth:`empty`.
    """

    def __init__(self, names: Sequence[str], embeddings: np.ndarray, owners: Sequence[int] | np.ndarray,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self._names = list(names)
        self._emb = np.asarray(embeddings, np.float32).reshape(-1, EMBEDDING_SIZE)
        self._owner = np.asarray(owners, np.int64).reshape(-1)
        if len(self._owner) != len(self._emb):
            raise InputError(f"{len(self._emb)} embeddings but {len(self._owner)} owners")
        #: distance at or below which an embedding is taken to be a known person
        self.threshold = float(threshold)

    @classmethod
    def empty(cls, threshold: float = DEFAULT_THRESHOLD) -> Gallery:
        """A gallery with nobody in it (every match is unknown)."""
        return cls([], np.zeros((0, EMBEDDING_SIZE), np.float32), [], threshold)

    @classmethod
    def load(cls, people_dir: str | os.PathLike[str], threshold: float = DEFAULT_THRESHOLD) -> Gallery:
        """The people of a folder written by ``livefaces people add``.

        Raises :class:`~livefaces.errors.PeopleError` if the folder is missing, open to other
        users (group/others may read or write it) or damaged.
        """
        root = Path(people_dir)
        check_people_dir(root)
        names: list[str] = []
        rows: list[np.ndarray] = []
        owners: list[int] = []
        for person in read_people(root):
            emb = person.embeddings
            names.append(person.name)
            rows.append(emb)
            owners.extend([len(names) - 1] * len(emb))
        emb_all = np.concatenate(rows) if rows else np.zeros((0, EMBEDDING_SIZE), np.float32)
        return cls(names, emb_all, owners, threshold)

    @property
    def names(self) -> list[str]:
        """The known people, sorted."""
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def match(self, embedding: np.ndarray) -> Match:
        """The known person ``embedding`` ``(128,)`` belongs to, or ``Match(None, d)``."""
        if len(self._emb) == 0:
            return Match(None, math.inf)
        e = np.asarray(embedding, np.float32).reshape(EMBEDDING_SIZE)
        d = np.linalg.norm(self._emb - e[None], axis=1)
        i = int(np.argmin(d))
        dist = float(d[i])
        return Match(self._names[int(self._owner[i])] if dist <= self.threshold else None, dist)

    def match_all(self, embeddings: Iterable[np.ndarray]) -> list[Match]:
        """:meth:`match` for each row of ``embeddings`` ``(N, 128)``."""
        return [self.match(e) for e in embeddings]


@dataclass(frozen=True)
class Person:
    """One person of a people folder (``livefaces people list``)."""

    name: str
    folder: Path
    photos: list[dict[str, Any]]
    embeddings: np.ndarray


def _damaged(path: Path, why: str) -> PeopleError:
    """The one line for a damaged file of a person folder: which file, why, what to do."""
    name = path.parent.name
    return PeopleError(f"{path}: damaged person folder ({why}); remove it with 'livefaces "
                       f"people remove {name}' (or delete {path.parent}) and add the photos again")


def _why(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError):
        return "missing"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _read_person(folder: Path) -> Person:
    meta_file, emb_file = folder / PERSON_FILE, folder / EMBEDDINGS_FILE
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: not JSON, not UTF-8
        raise _damaged(meta_file, _why(e)) from e
    if not isinstance(meta, dict):
        raise _damaged(meta_file, f"a JSON {type(meta).__name__}, not an object")
    try:
        with np.load(emb_file, allow_pickle=False) as z:
            emb = np.asarray(z["embeddings"], np.float32)
    except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, zlib.error, KeyError, a bare
        # .npy (no context manager: AttributeError), ValueError...: damaged, whichever it is
        raise _damaged(emb_file, _why(e)) from e
    photos = meta.get("photos")
    if meta.get("model") != MODEL_ID:
        raise PeopleError(f"{meta_file}: made with another face model ({meta.get('model')!r}); "
                          "remove the person and add the photos again")
    if not isinstance(photos, list) or emb.ndim != 2 or emb.shape != (len(photos), EMBEDDING_SIZE):
        raise _damaged(emb_file, f"embeddings {emb.shape} for "
                                 f"{len(photos) if isinstance(photos, list) else '?'} photos")
    return Person(folder.name, folder, photos, emb)


def read_people(root: Path) -> list[Person]:
    """The people of folder ``root``, sorted by name (no permission check: see
    :func:`check_private`). Names on disk follow the rules of :func:`check_name`, as the
    CLI's: a folder named otherwise (``x+#``, HTML, a leading ``_``) is refused with one
    line (a :class:`PeopleError` naming it), as a damaged folder is."""
    out = []
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue  # our temporary folders, stray files
        try:
            check_name(folder.name)
        except InputError:
            raise PeopleError(f"{root}: the folder {folder.name!r} is not a person name "
                              "(letters, digits, '_', '-' or '.', starting with a letter or "
                              "digit, at most 64 characters); rename or remove that folder") from None
        out.append(_read_person(folder))
    return out


def person_embeddings(root: Path, name: str) -> np.ndarray:
    """The embeddings ``(N, 128)`` of ``name`` in people folder ``root``; none (``(0, 128)``)
    when the folder or the person does not exist yet."""
    folder = root / name
    if not (folder / PERSON_FILE).is_file():
        return np.zeros((0, EMBEDDING_SIZE), np.float32)
    return _read_person(folder).embeddings


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, exist_ok=True)
    if os.name == "posix":
        os.chmod(path, 0o700)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if os.name == "posix":
        os.chmod(path, 0o600)


def save_person(root: Path, name: str, new_photos: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> Person:
    """Add photos to ``name`` in ``root`` (created 0700 if missing), all or nothing.

    ``new_photos``: ``(source name, embedding (128,), thumbnail RGB image)`` each.
    The person's folder is rebuilt beside the old one and swapped in by renames, so an
    interrupted add leaves the previous state.
    """
    check_name(name)
    if not root.exists():
        _private_dir(root)
    check_private(root)
    # the whole folder is read first: a damaged person elsewhere stops the add before anything
    # is written (the gallery reloaded after it would fail with the new person already there)
    people = {p.name: p for p in read_people(root)}
    old = root / name
    previous = people.get(name)
    tmp = root / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    _private_dir(tmp)
    try:
        photos: list[dict[str, Any]] = []
        rows: list[np.ndarray] = []
        if previous is not None:
            for p in previous.photos:
                thumb = str(p.get("thumbnail", ""))
                if thumb and (old / thumb).is_file() and "/" not in thumb:
                    _write_private(tmp / thumb, (old / thumb).read_bytes())
                photos.append(p)
            rows.append(previous.embeddings)
        n = len(photos)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for k, (source, emb, thumb_rgb) in enumerate(new_photos, start=n + 1):
            thumb = f"{k}.jpg"
            write_image(tmp / thumb, thumb_rgb)  # inside the 0700 folder, then made 0600
            if os.name == "posix":
                os.chmod(tmp / thumb, 0o600)
            photos.append({"source": source, "thumbnail": thumb, "added": stamp})
            rows.append(np.asarray(emb, np.float32).reshape(1, EMBEDDING_SIZE))
        emb_all = np.concatenate(rows).astype(np.float32)
        meta = {"name": name, "model": MODEL_ID, "photos": photos}
        _write_private(tmp / PERSON_FILE, (json.dumps(meta, indent=1) + "\n").encode("utf-8"))
        fd = os.open(tmp / EMBEDDINGS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, embeddings=emb_all)
        if previous is not None:
            trash = root / f".{name}.{uuid.uuid4().hex[:8]}.old.tmp"
            os.rename(old, trash)
            os.rename(tmp, old)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _read_person(old)


def remove_person(root: Path, name: str) -> None:
    """Delete ``name`` from ``root``; :class:`PeopleError` if there is no such person."""
    check_name(name)
    folder = root / name
    # a damaged person (its person.json a link to nothing, say) can be removed too
    if folder.is_symlink() or not folder.is_dir() or not os.path.lexists(folder / PERSON_FILE):
        raise PeopleError(f"{name}: no such person in {root}")
    trash = root / f".{name}.{uuid.uuid4().hex[:8]}.old.tmp"
    os.rename(folder, trash)
    shutil.rmtree(trash)
