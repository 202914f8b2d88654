"""Small thread-safe meters for pipeline statistics (rates and latency percentiles)."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class RateMeter:
    """Events per second over the last ``window`` seconds (timestamps from one clock)."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._t: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, t: float) -> None:
        with self._lock:
            self._t.append(t)
            while self._t and t - self._t[0] > self.window:
                self._t.popleft()

    def rate(self, now: float) -> float:
        with self._lock:
            while self._t and now - self._t[0] > self.window:
                self._t.popleft()
            n = len(self._t)
            if n < 2:
                return float(n) / self.window if n else 0.0
            span = max(now - self._t[0], self._t[-1] - self._t[0], 1e-6)
            return (n - 1) / span if span < self.window else n / self.window


class LatencyWindow:
    """The last ``size`` latencies (seconds); percentiles in milliseconds."""

    def __init__(self, size: int = 500) -> None:
        self._v: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._v.append(seconds)

    def percentiles_ms(self, *qs: float) -> tuple[float | None, ...]:
        with self._lock:
            v = np.array(self._v, np.float64)
        if not len(v):
            return tuple(None for _ in qs)
        return tuple(float(np.percentile(v, q) * 1000.0) for q in qs)
