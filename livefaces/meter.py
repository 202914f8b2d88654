"""The thread-safe meters of livefaces statistics: one rate meter, one latency meter."""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque

import numpy as np

from .types import LATENCY_BUCKETS, HistogramSnapshot


class RateMeter:
    """Events per second over the last ``window`` seconds (timestamps from one clock): the
    number of ticks in the window divided by the window's length, so ticks that come in
    bursts (every result of a detector batch is delivered at one moment) count as what they
    are. While the meter has not yet watched a whole window, the time since its first tick
    stands in for it, but never less than half a window, so a first burst (a batch of results
    delivered within a few milliseconds) reads as its count over half a window, not as
    thousands a second."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._t: deque[float] = deque()
        self._first: float | None = None
        self._lock = threading.Lock()

    def tick(self, t: float) -> None:
        with self._lock:
            if self._first is None:
                self._first = t
            self._t.append(t)
            while self._t and t - self._t[0] > self.window:
                self._t.popleft()

    def rate(self, now: float) -> float:
        with self._lock:
            while self._t and now - self._t[0] > self.window:
                self._t.popleft()
            n = len(self._t)
            if not n or self._first is None:
                return 0.0
            watched = min(self.window, max(now - self._first, self.window / 2))
            return n / watched


class Latency:
    """The one latency meter (seconds, thread-safe): cumulative histogram buckets since the
    start (:meth:`snapshot`, for ``/metrics``) and the last ``size`` values (percentiles in
    milliseconds, for stats and the HUD), and the whole run in 1 ms steps (:meth:`run_ms`,
    for ``watch --stats``; fixed memory however long the run)."""

    #: whole-run histogram: 1 ms bins up to this many ms (longer ones land in the last bin)
    RUN_MS = 10_000

    def __init__(self, size: int = 500, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)  # last = +Inf
        self._sum = 0.0
        self._v: deque[float] = deque(maxlen=size)
        self._run = np.zeros(self.RUN_MS + 1, np.int64)
        self._max = 0.0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        i = bisect.bisect_left(self.buckets, seconds)
        with self._lock:
            self._v.append(seconds)
            self._counts[i] += 1
            self._sum += seconds
            self._run[min(self.RUN_MS, max(0, int(seconds * 1000.0)))] += 1
            self._max = max(self._max, seconds)

    def run_ms(self) -> dict[str, float] | None:
        """``{p50, p95, max}`` in milliseconds over every value of the run (percentiles to
        1 ms, the upper edge of their bin); None before the first."""
        with self._lock:
            counts, top = self._run.copy(), self._max
        n = int(counts.sum())
        if n == 0:
            return None
        cum = np.cumsum(counts)
        p50, p95 = (float(np.searchsorted(cum, q * n) + 1) for q in (0.5, 0.95))
        return {"p50": min(p50, top * 1000.0), "p95": min(p95, top * 1000.0),
                "max": round(top * 1000.0, 1)}

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
