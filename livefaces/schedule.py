"""Which frames go through the detector (the others are carried by the tracker).

Four policies; all see every frame. A camera's detection schedule (:class:`DetectSchedule`)
belongs to the camera (:class:`livefaces.pipeline.Camera` passes it in); a policy used alone
keeps one per source name (:attr:`Frame.source <livefaces.types.Frame.source>`):

* :class:`EveryN` — ``--detect-every N``: frames whose index is N past the last detected one.
* :class:`FixedRate` — ``--detect-fps F``: at most F detections per second per source.
* :class:`PerCameraRate` — ``detect_fps`` per camera (``livefaces serve``): a schedule of
  ``fps`` detections per second for each camera (its :attr:`DetectSchedule.fps`).
* :class:`Adaptive` (default) — keeps the detector inside a latency budget. For live sources
  it detects as often as a duty-cycle limit allows (the detector may use at most
  ``max_duty`` of the wall time, leaving CPU for decoding, tracking, drawing and encoding),
  and if one detection batch takes longer than ``budget`` seconds it shrinks the image the
  detector sees (``scale``, down to ``min_scale``; faces smaller than ``min_face / scale``
  are then missed) and grows it back when there is room. Files and folders that are not
  paced in real time have no latency to keep: every frame is detected.

Only the newest waiting frame of a live source can be chosen; older ones are tracked, so a
slow detector never delays the frames behind it by more than one detection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from .types import Frame


@dataclass
class DetectSchedule:
    """One camera's detection schedule, what a policy remembers of it: the last detected
    frame's index and time.

    ``fps`` is this camera's own detection rate (:class:`PerCameraRate`; None: the policy's
    default) and ``next_due`` the time its next detection is due on that schedule."""

    last_index: int | None = None
    last_time: float | None = None
    fps: float | None = None
    next_due: float | None = None


@dataclass
class DetectPolicy:
    """Base: subclasses implement :meth:`_due`. ``scale`` is the detector input scale."""

    scale: float = 1.0
    detect_seconds: float = 0.0
    """exponential average of the seconds one detection batch takes"""
    _state: dict[str, DetectSchedule] = field(default_factory=dict, repr=False)

    def register(self, name: str, state: DetectSchedule) -> None:
        """Let the policy see ``state`` (owned by the camera ``name``) in :meth:`describe`."""
        self._state[name] = state

    def _of(self, frame: Frame, state: DetectSchedule | None) -> DetectSchedule:
        return state if state is not None else self._state.setdefault(frame.source, DetectSchedule())

    def due(self, frame: Frame, live: bool, now: float, state: DetectSchedule | None = None) -> bool:
        """Should ``frame`` go through the detector? ``state``: the source's (default: the
        one this policy keeps for ``frame.source``)."""
        st = self._of(frame, state)
        if st.last_index is None or not self._applies(live):
            return True
        return self._due(st, frame, now)

    def _applies(self, live: bool) -> bool:
        return True

    def _due(self, st: DetectSchedule, frame: Frame, now: float) -> bool:
        raise NotImplementedError

    def detected(self, frame: Frame, now: float, state: DetectSchedule | None = None) -> None:
        st = self._of(frame, state)
        st.last_index, st.last_time = frame.index, now

    def observe(self, seconds: float) -> None:
        """Feed the duration of one detection batch."""
        a = 0.2 if self.detect_seconds else 1.0
        self.detect_seconds = a * seconds + (1 - a) * self.detect_seconds

    def describe(self) -> str:
        return type(self).__name__

    def expected_interval(self, frame_interval: float | None) -> float | None:
        """Seconds between detections this policy asks for on a live source delivering a
        frame every ``frame_interval`` s (None: unknown); None when it asks for no rate."""
        return None


@dataclass
class EveryN(DetectPolicy):
    n: int = 1

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"--detect-every must be >= 1, got {self.n}")

    def _due(self, st: DetectSchedule, frame: Frame, now: float) -> bool:
        assert st.last_index is not None
        return frame.index - st.last_index >= self.n

    def describe(self) -> str:
        return f"every {self.n} frame(s)"

    def expected_interval(self, frame_interval: float | None) -> float | None:
        return None if not frame_interval else self.n * frame_interval


@dataclass
class FixedRate(DetectPolicy):
    fps: float = 5.0

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"--detect-fps must be > 0, got {self.fps}")

    def _due(self, st: DetectSchedule, frame: Frame, now: float) -> bool:
        assert st.last_time is not None
        return now - st.last_time >= 1.0 / self.fps - 1e-3

    def describe(self) -> str:
        return f"{self.fps:g} detections/s"

    def expected_interval(self, frame_interval: float | None) -> float | None:
        return max(1.0 / self.fps, frame_interval or 0.0)


class PerCameraRate(DetectPolicy):
    """About ``fps`` detections per second per camera (live sources); files that are not paced
    in real time are detected on every frame. A camera's rate is its
    :attr:`DetectSchedule.fps`, else ``fps[name]``, else ``default``.

    A schedule, not a minimum gap: detection k is due at ``t0 + k / fps``. With a minimum gap
    a 15 fps camera asked for 5/s would get ~4.3/s (the first frame *after* 200 ms comes up to
    66 ms late every time); the schedule keeps the average at the target, and never builds a
    backlog of more than one interval after a stall.
    """

    def __init__(self, fps: dict[str, float] | None = None, default: float = 5.0):
        super().__init__()
        self.fps = dict(fps or {})
        self.default = default

    def _due(self, st: DetectSchedule, frame: Frame, now: float) -> bool:
        fps = st.fps if st.fps is not None else self.fps.get(frame.source, self.default)
        interval = 1.0 / fps
        nxt = st.next_due
        if nxt is None:
            assert st.last_time is not None
            nxt = st.last_time + interval
        if now + 1e-3 < nxt:
            return False
        nxt += interval
        st.next_due = now if nxt < now - interval else nxt  # no backlog after a stall
        return True

    def describe(self) -> str:
        rates = dict(self.fps)
        rates.update({k: v.fps for k, v in self._state.items() if v.fps is not None})
        return "per camera: " + ", ".join(f"{k} {v:g}/s" for k, v in rates.items())

    def expected_interval(self, frame_interval: float | None) -> float | None:
        return None  # per camera; serve judges each camera's rate (livefaces.health)


@dataclass
class Adaptive(DetectPolicy):
    budget: float = 0.1
    max_duty: float = 0.5
    min_scale: float = 0.5

    def _applies(self, live: bool) -> bool:
        return live

    def _due(self, st: DetectSchedule, frame: Frame, now: float) -> bool:
        assert st.last_time is not None
        gap = self.detect_seconds * (1.0 / self.max_duty - 1.0)
        return now - st.last_time >= gap

    def observe(self, seconds: float) -> None:
        super().observe(seconds)
        if self.detect_seconds > self.budget and self.scale > self.min_scale:
            self.scale = max(self.min_scale, self.scale * 0.9)
            self.detect_seconds *= 0.81  # expected effect, so one slow batch is not counted twice
        elif self.detect_seconds < 0.6 * self.budget and self.scale < 1.0:
            self.scale = min(1.0, self.scale * 1.05)

    def describe(self) -> str:
        return f"adaptive (budget {self.budget * 1000:.0f} ms, detector scale {self.scale:.2f})"

    def expected_interval(self, frame_interval: float | None) -> float | None:
        # a detection within budget, at most max_duty of the time, on the next frame
        return self.budget / self.max_duty + (frame_interval or 0.0)


# --------------------------------------------------------------------------- the plan
# What each frame goes through: the full cascade, refinement of the tracked faces (the cascade
# in each face's region), the tracker alone, or nothing (a still scene with no face). The
# detection policy above says how often the FULL cascade may run; the plan decides whether it
# needs to, from the camera's state (:class:`FrameState`) and the gate's options.


class Action(str, Enum):
    """What one frame of a camera goes through in the detect loop."""

    DETECT = "detect"
    REFINE = "refine"
    TRACK = "track"
    SKIP = "skip"

    @property
    def mode(self) -> str:
        """The word results and statistics use (:attr:`FrameResult.mode`)."""
        return _MODES[self]


_MODES = {Action.DETECT: "detected", Action.REFINE: "refined", Action.TRACK: "tracked",
          Action.SKIP: "skipped"}

#: Of the frames a live source has waiting, the newest this many get network work (a full
#: detection for the newest, refinement for the others); older ones are carried by the tracker,
#: so a loop that fell behind catches up at once instead of refining a backlog.
REFINE_BACKLOG = 3


@dataclass(frozen=True)
class GateOptions:
    """Motion gating and refinement of tracked faces (live sources; files and folders are
    detected on every frame unless the policy thins them out).

    Attributes:
        motion: gate the full detector by motion: with no motion and no tracked face, it runs
            only every ``idle_interval`` seconds; with tracked faces, more often only where
            motion appears outside them.
        refine: verify tracked faces on frames without a full detection with the networks,
            in each face's region (boxes and landmarks on every frame come from the networks;
            a face that is gone ends its track after a few failed refinements).
        idle_interval: seconds between full detections of a still scene (no motion outside
            tracked faces); also the longest gap between full detections ever.
        full_interval: seconds between full detections while something moves outside the
            tracked faces (new faces may be coming); with no face tracked and motion, the
            policy alone says how often.
        refine_fps: at most this many refinements per second per camera (None: every frame;
            ``serve`` uses each camera's ``detect_fps``).
    """

    motion: bool = True
    refine: bool = True
    idle_interval: float = 5.0
    full_interval: float = 0.3
    refine_fps: float | None = None

    def __post_init__(self) -> None:
        for name in ("idle_interval", "full_interval"):
            v = getattr(self, name)
            if not (v > 0 and v < float("inf")):
                raise ValueError(f"{name} must be a positive number of seconds, got {v}")
        if self.refine_fps is not None and not (0 < self.refine_fps < float("inf")):
            raise ValueError(f"refine_fps must be > 0, got {self.refine_fps}")


@dataclass(frozen=True)
class FrameState:
    """What the plan knows of a camera when one of its frames comes up.

    Attributes:
        live: a camera or stream (or a file paced in real time); files and folders that are
            not paced are detected as the policy says, with no gate.
        stills: a folder of photos: every image is detected.
        tracks: faces are tracked (before this frame).
        since_full: seconds since this camera's last full detection (None: never).
        motion: the frame moved against the previous frame or the background (None: no
            measure).
        motion_outside: it moved outside the tracked faces (None: no measure).
        cut: the frame is a scene cut (:attr:`livefaces.motion.Motion.cut`).
        searching: a tracked face was not found where it was expected (its refinement
            failed): look for it with a full detection now.
        newest: the newest frame waiting (only it may get a full detection on a live source).
        backlog: older than the newest :data:`REFINE_BACKLOG` frames waiting (carried only).
        since_refine: seconds since this camera's last refinement (None: never).
    """

    live: bool
    stills: bool = False
    tracks: bool = False
    since_full: float | None = None
    motion: bool | None = None
    motion_outside: bool | None = None
    cut: bool = False
    searching: bool = False
    newest: bool = True
    backlog: bool = False
    since_refine: float | None = None


def plan(options: GateOptions, state: FrameState, due: Callable[[], bool]) -> Action:
    """What a frame goes through. ``due()`` asks the detection policy whether a full
    detection may run now (it is asked at most once, and only when one is wanted; a yes is
    counted by the policy's schedule).

    Live frames, in order: a backlog frame is carried; a scene cut, a face that was not found
    where it was expected, or ``idle_interval`` without a full detection want one; with no
    face tracked, a still scene is skipped and a moving one detected as often as the policy
    allows;
    with faces tracked, motion outside them wants a full detection every ``full_interval``,
    and otherwise the faces are refined. A full detection the policy does not allow now
    becomes a refinement (or carrying, with nothing to refine)."""
    o, st = options, state
    if st.stills:
        return Action.DETECT
    if st.backlog:
        return Action.TRACK
    if not st.live:  # files: the policy decides (Adaptive: every frame)
        return Action.DETECT if due() else _refine_or_track(o, st)
    since = float("inf") if st.since_full is None else st.since_full
    gated = o.motion and st.motion is not None
    if st.cut or st.searching or since >= o.idle_interval:
        want = True
    elif not st.tracks:  # nothing to follow: look for faces as often as the policy allows
        if gated and st.motion is False:
            return Action.SKIP
        want = True
    elif not o.refine:
        want = True
    else:
        outside = st.motion_outside if gated and st.motion_outside is not None else True
        want = outside and since >= o.full_interval
    if want and st.newest and due():
        return Action.DETECT
    return _refine_or_track(o, st)


def _refine_or_track(o: GateOptions, st: FrameState) -> Action:
    if not (st.tracks and o.refine):
        return Action.TRACK
    if o.refine_fps is not None and st.since_refine is not None \
            and st.since_refine < 1.0 / o.refine_fps - 1e-3:
        return Action.TRACK
    return Action.REFINE
