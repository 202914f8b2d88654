"""Is a camera keeping up? One judge for the pipeline and for ``serve``.

:class:`Watch` compares a measured value with its target, per key (a camera), as a mean over
the last ``window`` seconds, with hysteresis and a hold-off: *behind* when the mean falls below
``low`` x the target, *caught up* again only once it has stayed at or above ``high`` x the
target for ``hold`` seconds (default: ``window``). Each episode logs one WARNING when it starts
and one INFO when it ends (never a line per sample, never flapping on noise between the two
thresholds, nor on a load that swings across both: a few good seconds inside an overload do
not end its episode, so they do not start a new one either).
Its users:

* :class:`livefaces.pipeline.Camera`: with refinement on every frame, the share of frames with
  faces that the networks checked (target 1: below half, the CPU cannot keep up); otherwise
  the full detections per second against what the schedule asks for.
* ``livefaces serve`` (:class:`livefaces.serve.app.CameraServer`): each camera's verified
  frames per second (detected or refined, plus frames of a still, empty scene the motion gate
  let pass on purpose) against its ``detect_fps``; ``/health`` and ``/metrics`` report it.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: ``(key, mean, target) -> the one-line message`` of an episode's start or end
Say = Callable[[str, float, float], str]


class Watch:
    """Hysteresis judge of ``value`` against ``target`` per key (see the module docstring).

    Args:
        behind: the WARNING when an episode starts.
        recovered: the INFO when it ends.
        window: seconds the mean is taken over (no judgement before 0.8 of it is seen).
        low, high: behind below ``low`` x target; caught up at ``high`` x target.
        hold: seconds the mean must stay at or above ``high`` x target before the episode
            ends (default ``window``), so one episode is reported once, not once per swing.
        clock: monotonic seconds.
    """

    def __init__(self, behind: Say, recovered: Say, *, window: float = 5.0, low: float = 0.7,
                 high: float = 0.85, hold: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < low <= high:
            raise ValueError(f"need 0 < low <= high, got {low}, {high}")
        hold = window if hold is None else hold
        if not hold >= 0:
            raise ValueError(f"need hold >= 0, got {hold}")
        self.say_behind, self.say_recovered = behind, recovered
        self.window, self.low, self.high, self.hold, self.clock = window, low, high, hold, clock
        self._samples: dict[str, collections.deque[tuple[float, float, float]]] = {}
        self._crossed: dict[str, float] = {}  # key behind -> since when it looks caught up
        self.behind: dict[str, tuple[float, float]] = {}
        """keys behind now -> (mean value, mean target) of the last judgement"""

    def update(self, key: str, target: float, value: float, active: bool = True) -> None:
        """One sample; ``active=False`` (the camera is not streaming) forgets the key's
        history and ends its episode silently at INFO: not falling behind, just not there."""
        now = self.clock()
        q = self._samples.setdefault(key, collections.deque(maxlen=600))
        if not active or target <= 0:
            q.clear()
            self._crossed.pop(key, None)
            if self.behind.pop(key, None) is not None:
                log.info("%s: no longer judged (not streaming)", key)
            return
        q.append((now, value, target))
        while q and q[0][0] < now - self.window:
            q.popleft()
        if now - q[0][0] < self.window * 0.8:
            return  # not enough history yet
        mean = sum(v for _, v, _ in q) / len(q)
        goal = sum(t for _, _, t in q) / len(q)
        behind = key in self.behind
        crossing = mean >= self.high * goal if behind else mean < self.low * goal
        if not crossing:
            self._crossed.pop(key, None)
            if behind:
                self.behind[key] = (mean, goal)
            return
        if not behind:
            self.behind[key] = (mean, goal)
            log.warning("%s", self.say_behind(key, mean, goal))
            return
        since = self._crossed.setdefault(key, now)
        if now - since < self.hold:
            return  # caught up, but not for long enough yet: the episode goes on
        del self._crossed[key]
        del self.behind[key]
        log.info("%s", self.say_recovered(key, mean, goal))
