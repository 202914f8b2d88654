"""A tiny Prometheus text-format (0.0.4) writer and a thread-safe histogram.

No client library: the values already live in the pipeline's and publisher's snapshots, so
a scrape just reads them and formats them (nothing to register, no global state).
Label values are camera names (validated ``[A-Za-z0-9_-]``), never URLs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..types import HistogramSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

@dataclass
class Family:
    """One metric family: ``samples`` are ``(labels, value)``; for histograms value is a Histogram."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: list[tuple[dict[str, str], float | HistogramSnapshot]] = field(default_factory=list)

    def add(self, labels: dict[str, str], value: float | HistogramSnapshot) -> Family:
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
            if isinstance(value, HistogramSnapshot):
                buckets, total, n = value.buckets, value.sum, value.count
                for b, c in buckets:
                    le = "+Inf" if math.isinf(b) else repr(b)
                    lines.append(f"{f.name}_bucket{_fmt_labels({**labels, 'le': le})} {c}")
                lines.append(f"{f.name}_sum{_fmt_labels(labels)} {_fmt_value(total)}")
                lines.append(f"{f.name}_count{_fmt_labels(labels)} {n}")
            else:
                lines.append(f"{f.name}{_fmt_labels(labels)} {_fmt_value(float(value))}")
    return "\n".join(lines) + "\n"


def metrics_text(hub, publisher_stats: dict | None = None) -> str:  # noqa: ANN001 (a serve.hub.Hub)
    """The ``/metrics`` page: per-camera families from ``hub.status()`` and its latency
    histograms, plus the MQTT publisher's counters (``publisher_stats``, default: the ones
    pushed into the hub)."""
    status = hub.status()
    if publisher_stats is None:
        publisher_stats = hub.publisher_stats

    fam = {
        "up": Family("livefaces_camera_up", "gauge", "1 when the camera delivered a frame in the last 10 s"),
        "capture": Family("livefaces_capture_fps", "gauge", "frames per second decoded from the camera"),
        "detect": Family("livefaces_detect_fps", "gauge",
                         "detections per second (frames the detector ran on)"),
        "target": Family("livefaces_detect_fps_target", "gauge", "configured detections per second"),
        "behind": Family("livefaces_detect_behind", "gauge",
                         "1 while the detection rate stays below 70% of the configured rate"),
        "streaming": Family("livefaces_camera_streaming", "gauge",
                            "1 while the camera is connected and delivering frames"),
        "result": Family("livefaces_result_fps", "gauge", "results per second (detected or tracked frames)"),
        "drops": Family("livefaces_frames_dropped_total", "counter",
                        "frames decoded but never processed (newest-wins ring buffer)"),
        "reconnects": Family("livefaces_reconnects_total", "counter", "times the camera was reopened"),
        "faces_now": Family("livefaces_faces_current", "gauge", "faces in the newest result"),
        "faces_seen": Family("livefaces_faces_seen_total", "counter", "faces that appeared (new tracks)"),
        "events": Family("livefaces_events_total", "counter", "events produced for the camera"),
        "published": Family("livefaces_events_published_total", "counter",
                            "events acknowledged by the MQTT broker"),
        "latency": Family("livefaces_detect_latency_seconds", "histogram",
                          "time from frame capture to detection result"),
    }
    for name, st in status.items():
        lab = {"camera": name}
        age = st.get("last_seen_age_s")
        fam["up"].add(lab, 1.0 if age is not None and age < 10 else 0.0)
        fam["capture"].add(lab, float(st.get("capture_fps", st.get("result_fps", 0.0)) or 0.0))
        fam["detect"].add(lab, float(st.get("detect_fps", 0.0) or 0.0))
        if st.get("enabled", True):
            fam["target"].add(lab, float(st.get("detect_fps_target", 0.0) or 0.0))
        if "detect_behind" in st:
            fam["behind"].add(lab, 1.0 if st["detect_behind"] else 0.0)
        if "streaming" in st:
            fam["streaming"].add(lab, 1.0 if st["streaming"] else 0.0)
        fam["result"].add(lab, float(st.get("result_fps", 0.0)))
        fam["drops"].add(lab, float(st.get("dropped", 0) or 0))
        fam["reconnects"].add(lab, float(st.get("reconnects", 0) or 0))
        fam["faces_now"].add(lab, float(st.get("faces_now", 0)))
        fam["faces_seen"].add(lab, float(st.get("faces_seen", 0)))
        fam["events"].add(lab, float(st.get("events", 0)))
        if publisher_stats is not None:
            fam["published"].add(lab, float(publisher_stats.get("published_per_camera", {}).get(name, 0)))
        fam["latency"].add(lab, hub.latency[name].snapshot())
    out = [f for f in fam.values() if f.samples]
    out.append(Family("livefaces_event_ring_dropped_total", "counter",
                      "events pushed out of the web UI's recent-events ring").add({}, hub.events_dropped))
    out.append(Family("livefaces_uptime_seconds", "gauge", "seconds since start")
               .add({}, round(hub.clock() - hub.started, 3)))
    if publisher_stats is not None:
        lab = {"publisher": "mqtt"}
        out += [
            Family("livefaces_publisher_connected", "gauge", "1 while connected to the broker")
            .add(lab, 1.0 if publisher_stats.get("connected") else 0.0),
            Family("livefaces_publisher_buffered", "gauge", "events waiting for the broker")
            .add(lab, float(publisher_stats.get("buffered", 0))),
            Family("livefaces_publisher_dropped_total", "counter",
                   "events dropped because the buffer was full while the broker was away")
            .add(lab, float(publisher_stats.get("dropped", 0))),
            Family("livefaces_publisher_errors_total", "counter",
                   "connection failures, lost connections and refused publishes")
            .add(lab, float(publisher_stats.get("errors", 0))),
        ]
    return render(out)
