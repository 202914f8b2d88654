"""The composition root of ``livefaces serve``: config → pipeline + hub + web + MQTT.

::

    camera ─► capture ─┐
    camera ─► capture ─┼─► Pipeline detect loop (ONE Detector, batched) ─► HubSink ─► Hub ─► WebServer
    camera ─► capture ─┘   per-camera rate and min face size               MqttSink ─► broker

Per-camera settings on one shared detector:

* ``detect_fps``: :class:`PerCameraRate`, a :class:`~livefaces.schedule.DetectPolicy` with one
  rate per camera (frames in between are carried by the tracker);
* ``min_face_size``: the detector runs with the smallest ``min_face_size`` of all cameras;
  a camera asking for bigger faces has its frames shrunk by ``smallest / its own`` before
  detection (the same faces are found, faster), boxes are scaled back.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..capture import CaptureOptions
from ..pipeline import Pipeline
from ..publish import BaseSink
from ..schedule import DetectPolicy, SourceState
from ..sources import FrameSource, open_source
from ..types import Frame, FrameResult
from .config import ServeConfig
from .hub import Hub
from .metrics import metrics_text

log = logging.getLogger(__name__)


class PerCameraRate(DetectPolicy):
    """About ``fps[camera]`` detections per second per camera (live sources); files that are
    not paced in real time are detected on every frame.

    A schedule, not a minimum gap: detection k is due at ``t0 + k / fps``. With a minimum gap
    a 15 fps camera asked for 5/s would get ~4.3/s (the first frame *after* 200 ms comes up to
    66 ms late every time); the schedule keeps the average at the target, and never builds a
    backlog of more than one interval after a stall.
    """

    def __init__(self, fps: dict[str, float]):
        super().__init__()
        self.fps = dict(fps)
        self._next: dict[str, float] = {}

    def _due(self, st: SourceState, frame: Frame, now: float) -> bool:
        interval = 1.0 / self.fps.get(frame.source, 5.0)
        nxt = self._next.get(frame.source)
        if nxt is None:
            assert st.last_time is not None
            nxt = st.last_time + interval
        if now + 1e-3 < nxt:
            return False
        nxt += interval
        self._next[frame.source] = now if nxt < now - interval else nxt  # no backlog after a stall
        return True

    def describe(self) -> str:
        return "per camera: " + ", ".join(f"{k} {v:g}/s" for k, v in self.fps.items())


class HubSink(BaseSink):
    """Feeds the hub; the web page only needs the newest frame, so a slow hub drops old ones."""

    result_policy = "drop_oldest"
    result_queue = 4

    def __init__(self, hub: Hub):
        self.hub = hub

    def on_result(self, result: FrameResult) -> None:
        self.hub.put_result(result.frame.source, result)

    def on_event(self, event: dict[str, Any]) -> None:
        self.hub.put_event(event)


class MqttSink(BaseSink):
    """Events → :class:`~livefaces.publish.mqtt.MqttPublisher` (results are not sent)."""

    result_queue = 1

    def __init__(self, publisher: Any):
        self.publisher = publisher

    def on_event(self, event: dict[str, Any]) -> None:
        self.publisher.publish(event)

    def close(self) -> None:
        self.publisher.close()


class CameraServer:
    """Everything ``livefaces serve`` runs, built from a :class:`ServeConfig`.

    Args:
        config: validated configuration.
        detector: a shared :class:`~livefaces.Detector` (built from ``config.detector`` if None).
        capture: capture options (default: retry forever, also at start — cameras come back).
        file_realtime: video files play at their frame rate, looping, like a camera.
    """

    def __init__(self, config: ServeConfig, *, detector: Any = None, capture: CaptureOptions | None = None,
                 file_realtime: bool = True, web: bool | None = None):
        self.config = config
        cams = config.enabled_cameras
        if not cams:
            raise ValueError("no enabled camera in the configuration")
        self.hub = Hub(config.cameras, jpeg_quality=config.web.jpeg_quality)
        det_min = min(c.min_face_size for c in cams)
        if detector is None:
            from ..detect import Detector

            d = config.detector
            detector = Detector(min_face_size=det_min, thresholds=d.thresholds, factor=d.factor,
                                providers=d.providers, threads=d.threads)
        else:
            det_min = float(getattr(detector, "min_face_size", det_min))
        sources: list[FrameSource] = []
        for c in cams:
            src = open_source(c.url, loop=True, realtime=file_realtime)
            src.name = c.name  # events, stats, topics and labels use the camera name
            sources.append(src)
        self.publisher = None
        sinks: list[BaseSink] = [HubSink(self.hub)]
        if config.mqtt is not None:
            from ..publish.mqtt import MqttPublisher

            m = config.mqtt
            self.publisher = MqttPublisher(m.host, m.port, username=m.username, password=m.password,
                                           client_id=m.client_id, topic_prefix=m.topic_prefix,
                                           buffer=m.buffer, keepalive=m.keepalive)
            sinks.append(MqttSink(self.publisher))
        self.pipeline = Pipeline(
            sources, detector, policy=PerCameraRate({c.name: c.detect_fps for c in cams}),
            sinks=sinks, capture=capture or CaptureOptions(retry_at_start=True, backoff_max=30.0),
            source_scale={c.name: min(1.0, det_min / c.min_face_size) for c in cams})
        self.hub.add_stats_provider(self._pipeline_stats)
        self.web = None
        if config.web.enabled if web is None else web:
            from .web import WebServer

            self.web = WebServer(self.hub, config.web, metrics=self.metrics, health=self._health)
        self._stopped = threading.Event()

    def _pipeline_stats(self) -> dict[str, dict[str, Any]]:
        out = {}
        for s in self.pipeline.stats().sources:
            out[s.name] = {"state": s.status, "capture_fps": round(s.capture_fps, 2),
                           "detect_fps": round(s.detect_fps, 2), "output_fps": round(s.output_fps, 2),
                           "dropped": s.dropped, "reconnects": s.reconnects,
                           "latency_ms_p50": s.latency_ms_p50, "latency_ms_p95": s.latency_ms_p95,
                           "frames_captured": s.frames_captured, "error": s.error}
        return out

    def _health(self) -> dict[str, Any]:
        st = self.pipeline.stats()
        body: dict[str, Any] = {"running": st.running,
                                "cameras_streaming": sum(1 for s in st.sources if s.status == "connected")}
        if self.publisher is not None:
            body["mqtt_connected"] = self.publisher.connected
        return body

    def metrics(self) -> str:
        return metrics_text(self.hub, self.publisher.stats() if self.publisher is not None else None)

    def start(self) -> CameraServer:
        if self.publisher is not None:
            self.publisher.start()
        if self.web is not None:
            self.web.start()
        self.pipeline.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the pipeline (sinks closed: MQTT says ``offline``), then the web server."""
        if self._stopped.is_set():
            return True
        self._stopped.set()
        t0 = time.monotonic()
        ok = self.pipeline.stop(timeout * 0.6)
        if self.web is not None:
            self.web.stop(max(0.5, timeout - (time.monotonic() - t0)))
        return ok

    def __enter__(self) -> CameraServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
