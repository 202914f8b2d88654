"""A tiny Prometheus text-format (0.0.4) writer and a thread-safe histogram.

No client library: the values already live in the pipeline's and publisher's snapshots, so
a scrape just reads them and formats them (nothing to register, no global state).
Label values are camera names (validated ``[A-Za-z0-9_-]``), never URLs.
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: seconds; capture-to-result latency of a detection
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0)


class Histogram:
    """Cumulative-bucket histogram (seconds), safe to ``observe`` from any thread."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)  # last = +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[tuple[float, int]], float, int]:
        """``([(upper_bound, cumulative_count), ...], sum, count)``; last bound is +Inf."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cum, out = 0, []
        for b, c in zip((*self.buckets, math.inf), counts, strict=False):
            cum += c
            out.append((b, cum))
        return out, total, cum

    def quantile(self, q: float) -> float:
        """Upper bucket bound below which a fraction ``q`` of the observations fall (NaN if none)."""
        buckets, _, n = self.snapshot()
        if n == 0:
            return math.nan
        for b, c in buckets:
            if c >= q * n:
                return b
        return math.inf


@dataclass
class Family:
    """One metric family: ``samples`` are ``(labels, value)``; for histograms value is a Histogram."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: list[tuple[dict[str, str], float | Histogram]] = field(default_factory=list)

    def add(self, labels: dict[str, str], value: float | Histogram) -> Family:
        self.samples.append((labels, value))
        return self


def _fmt_labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    esc = (v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for v in labels.values())
    return "{" + ",".join(f'{k}="{v}"' for k, v in zip(labels, esc, strict=False)) + "}"


def _fmt_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def render(families: list[Family]) -> str:
    """The text exposition of ``families`` (ends with a newline)."""
    lines: list[str] = []
    for f in families:
        lines.append(f"# HELP {f.name} {f.help}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for labels, value in f.samples:
            if isinstance(value, Histogram):
                buckets, total, n = value.snapshot()
                for b, c in buckets:
                    le = "+Inf" if math.isinf(b) else repr(b)
                    lines.append(f"{f.name}_bucket{_fmt_labels({**labels, 'le': le})} {c}")
                lines.append(f"{f.name}_sum{_fmt_labels(labels)} {_fmt_value(total)}")
                lines.append(f"{f.name}_count{_fmt_labels(labels)} {n}")
            else:
                lines.append(f"{f.name}{_fmt_labels(labels)} {_fmt_value(float(value))}")
    return "\n".join(lines) + "\n"
