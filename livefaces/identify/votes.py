"""The vote policy of live identification: which frames of a track are embedded, and how the
matches of its frames become a name. Pure bookkeeping: the embedding runs in the worker
process (``worker.py``), whose owner (``live.py``) hands the matches back here.

* **Which frames**: only faces the networks verified on that frame (detected or refined), at
  least ``min_face`` px and ``min_confidence``; a track's first ``first_frames`` such faces
  (``first_spacing`` s apart), then one every ``interval`` s; at most one request per track
  in flight.
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
* **Strangers** (``IdentifyOptions.strangers``, off by default): the worker also clusters the
  unknown faces that pass the quality gates into strangers (:mod:`.strangers`) and answers
  their id; a track *settled as unknown* takes the stranger id with the most weight among its
  votes (``Identity.stranger``), announced with a ``face.identified`` like a name. An ignored
  stranger (a negative) is never put on a track.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..types import Faces, Frame, FrameResult, Identified, Identity
from .strangers import StrangerOptions


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
    #: cluster unknown faces into strangers (:class:`~.strangers.StrangerOptions`); None: off
    strangers: StrangerOptions | None = None

    def __post_init__(self) -> None:
        if self.queue < 1 or self.first_frames < 0 or self.min_votes < 1:
            raise ValueError("queue and min_votes must be at least 1, first_frames at least 0")
        if not 0.5 <= self.keep_share <= self.settle_share <= 1.0:
            raise ValueError("need 0.5 <= keep_share <= settle_share <= 1")


class Requests(Protocol):
    """Where :class:`TrackVotes` sends a face to be embedded (the
    :class:`~livefaces.identify.live.LiveIdentifier`)."""

    options: IdentifyOptions

    def submit(self, camera: str, track_id: int, frame: Frame, face: Faces, weight: float) -> bool:
        """Queue one face for embedding; False when it was not queued."""


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
    strangers: dict[str, float] = field(default_factory=dict)  # stranger id -> weight
    ignored: set[str] = field(default_factory=set)
    announced_stranger: str | None = None
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
    """The identities of ONE camera's tracks (a :class:`~livefaces.types.TrackIdentities`);
    called by the detect loop only. ``owner`` queues the embedding requests and holds the
    options."""

    def __init__(self, camera: str, owner: Requests) -> None:
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

    def vote(self, track_id: int, name: str | None, distance: float, weight: float,
             stranger: str | None = None, ignored: bool = False) -> Identified | None:
        """One match for a track; the :class:`Identified` if its settled name (or, for a track
        settled as unknown, its stranger id) changed."""
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
        if stranger is not None and tr.identity.stranger not in (None, stranger):
            tr.strangers = {}  # as for names: another stranger's face now, settled afresh
        if stranger is not None:
            tr.strangers[stranger] = tr.strangers.get(stranger, 0.0) + weight
            if ignored:
                tr.ignored.add(stranger)
        tr.identity = decide(tr.weights, tr.counts, tr.dist, tr.identity.name, self._owner.options)
        if tr.identity.name is None and tr.identity.settled and tr.strangers:
            best = max(tr.strangers.items(), key=lambda kv: kv[1])[0]
            if best not in tr.ignored:
                from dataclasses import replace

                tr.identity = replace(tr.identity, stranger=best)
        if tr.identity.name != tr.announced or (
                tr.identity.name is None and tr.identity.stranger != tr.announced_stranger):
            before, tr.announced = tr.announced, tr.identity.name
            tr.announced_stranger = tr.identity.stranger
            return Identified(self.camera, track_id, tr.identity, before)
        return None

    def failed(self, track_id: int) -> None:
        tr = self._tracks.get(track_id)
        if tr is not None:
            tr.pending = max(0, tr.pending - 1)
