"""What the identification worker process and its owner say to each other: pickled frozen
dataclasses over the child's stdin/stdout, one class per kind of message.

Owner → worker: :class:`Start` first, then :class:`Embed` and :class:`Enrol` requests; ``None``
asks the worker to leave (so does the end of its stdin). Worker → owner: :class:`Ready` or
:class:`StartFailed` after :class:`Start`; :class:`Matched` or :class:`EmbedFailed` per
:class:`Embed`; :class:`Enrolled` or :class:`EnrolFailed` per :class:`Enrol`. ``key`` pairs an
answer with its request. Only names, distances and stranger ids come back: an embedding never
leaves the worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import Faces
from .strangers import StrangerOptions


@dataclass(frozen=True)
class Start:
    """Load the recogniser and the people folder ``people`` (an absolute path); with
    ``strangers``, also its stranger store (unknown faces get a stranger id)."""

    people: str
    strangers: StrangerOptions | None = None


@dataclass(frozen=True)
class Embed:
    """Embed ``face`` (one row, in pixels of ``crop``) and match it against the gallery."""

    key: int
    crop: np.ndarray
    face: Faces
    camera: str = ""


@dataclass(frozen=True)
class Enrol:
    """Add ``face`` (one row, in pixels of ``crop``) to person ``name`` and reload the gallery."""

    key: int
    name: str
    crop: np.ndarray
    face: Faces


@dataclass(frozen=True)
class StrangerAction:
    """``action`` (``name``, ``ignore``, ``forget`` or ``merge``) stranger ``stranger`` in the
    worker's store (``name``: enrol its views as person ``name`` and reload the gallery;
    ``merge``: fold stranger ``name`` into it); answered
    :class:`Enrolled` (the names after it) or :class:`EnrolFailed`."""

    key: int
    stranger: str
    action: str
    name: str | None = None


@dataclass(frozen=True)
class Ready:
    """Started: the enrolled ``names`` and the recogniser's match ``threshold``."""

    names: tuple[str, ...]
    threshold: float


@dataclass(frozen=True)
class StartFailed:
    """Could not start; ``reason`` is one line."""

    reason: str


@dataclass(frozen=True)
class Matched:
    """The nearest enrolled person of an :class:`Embed` (``name`` None: nobody within the
    threshold), its ``distance``, and the worker's CPU ``seconds`` for it. With strangers on,
    an unknown face that passed the quality gates also has its ``stranger`` id (``ignored``:
    one kept as a negative, not to be reported)."""

    key: int
    name: str | None
    distance: float
    seconds: float
    stranger: str | None = None
    ignored: bool = False


@dataclass(frozen=True)
class EmbedFailed:
    key: int
    reason: str


@dataclass(frozen=True)
class Enrolled:
    """An :class:`Enrol` done: the enrolled ``names`` after it."""

    key: int
    names: tuple[str, ...]


@dataclass(frozen=True)
class EnrolFailed:
    key: int
    reason: str


Request = Start | Embed | Enrol | StrangerAction | None
Answer = Ready | StartFailed | Matched | EmbedFailed | Enrolled | EnrolFailed
