"""``/metrics``: Prometheus text format (0.0.4) through ``prometheus_client``.

One :class:`Metrics` per web server: its own :class:`~prometheus_client.CollectorRegistry`
(nothing registered globally) holding :class:`HubCollector` — which, at each scrape, reads the
statistics the server pushed into the hub — the process collector (``livefaces_process_*``)
and the build info. Label values are camera names (validated ``[A-Za-z0-9_-]``), never URLs.
Counts are counters (``…_total``; rates are for ``rate()`` in Prometheus); the detection rate
is also a gauge because it is judged against ``detect_fps_target`` (``/health``).
"""

from __future__ import annotations

import math
import platform
import re
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..types import HistogramSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: a sample line whose value is integral ("… 3.0"): written "… 3", as counts read
_INTEGRAL = re.compile(r"^([^#].* -?\d+)\.0$", re.M)


def _num(v: Any) -> float:
    try:
        f = float(v or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return f if math.isfinite(f) else 0.0


def _le(b: float) -> str:
    return "+Inf" if math.isinf(b) else repr(float(b))


class HubCollector(Collector):
    """Every livefaces metric: per camera its config and what the hub saw (``hub.status()``),
    the pushed :class:`~livefaces.types.SourceStats` and serve's judgement of it
    (``hub.source_stats()``), the hub's latency meters; the pushed MQTT counters."""

    def __init__(self, hub: Any) -> None:  # a serve.hub.Hub
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        status = hub.status()
        pub = hub.publisher_stats
        cam = ["camera"]
        up = GaugeMetricFamily("livefaces_camera_up",
                               "1 when the camera delivered a frame in the last 10 s", labels=cam)
        streaming = GaugeMetricFamily("livefaces_camera_streaming",
                                      "1 while the camera is connected and delivering frames",
                                      labels=cam)
        captured = CounterMetricFamily("livefaces_frames_captured",
                                       "frames decoded from the camera", labels=cam)
        frames = CounterMetricFamily("livefaces_frames",
                                     "results: frames detected or carried by the tracker",
                                     labels=cam)
        detections = CounterMetricFamily("livefaces_detections",
                                         "frames the full detector ran on", labels=cam)
        refined = CounterMetricFamily("livefaces_frames_refined",
                                      "frames whose tracked faces the networks checked in their "
                                      "regions (no full detection)", labels=cam)
        skipped = CounterMetricFamily("livefaces_frames_skipped_no_motion",
                                      "frames of a still scene with no face: no network ran",
                                      labels=cam)
        verified = GaugeMetricFamily("livefaces_verified_fps",
                                     "frames per second whose faces the networks checked "
                                     "(detected or refined), recent", labels=cam)
        drops = CounterMetricFamily("livefaces_frames_dropped",
                                    "frames decoded but never processed (newest-wins ring buffer)",
                                    labels=cam)
        reconnects = CounterMetricFamily("livefaces_reconnects", "times the camera was reopened",
                                         labels=cam)
        events = CounterMetricFamily("livefaces_events", "events produced for the camera",
                                     labels=cam)
        faces_seen = CounterMetricFamily("livefaces_faces_seen", "faces that appeared (new tracks)",
                                         labels=cam)
        published = CounterMetricFamily("livefaces_events_published",
                                        "events acknowledged by the MQTT broker", labels=cam)
        faces_now = GaugeMetricFamily("livefaces_faces_current", "faces in the newest result",
                                      labels=cam)
        detect_fps = GaugeMetricFamily("livefaces_detect_fps",
                                       "detections per second (frames the detector ran on), "
                                       "recent", labels=cam)
        target = GaugeMetricFamily("livefaces_detect_fps_target", "configured detections per second",
                                   labels=cam)
        behind = GaugeMetricFamily("livefaces_detect_behind",
                                   "1 while the detection rate stays below 70% of the configured "
                                   "rate", labels=cam)
        latency = HistogramMetricFamily("livefaces_detect_latency_seconds",
                                        "time from frame capture to the result of a frame the networks "
                                        "checked (full detection or refinement)", labels=cam)
        for name, st in status.items():
            lab = [name]
            s, judged = hub.source_stats(name)
            age = st.get("last_seen_age_s")
            up.add_metric(lab, 1.0 if age is not None and age < 10 else 0.0)
            if judged is not None:
                streaming.add_metric(lab, 1.0 if judged.health == "streaming" else 0.0)
                behind.add_metric(lab, 1.0 if judged.behind else 0.0)
            if s is not None:
                captured.add_metric(lab, _num(s.frames_captured))
                refined.add_metric(lab, _num(s.frames_refined))
                skipped.add_metric(lab, _num(s.frames_skipped))
                verified.add_metric(lab, _num(s.verified_fps))
            # a camera without a snapshot (disabled, or before the first) counts zero
            frames.add_metric(lab, _num(s.frames_processed if s else 0))
            detections.add_metric(lab, _num(s.frames_detected if s else 0))
            drops.add_metric(lab, _num(s.dropped if s else 0))
            reconnects.add_metric(lab, _num(s.reconnects if s else 0))
            detect_fps.add_metric(lab, _num(s.detect_fps if s else 0))
            events.add_metric(lab, _num(st.get("events")))
            faces_seen.add_metric(lab, _num(st.get("faces_seen")))
            if pub is not None:
                published.add_metric(lab, _num(pub.get("published_per_camera", {}).get(name)))
            faces_now.add_metric(lab, _num(st.get("faces_now")))
            if st.get("enabled", True):
                target.add_metric(lab, _num(st.get("detect_fps_target")))
            snap: HistogramSnapshot = hub.latency[name].snapshot()
            latency.add_metric(lab, [(_le(b), c) for b, c in snap.buckets], snap.sum)
        for fam in (up, streaming, captured, frames, detections, refined, skipped, verified, drops,
                    reconnects, events, faces_seen, published, faces_now, detect_fps, target, behind,
                    latency):
            if fam.samples:
                yield fam
        yield CounterMetricFamily("livefaces_event_ring_dropped",
                                  "events pushed out of the web UI's recent-events ring",
                                  value=hub.events_dropped)
        yield GaugeMetricFamily("livefaces_uptime_seconds", "seconds since start",
                                value=round(hub.clock() - hub.started, 3))
        ident = getattr(hub.pipeline_stats, "identify", None)
        if ident is not None:  # live identification: counts only, never a name or an embedding
            for fam, value in (
                (CounterMetricFamily("livefaces_identify_requests", "faces queued for embedding"),
                 ident.requested),
                (CounterMetricFamily("livefaces_identify_dropped", "embedding requests refused "
                                     "because the worker's queue was full (drop_newest)"),
                 ident.dropped),
                (CounterMetricFamily("livefaces_identify_embeddings", "faces embedded and "
                                     "matched by the worker"), ident.embedded),
                (CounterMetricFamily("livefaces_identify_errors", "failed or timed-out "
                                     "embeddings"), ident.errors),
                (GaugeMetricFamily("livefaces_identify_people", "people enrolled"), ident.people),
                (GaugeMetricFamily("livefaces_identify_worker_up", "1 while the identification "
                                   "worker process runs"), 1.0 if ident.alive else 0.0),
            ):
                fam.add_metric([], _num(value))
                yield fam
        if pub is not None:
            p = ["publisher"]
            for fam, key in (
                (GaugeMetricFamily("livefaces_publisher_connected", "1 while connected to the broker",
                                   labels=p), "connected"),
                (GaugeMetricFamily("livefaces_publisher_buffered", "events waiting for the broker",
                                   labels=p), "buffered"),
                (CounterMetricFamily("livefaces_publisher_dropped", "events dropped because the "
                                     "buffer was full while the broker was away", labels=p), "dropped"),
                (CounterMetricFamily("livefaces_publisher_errors", "connection failures, lost "
                                     "connections and refused publishes", labels=p), "errors"),
            ):
                fam.add_metric(["mqtt"], _num(pub.get(key)))
                yield fam


def _build_info() -> InfoMetricFamily:
    from .. import __version__

    return InfoMetricFamily("livefaces_build", "livefaces version and Python it runs on",
                            value={"version": __version__,
                                   "python": platform.python_version(),
                                   "implementation": platform.python_implementation()})


class _BuildCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield _build_info()


class Metrics:
    """The ``/metrics`` page of one hub (its own registry: no global state)."""

    def __init__(self, hub: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HubCollector(hub))
        self.registry.register(_BuildCollector())
        # CPU seconds, memory, open files, start time (Linux; nothing elsewhere)
        ProcessCollector(namespace="livefaces", registry=self.registry)

    def text(self) -> str:
        """The text exposition (integral values written as integers, e.g. ``… 3``)."""
        return _INTEGRAL.sub(r"\1", generate_latest(self.registry).decode("utf-8"))
