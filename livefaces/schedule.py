"""Which frames go through the detector (the others are carried by the tracker).

Four policies; all see every frame. The per-source state (:class:`SourceState`) belongs to
the source's camera (:class:`livefaces.pipeline.Camera` passes it in); a policy used alone
keeps one per source name:

* :class:`EveryN` — ``--detect-every N``: frames whose index is N past the last detected one.
* :class:`FixedRate` — ``--detect-fps F``: at most F detections per second per source.
* :class:`PerCameraRate` — ``detect_fps`` per camera (``livefaces serve``): a schedule of
  ``fps`` detections per second for each camera (its :attr:`SourceState.fps`).
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

from dataclasses import dataclass, field

from .types import Frame


@dataclass
class SourceState:
    """What a policy remembers per source: the last detected frame's index and time.

    ``fps`` is this source's own detection rate (:class:`PerCameraRate`; None: the policy's
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
    _state: dict[str, SourceState] = field(default_factory=dict, repr=False)

    def register(self, name: str, state: SourceState) -> None:
        """Let the policy see ``state`` (owned by the camera ``name``) in :meth:`describe`."""
        self._state[name] = state

    def _of(self, frame: Frame, state: SourceState | None) -> SourceState:
        return state if state is not None else self._state.setdefault(frame.source, SourceState())

    def due(self, frame: Frame, live: bool, now: float, state: SourceState | None = None) -> bool:
        """Should ``frame`` go through the detector? ``state``: the source's (default: the
        one this policy keeps for ``frame.source``)."""
        st = self._of(frame, state)
        if st.last_index is None or not self._applies(live):
            return True
        return self._due(st, frame, now)

    def _applies(self, live: bool) -> bool:
        return True

    def _due(self, st: SourceState, frame: Frame, now: float) -> bool:
        raise NotImplementedError

    def detected(self, frame: Frame, now: float, state: SourceState | None = None) -> None:
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

    def _due(self, st: SourceState, frame: Frame, now: float) -> bool:
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

    def _due(self, st: SourceState, frame: Frame, now: float) -> bool:
        assert st.last_time is not None
        return now - st.last_time >= 1.0 / self.fps - 1e-3

    def describe(self) -> str:
        return f"{self.fps:g} detections/s"

    def expected_interval(self, frame_interval: float | None) -> float | None:
        return max(1.0 / self.fps, frame_interval or 0.0)


class PerCameraRate(DetectPolicy):
    """About ``fps`` detections per second per camera (live sources); files that are not paced
    in real time are detected on every frame. A camera's rate is its
    :attr:`SourceState.fps`, else ``fps[name]``, else ``default``.

    A schedule, not a minimum gap: detection k is due at ``t0 + k / fps``. With a minimum gap
    a 15 fps camera asked for 5/s would get ~4.3/s (the first frame *after* 200 ms comes up to
    66 ms late every time); the schedule keeps the average at the target, and never builds a
    backlog of more than one interval after a stall.
    """

    def __init__(self, fps: dict[str, float] | None = None, default: float = 5.0):
        super().__init__()
        self.fps = dict(fps or {})
        self.default = default

    def _due(self, st: SourceState, frame: Frame, now: float) -> bool:
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
        return None  # per camera; the server's RateWatch judges each camera's rate


@dataclass
class Adaptive(DetectPolicy):
    budget: float = 0.1
    max_duty: float = 0.5
    min_scale: float = 0.5

    def _applies(self, live: bool) -> bool:
        return live

    def _due(self, st: SourceState, frame: Frame, now: float) -> bool:
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


# --------------------------------------------------------------------------- gating
# On live sources, what each frame goes through: the full cascade, refinement of the tracked
# faces (the cascade in each face's region), the tracker alone, or nothing (a still scene with
# no face). The detection policy above still decides how often the FULL cascade may run; the
# gate decides whether it needs to.


@dataclass(frozen=True)
class GateOptions:
    """Motion gating and refinement of tracked faces (live sources; files and folders are
    detected on every frame as before).

    Attributes:
        motion: gate the full detector by motion: with no motion and no tracked face, it runs
            only every ``idle_interval`` seconds; with tracked faces, more often only where
            motion appears outside them.
        refine: verify tracked faces on frames without a full detection with the networks,
            in each face's region (boxes and landmarks on every frame come from the networks;
            a face that is gone ends its track after a few failed refinements).
        idle_interval: seconds between full detections of a still scene (no motion outside
            tracked faces); also the longest gap between full detections ever.
        full_interval: seconds between full detections while faces are tracked and motion
            appears outside them (new faces may be coming); without ``motion`` gating, while
            faces are tracked.
        refine_fps: at most this many refinements per second per camera (None: every frame;
            ``serve`` uses each camera's ``detect_fps``).
    """

    motion: bool = True
    refine: bool = True
    idle_interval: float = 5.0
    full_interval: float = 1.0
    refine_fps: float | None = None

    def __post_init__(self) -> None:
        for name in ("idle_interval", "full_interval"):
            v = getattr(self, name)
            if not (v > 0 and v < float("inf")):
                raise ValueError(f"{name} must be a positive number of seconds, got {v}")
        if self.refine_fps is not None and not (0 < self.refine_fps < float("inf")):
            raise ValueError(f"refine_fps must be > 0, got {self.refine_fps}")


def gate_action(options: GateOptions, *, since_full: float | None, tracks: bool,
         motion: bool | None, motion_outside: bool | None) -> str:
    """What a live frame needs: ``detect`` (the full cascade, if the policy allows it now),
    ``refine`` (its tracked faces), ``track`` (carry them) or ``skip`` (a still scene with no
    face: nothing to do).

    Args:
        since_full: seconds since this camera's last full detection (None: never).
        tracks: faces are being tracked.
        motion: the frame moved (None: no motion measure).
        motion_outside: it moved outside the tracked faces' regions (None: no measure).
    """
    since = float("inf") if since_full is None else since_full
    if since >= options.idle_interval:
        return "detect"
    if not tracks:
        if options.motion and motion is False:
            return "skip"
        return "detect"
    if not options.refine:
        return "detect"
    outside = motion_outside if options.motion and motion_outside is not None else True
    if outside and since >= options.full_interval:
        return "detect"
    return "refine"
