"""The composition root of ``livefaces serve``: config → pipeline + hub + web + MQTT.

::

    camera ─► capture ─┐
    camera ─► capture ─┼─► Pipeline detect loop (ONE Detector, batched) ─► HubSink ─► Hub ─► WebServer
    camera ─► capture ─┘   per-camera rate and min face size               MqttPublisher ─► broker

Each camera becomes one :class:`~livefaces.pipeline.CameraOptions` (name, rate, scale), so one
:class:`~livefaces.pipeline.Camera` in the pipeline; per-camera settings on one shared detector:

* ``detect_fps``: :class:`~livefaces.schedule.PerCameraRate` schedules each camera at its own
  rate (frames in between are carried by the tracker);
* ``min_face_size``: the detector runs with the smallest ``min_face_size`` of all cameras;
  a camera asking for bigger faces has its frames shrunk by ``smallest / its own`` before
  detection (the same faces are found, faster), boxes are scaled back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..capture import CaptureOptions
from ..detect.engine import Engine
from ..health import Watch
from ..pipeline import CameraOptions, Pipeline, SourceStats
from ..publish import BaseSink, Sink
from ..schedule import GateOptions, PerCameraRate
from ..sources import open_source
from ..types import FrameResult, Identifier, PipelineStats, Status
from .config import ServeConfig
from .hub import CameraHealth, Hub
from .presence import Presence, PresenceSink

log = logging.getLogger(__name__)


class HubSink(BaseSink):
    """Feeds the hub; the web page only needs the newest frame, so a slow hub drops old ones.
    Statistics snapshots go to ``on_stats`` (the server turns them into what the hub shows)."""

    result_policy = "drop_oldest"
    result_queue = 4

    def __init__(self, hub: Hub, on_stats: Callable[[PipelineStats], None] | None = None):
        self.hub = hub
        self._stats = on_stats

    def on_stats(self, stats: PipelineStats) -> None:
        if self._stats is not None:
            self._stats(stats)

    def on_result(self, result: FrameResult) -> None:
        self.hub.put_result(result.frame.source, result)

    def on_event(self, event: dict[str, Any]) -> None:
        self.hub.put_event(event)


#: how long a camera may be ``connected`` without delivering a frame before it is an error
NO_FRAME_GRACE_S = 5.0


def camera_health(s: SourceStats, last_status: tuple[str | None, int | None, float | None],
                  now: float, enabled: bool = True) -> tuple[str, str | None]:
    """``(health, error)`` of one camera for the API, the page and ``/health``.

    health: ``streaming`` (connected AND frames arrived since that connection), ``starting``
    (connecting for the first time, or connected and waiting for a first frame, shortly),
    ``ended`` (a file played out), ``off`` (disabled) or ``error`` (anything else: stalled,
    reconnecting, failed, a status this code does not know, connected without frames).
    error: the reason when not streaming (None while streaming: an old error is cleared).
    """
    if not enabled:
        return "off", None
    after, frames_then, since = last_status
    if s.status == Status.CONNECTED:
        if after == Status.CONNECTED and frames_then is not None and s.frames_captured > frames_then:
            return "streaming", None
        if since is None or now - since < NO_FRAME_GRACE_S or after != Status.CONNECTED:
            return "starting", None
        return "error", (f"connected {now - since:.0f} s ago but no video frame arrived"
                         + (f" (last error: {s.error})" if s.error else ""))
    if s.status == Status.ENDED:
        return "ended", None
    if s.status in (None, Status.CONNECTING) and not s.error:
        return "starting", None
    return "error", s.error or f"camera is {s.status}"


def rate_watch(window: float = 5.0, low: float = 0.7, high: float = 0.85, hold: float | None = None,
               clock: Callable[[], float] = time.monotonic) -> Watch:
    """Warns when a camera's verified frames per second fall behind its ``detect_fps``.

    Fed once a second with the measured rate (the pipeline's per-camera ``checked_fps``: frames
    whose faces the networks checked, by a full detection or a refinement, plus frames of a
    still, empty scene that the motion gate let pass on purpose) and the target
    (``min(configured, capture fps)``: a 3 fps camera cannot be checked 5 times a second, that
    is not the detector's fault). A :class:`livefaces.health.Watch`: the mean over ``window``
    seconds, behind below ``low`` x target, caught up again once at ``high`` x target for
    ``hold`` seconds (default ``window``: a load swinging across both thresholds is one
    episode, not one per swing); one WARNING per episode, an INFO at its end.
    """
    return Watch(
        lambda cam, rate, goal: (f"camera {cam}: detector falling behind: {rate:.1f} verified "
                                 f"frames/s of detect_fps {goal:g} (last {window:g} s); the shared "
                                 "detector is overloaded: lower detect_fps, raise min_face_size, "
                                 "or give it more threads"),
        lambda cam, rate, goal: (f"camera {cam}: detector caught up: {rate:.1f} verified frames/s "
                                 f"of detect_fps {goal:g}"),
        window=window, low=low, high=high, hold=hold, clock=clock)


class CameraServer:
    """Everything ``livefaces serve`` runs, built from a :class:`ServeConfig`.

    Args:
        config: validated configuration.
        detector: a shared :class:`~livefaces.Detector` (built from ``config.detector`` if None).
        capture: capture options (default: retry forever, also at start — cameras come back).
        file_realtime: video files play at their frame rate, looping, like a camera.
    """

    def __init__(self, config: ServeConfig, *, detector: Engine | None = None,
                 capture: CaptureOptions | None = None, file_realtime: bool = True,
                 web: bool | None = None):
        self.config = config
        cams = config.enabled_cameras
        if not cams:
            raise ValueError("no enabled camera in the configuration")
        people = config.people
        self.hub = Hub(config.cameras, jpeg_quality=config.web.jpeg_quality,
                       blur_unknown=bool(people and people.blur_unknown),
                       unknown_crops=people.unknown_crops if people else 0)
        det_min = config.detector.min_face_size  # the smallest of the cameras' (config.smallest_face)
        if detector is None:
            from ..detect.engine import make_engine

            detector = make_engine(config.detector)  # min_face_size: det_min (ServeConfig sees to it)
        else:
            det_min = float(getattr(detector, "min_face_size", det_min))
        # events, stats, topics and labels use the camera name
        cameras = [CameraOptions(open_source(c.url, loop=True, realtime=file_realtime), name=c.name,
                                 detect_fps=c.detect_fps, scale=min(1.0, det_min / c.min_face_size),
                                 gate=GateOptions(motion=c.motion, refine=c.refine,
                                                  idle_interval=c.idle_interval,
                                                  refine_fps=c.detect_fps))
                   for c in cams]
        self.publisher = None
        sinks: list[Sink] = [HubSink(self.hub, self._on_stats)]
        if config.mqtt is not None:
            from ..publish.mqtt import MqttPublisher

            m = config.mqtt
            self.publisher = MqttPublisher(m.host, m.port, username=m.username, password=m.password,
                                           client_id=m.client_id, topic_prefix=m.topic_prefix,
                                           buffer=m.buffer, keepalive=m.keepalive)
        self.identifier: Identifier | None = None
        self.presence: PresenceSink | None = None
        if people is not None:
            from ..identify.live import LiveIdentifier

            options = None
            if people.strangers:
                from ..identify.live import IdentifyOptions
                from ..identify.strangers import StrangerOptions

                options = IdentifyOptions(strangers=StrangerOptions(
                    retention_days=people.stranger_retention_days,
                    max_strangers=people.max_strangers))
            self.identifier = LiveIdentifier(people.folder, options)
            # before the MQTT publisher: "absent" goes out before "offline" at the end
            self.presence = PresenceSink(Presence((), people.absent_after), self.hub,
                                         [c.name for c in cams], self.publisher)
            sinks.append(self.presence)
        self.ha_states: Any = None
        if self.publisher is not None and config.mqtt is not None and config.mqtt.discovery:
            from .discovery import CameraStates, HaStateSink, config_payloads, discovery_configs, node_id

            m = config.mqtt
            names = [c.name for c in cams]

            def configs() -> dict[str, bytes]:
                people_now = self.presence.presence.names if self.presence is not None else ()
                return config_payloads(discovery_configs(
                    topic_prefix=m.topic_prefix, cameras=names, people=people_now,
                    page_url=self.page_url(), discovery_prefix=m.discovery_prefix))

            self.publisher.set_discovery(m.discovery_prefix, node_id(m.topic_prefix), configs)
            # before the publisher: "OFF" and 0 faces go out before "offline" at the end
            from .hub import encode_jpeg

            quality = config.web.jpeg_quality
            self.ha_states = HaStateSink(CameraStates(m.topic_prefix, names), self.publisher,
                                         identified=people is not None,
                                         encode=lambda rgb: encode_jpeg(rgb, quality),
                                         unknown_images=not (people and people.blur_unknown),
                                         people=lambda: (self.presence.presence.names
                                                         if self.presence is not None else ()),
                                         home_within=m.home_within)
            sinks.append(self.ha_states)
        if self.publisher is not None:
            sinks.append(self.publisher)  # a Sink: events to the broker
        self.pipeline = Pipeline(
            cameras, detector, policy=PerCameraRate(), sinks=sinks,
            capture=capture or CaptureOptions(retry_at_start=True, backoff_max=30.0),
            identifier=self.identifier)
        self.web = None
        if config.web.enabled if web is None else web:
            from .web import WebServer

            self.web = WebServer(self.hub, config.web,
                                 name_face=self.name_face if people is not None else None,
                                 strangers=self.strangers if people and people.strangers else None,
                                 stranger_action=(self.stranger_action
                                                  if people and people.strangers else None),
                                 stranger_jpeg=(self.stranger_jpeg
                                                if people and people.strangers else None))
        self.rate_watch = rate_watch()
        self._detect_target = {c.name: float(c.detect_fps) for c in cams}
        self._stopped = threading.Event()
        self._pipeline_started = False

    def strangers(self) -> list[dict[str, Any]]:
        """The strangers of the people folder's store (as the worker last saved it: at most
        2 s old), most recently seen first; ids, times and cameras, never an embedding."""
        from ..identify.strangers import StrangerStore

        assert self.config.people is not None
        return [s.to_json() for s in StrangerStore.open(self.config.people.folder).strangers()]

    def stranger_action(self, stranger: str, action: str, name: str | None) -> list[str]:
        """Name (enrol all its views), ignore or forget a stranger, through the identification
        worker (the store's owner); the people now enrolled. LiveFacesError otherwise."""
        from ..errors import LiveFacesError

        if self.identifier is None or self.presence is None:
            raise LiveFacesError("identification is off")
        names = self.identifier.stranger(stranger, action, name)
        if action == "name":
            self.presence.announce(names)  # a new person: absent everywhere to begin with
        return list(names)

    def stranger_jpeg(self, stranger: str) -> bytes | None:
        """The best kept thumbnail (JPEG bytes) of a stranger; None: no such stranger/view."""
        from ..errors import LiveFacesError
        from ..identify.strangers import StrangerStore

        assert self.config.people is not None
        try:
            path = StrangerStore.open(self.config.people.folder).thumbnail_path(stranger)
            return path.read_bytes() if path is not None else None
        except (LiveFacesError, OSError):
            return None

    def name_face(self, face_id: str, name: str) -> list[str]:
        """Enrol the kept unknown face ``face_id`` (``camera.track_id``) as ``name`` through
        the identification worker; the people now enrolled. KeyError: no such face kept."""
        views = self.hub.unknown_views(face_id)
        if not views or self.identifier is None or self.presence is None:
            raise KeyError(face_id)
        names: tuple[str, ...] = ()
        for crop, face in views:  # every kept view: one poor frame does not make the enrolment
            names = self.identifier.enrol(name, crop, face)
        self.hub.forget_unknown(face_id)
        self.presence.announce(names)  # a new person: absent everywhere to begin with
        if self.ha_states is not None and self.publisher is not None:
            self.publisher.republish_discovery()  # the new person's entities
        return list(names)

    def page_url(self) -> str | None:
        """The web page's URL as another machine (Home Assistant) reaches it, or None
        (no web server, or not started yet)."""
        if self.web is None or not self.web.port:
            return None
        host = self.config.web.host
        if host in ("0.0.0.0", "::", ""):
            from .web import reachable_address

            host = reachable_address() or "127.0.0.1"
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.web.port}/"

    def _health_of(self, s: SourceStats, now: float) -> tuple[str, str | None]:
        return camera_health(s, self.hub.last_status(s.name), now)  # the pipeline has enabled ones only

    def _on_stats(self, st: PipelineStats) -> None:
        """Each statistics snapshot (about once a second, on the hub sink's thread): judge
        the detection rates (:func:`rate_watch`), then hand the hub what the API, the page,
        ``/health`` and ``/metrics`` show."""
        try:
            now = self.hub.clock()
            judged: dict[str, CameraHealth] = {}
            problems: list[str] = []
            streaming = 0
            for s in st.sources:
                health, err = self._health_of(s, now)
                target = min(self._detect_target.get(s.name, 0.0), s.capture_fps)
                # frames whose faces the networks checked, plus frames of a still, empty scene
                # the motion gate let pass: nothing to check there is not falling behind
                self.rate_watch.update(s.name, target, s.checked_fps, active=health == "streaming")
                judged[s.name] = CameraHealth(health, err, s.name in self.rate_watch.behind)
                streaming += health == "streaming"
                if health == "error":
                    problems.append(f"camera {s.name}: {err}")
                behind = self.rate_watch.behind.get(s.name)
                if behind is not None:
                    problems.append(f"camera {s.name}: detector behind: {behind[0]:.1f} "
                                    f"verified frames/s of {behind[1]:g} configured")
            body: dict[str, Any] = {"running": st.running, "cameras_streaming": streaming}
            pub = None
            if self.publisher is not None:
                pub = self.publisher.stats()
                body["mqtt_connected"] = pub["connected"]
                problem = self.publisher.problem
                if problem:
                    problems.append(f"mqtt: {problem}")
            body["problems"] = problems
            self.hub.put_stats(st, judged, health=body, publisher=pub)
        except Exception:  # noqa: BLE001 - a monitoring bug must not stop the server
            log.exception("camera statistics failed")

    def start(self) -> CameraServer:
        """Bind the web port first (a taken port raises OSError before anything else runs; the
        server is then safe to :meth:`stop`), then MQTT and the pipeline. The hub gets a first
        statistics snapshot at once (every camera "starting"); the pipeline pushes the rest.
        With ``people:``, the identification worker loads the people folder first (a
        :class:`~livefaces.errors.LiveFacesError` if it cannot)."""
        if self.identifier is not None and self.presence is not None:
            self.identifier.start()
            self.presence.presence = Presence(self.identifier.names, self.presence.presence.absent_after)
        self._on_stats(self.pipeline.stats())
        if self.web is not None:
            self.web.start()
        if self.publisher is not None:
            self.publisher.start()
        if self.presence is not None:
            self.presence.announce()
        if self.ha_states is not None:
            self.ha_states.start()
        self.pipeline.start()
        self._pipeline_started = True
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the pipeline (sinks closed: MQTT says ``offline``), then the web server.
        Safe after a failed or partial :meth:`start`."""
        if self._stopped.is_set():
            return True
        self._stopped.set()
        t0 = time.monotonic()
        ok = True
        if self._pipeline_started:
            # 60 % of the budget for capture and detection, as much for the sinks to finish;
            # the web server gets what is left (at least 0.5 s)
            ok = self.pipeline.stop(timeout * 0.6, sinks_timeout=timeout * 0.6)
        else:
            if self.publisher is not None:
                self.publisher.close()
            if self.identifier is not None:
                self.identifier.close()
        if self.web is not None:
            self.web.stop(max(0.5, timeout - (time.monotonic() - t0)))
        return ok

    def __enter__(self) -> CameraServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
