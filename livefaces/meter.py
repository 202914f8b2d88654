"""The thread-safe meters of livefaces statistics: one rate meter, one latency meter."""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque

import numpy as np

from .types import LATENCY_BUCKETS, HistogramSnapshot


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


class Latency:
    """The one latency meter (seconds, thread-safe): cumulative histogram buckets since the
    start (:meth:`snapshot`, for ``/metrics``) and the last ``size`` values (percentiles in
    milliseconds, for stats and the HUD)."""

    def __init__(self, size: int = 500, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)  # last = +Inf
        self._sum = 0.0
        self._v: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        i = bisect.bisect_left(self.buckets, seconds)
        with self._lock:
            self._v.append(seconds)
            self._counts[i] += 1
            self._sum += seconds

    observe = add

    def percentiles_ms(self, *qs: float) -> tuple[float | None, ...]:
        """Percentiles ``qs`` (0-100) of the recent values, milliseconds (None: no value yet)."""
        with self._lock:
            v = np.array(self._v, np.float64)
        if not len(v):
            return tuple(None for _ in qs)
        return tuple(float(np.percentile(v, q) * 1000.0) for q in qs)

    def snapshot(self) -> HistogramSnapshot:
        """Cumulative buckets since the start; the last bound is ``inf``."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cum, out = 0, []
        for b, c in zip((*self.buckets, math.inf), counts, strict=True):
            cum += c
            out.append((b, cum))
        return HistogramSnapshot(tuple(out), total, cum)

    def quantile(self, q: float) -> float:
        """Upper bucket bound below which a fraction ``q`` of all observations fall (NaN if none)."""
        snap = self.snapshot()
        if snap.count == 0:
            return math.nan
        for b, c in snap.buckets:
            if c >= q * snap.count:
                return b
        return math.inf
