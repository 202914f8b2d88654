"""MQTT publisher (the only module that imports paho-mqtt).

:class:`MqttPublisher` is a :class:`~livefaces.publish.Sink` (a *publisher* is a sink that
sends events out of the process: JSON Lines, MQTT) standing beside its paho client: the
pipeline's runner thread calls :meth:`MqttPublisher.on_event`, which only queues; one sender
thread hands queued messages to paho; paho's network thread runs the callbacks.

Topics, with ``prefix`` = ``livefaces`` by default::

    <prefix>/available          "online" / "offline", retained; "offline" is also the last will
    <prefix>/<camera>/events    one JSON event (the JSON Lines schema) per face.* event, QoS 1
    <prefix>/<camera>/status    the latest source.status event of the camera, retained, QoS 1
    <prefix>/<camera>/people/<name>   "present" / "absent", retained, QoS 1 (live identification:
                                present while a face on the camera is identified as <name>)

With Home Assistant discovery (:meth:`MqttPublisher.set_discovery`, the configs built by
:mod:`livefaces.serve.discovery`): at every connection the retained config messages are
published after ``online``, again whenever HA publishes ``online`` on
``<discovery_prefix>/status`` (HA restarted), and a retained config of this instance's node
that the broker still holds but that is no longer among the configs (a camera or person gone)
is cleared with an empty retained message (HA then removes that entity).

Delivery: QoS 1. While the broker is unreachable, events wait in a bounded buffer
(``buffer`` events, policy **drop oldest**, counted in ``dropped``); paho reconnects in its
own network thread with exponential backoff (``reconnect_min_s`` doubling up to
``reconnect_max_s``) and the buffer is flushed in order on reconnect. Messages already handed
to paho when a connection breaks are re-sent by paho (QoS 1: at least once).

:meth:`MqttPublisher.publish` never blocks on the network and never raises for broker trouble.

Broker trouble (refused, unreachable, bad credentials, connection lost) is logged once per
outage at WARNING, with the reason (never the password), and kept in :attr:`MqttPublisher.problem`
until the broker accepts a connection again (logged at WARNING too, so the outage has an end).
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from ..specs import topic_prefix_problem

log = logging.getLogger(__name__)

EVENT_TYPES_TO_STATUS = ("source.status",)


class MqttPublisher:
    """Publish event dicts to an MQTT broker; see the module docstring for topics and policy.
    A :class:`~livefaces.publish.Sink`: events are published, results ignored (one slot),
    :meth:`close` says ``offline`` and disconnects.

    Args:
        host, port: the broker.
        username, password: optional credentials (never logged).
        client_id: MQTT client id (unique per broker).
        topic_prefix: first topic level.
        buffer: events kept while disconnected (drop oldest beyond).
        keepalive: seconds between pings; a dead broker is noticed within ~1.5x this.
        reconnect_min_s, reconnect_max_s: backoff bounds for reconnect attempts.
    """

    def __init__(self, host: str, port: int = 1883, *, username: str | None = None,
                 password: str | None = None, client_id: str = "livefaces",
                 topic_prefix: str = "livefaces", buffer: int = 1000, keepalive: int = 30,
                 reconnect_min_s: int = 1, reconnect_max_s: int = 30):
        bad = topic_prefix_problem(topic_prefix)
        if bad:
            raise ValueError(f"topic_prefix {topic_prefix!r}: {bad}")
        self.host, self.port = host, int(port)
        self.prefix = topic_prefix.rstrip("/")
        self.availability_topic = f"{self.prefix}/available"
        self._buffer: collections.deque[tuple[str, bytes, bool, str]] = collections.deque()
        self._capacity = int(buffer)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._closed = False
        self._counts = {"published": 0, "dropped": 0, "errors": 0, "connects": 0, "disconnects": 0}
        self._per_camera: dict[str, int] = collections.defaultdict(int)
        # mid -> camera of messages handed to paho; a PUBACK can beat publish() returning,
        # hence the "acked early" set. _mid_lock is innermost: never held while calling paho.
        self._mid_camera: dict[int, str] = {}
        self._acked_early: set[int] = set()
        self._mid_lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv311, clean_session=True)
        if username:
            c.username_pw_set(username, password)
        c.will_set(self.availability_topic, "offline", qos=1, retain=True)
        c.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        c.max_queued_messages_set(self._capacity)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_connect_fail = self._on_connect_fail
        c.on_message = self._on_message
        self._discovery: tuple[str, str, Callable[[], dict[str, bytes]]] | None = None
        self._client = c
        self._keepalive = int(keepalive)
        self._started = False
        self._started_at: float | None = None
        self._problem: str | None = None
        self._outage_warned = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._sender, name="livefaces-mqtt", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> MqttPublisher:
        """Begin connecting in the background (returns at once; the broker may be down)."""
        if not self._started:
            self._started = True
            self._started_at = time.monotonic()
            self._client.connect_async(self.host, self.port, keepalive=self._keepalive)
            self._client.loop_start()
            self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def problem(self) -> str | None:
        """Why the broker is not connected (one line, no password), or None while connected
        (or during the first 10 s of the first connection attempt)."""
        if self._connected.is_set() or not self._started or self._closed:
            return None
        if self._problem:
            return self._problem
        if self._started_at is not None and time.monotonic() - self._started_at > 10.0:
            return f"not connected to {self.where} yet"
        return None

    def _trouble(self, problem: str) -> None:
        """Record a broker problem; WARNING once per outage, DEBUG for the retries."""
        self._problem = problem
        if self._closed:
            return
        if not self._outage_warned:
            self._outage_warned = True
            log.warning("MQTT %s; retrying with backoff (events are buffered meanwhile)", problem)
        else:
            log.debug("MQTT %s; retrying", problem)

    def close(self, timeout: float = 2.0) -> None:
        """Publish ``offline`` (retained), give in-flight messages up to ``timeout`` s, stop."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout)
            if self._connected.is_set():
                self._flush(final=True)  # the sender has stopped: we are the only flusher
                info = self._client.publish(self.availability_topic, "offline", qos=1, retain=True)
                try:
                    info.wait_for_publish(timeout)
                except (RuntimeError, ValueError):  # not queued / disconnected meanwhile
                    pass
            self._client.disconnect()
            self._client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the Sink side

    result_queue = 1  # results are not sent

    def on_result(self, result: Any) -> None:
        pass

    def on_event(self, event: dict[str, Any]) -> None:
        self.publish(event)

    def on_stats(self, stats: Any) -> None:
        pass  # the broker gets events only; statistics are on /metrics

    # ------------------------------------------------------------------ publishing

    def publish(self, event: dict[str, Any]) -> None:
        """Queue one event for its camera's topic; never blocks, never raises for the broker."""
        if self._closed:
            return
        camera = str(event.get("source", "unknown"))
        kind = "status" if event.get("type") in EVENT_TYPES_TO_STATUS else "events"
        topic = f"{self.prefix}/{_topic_level(camera)}/{kind}"
        payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self._queue(topic, payload, kind == "status", _topic_level(camera))

    def publish_presence(self, camera: str, name: str, present: bool) -> None:
        """``<prefix>/<camera>/people/<name>``: ``present`` or ``absent``, retained (a Home
        Assistant binary sensor per person and camera); never blocks."""
        if self._closed:
            return
        cam = _topic_level(camera)
        self._queue(f"{self.prefix}/{cam}/people/{_topic_level(name)}",
                    b"present" if present else b"absent", True, cam)

    def publish_raw(self, topic: str, payload: bytes, retain: bool) -> None:
        """Queue one message as it is (QoS 1; not counted as a camera's event); never blocks."""
        if not self._closed:
            self._queue(topic, payload, retain, "")

    def set_discovery(self, discovery_prefix: str, node: str,
                      configs: Callable[[], dict[str, bytes]]) -> None:
        """Publish Home Assistant discovery: ``configs()`` gives ``{topic: payload}`` (topics
        ``<discovery_prefix>/<component>/<node>/<object_id>/config``), asked anew each time
        they are published (see the module docstring). Call before :meth:`start`."""
        self._discovery = (discovery_prefix.rstrip("/"), node, configs)

    def republish_discovery(self) -> None:
        """Publish the discovery configs now (after a change, e.g. a person enrolled)."""
        if self._discovery is not None and self._connected.is_set():
            self._publish_configs()

    def _publish_configs(self) -> None:
        if self._discovery is None:
            return
        try:
            configs = self._discovery[2]()
        except Exception:  # noqa: BLE001 - a bug there must not take the publisher down
            log.exception("Home Assistant discovery configs failed")
            return
        for topic, payload in configs.items():
            self.publish_raw(topic, payload, True)

    def _queue(self, topic: str, payload: bytes, retain: bool, camera: str) -> None:
        with self._lock:
            if len(self._buffer) >= self._capacity:
                self._buffer.popleft()
                self._count("dropped")
            self._buffer.append((topic, payload, retain, camera))
        self._wake.set()

    def _sender(self) -> None:
        """The one thread that hands buffered messages to paho (no lock held across paho calls,
        so paho's callbacks can never deadlock against :meth:`publish`)."""
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._connected.is_set():
                self._flush()

    def _flush(self, final: bool = False) -> None:
        while self._connected.is_set() and (final or not self._stop.is_set()):
            with self._lock:
                if not self._buffer:
                    return
                item = self._buffer[0]
            topic, payload, retain, camera = item
            info = self._client.publish(topic, payload, qos=1, retain=retain)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE or (final and info.rc != mqtt.MQTT_ERR_SUCCESS):
                return  # paho's queue is full: keep it; on_publish wakes us when there is room
            with self._lock:
                if self._buffer and self._buffer[0] is item:  # not dropped meanwhile
                    self._buffer.popleft()
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                # NO_CONN still means paho kept it (QoS 1) and sends it after reconnecting
                self._count("errors")
                log.warning("MQTT publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            else:
                self._track(info.mid, camera)

    def _count(self, key: str) -> None:
        """One more ``key``: counters change on the sender's, the caller's and paho's threads,
        always under ``_mid_lock`` (innermost, never held while calling paho)."""
        with self._mid_lock:
            self._counts[key] += 1

    def _track(self, mid: int, camera: str) -> None:
        with self._mid_lock:
            if mid in self._acked_early:
                self._acked_early.discard(mid)
                if not camera:  # availability message: not an event
                    return
                self._counts["published"] += 1
                self._per_camera[camera] += 1
            else:
                self._mid_camera[mid] = camera

    # ------------------------------------------------------------------ paho callbacks
    # (run in paho's network thread)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._count("errors")
            self._trouble(f"broker {self.where} refused the connection: {str(reason).lower()}")
            return
        self._count("connects")
        self._problem = None
        if self._outage_warned:
            self._outage_warned = False
            log.warning("MQTT connected to %s again", self.where)
        else:
            log.info("MQTT connected to %s", self.where)
        info = client.publish(self.availability_topic, "online", qos=1, retain=True)
        self._track(info.mid, "")
        if self._discovery is not None:
            disc, node, _ = self._discovery
            # HA's birth message, and this node's retained configs (to clear those now gone)
            client.subscribe([(f"{disc}/status", 1), (f"{disc}/+/{node}/+/config", 1)])
            self._publish_configs()
        self._connected.set()
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._discovery is None or self._closed:
            return
        disc, node, configs = self._discovery
        if msg.topic == f"{disc}/status":
            if msg.payload == b"online":  # Home Assistant (re)started: it forgot the configs
                log.info("Home Assistant is online: publishing the discovery configs again")
                self._publish_configs()
            return
        if msg.retain and msg.payload and msg.topic.endswith("/config"):
            try:
                current = configs()
            except Exception:  # noqa: BLE001 - reported by _publish_configs
                return
            if msg.topic not in current:  # a camera or person of an earlier run, gone now
                log.info("Home Assistant discovery: removing %s", msg.topic)
                self.publish_raw(msg.topic, b"", True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            self._count("disconnects")
        if not self._closed:
            self._count("errors")
            if was:
                self._trouble(f"connection to {self.where} lost ({str(reason).lower()})")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its ``except OSError``: the exception is still at hand
        self._count("errors")
        self._trouble(f"cannot connect to {self.where}: {_reason(sys.exc_info()[1])}")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        with self._mid_lock:
            cam = self._mid_camera.pop(mid, None)
            if cam == "":
                pass
            elif cam is not None:
                self._counts["published"] += 1
                self._per_camera[cam] += 1
            else:  # availability messages, or an event whose publish() has not returned yet
                if len(self._acked_early) > 10_000:
                    self._acked_early.clear()
                self._acked_early.add(mid)
        if self._buffer:
            self._wake.set()

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        """Counters: ``published`` (acknowledged by the broker), ``dropped`` (buffer overflow),
        ``errors`` (connect failures, lost connections, refused publishes), ``buffered``,
        ``connected``, ``published_per_camera``."""
        with self._lock, self._mid_lock:
            buffered = len(self._buffer)
            per_camera = dict(self._per_camera)
            counts = dict(self._counts)
        return {**counts, "buffered": buffered, "connected": self._connected.is_set(),
                "published_per_camera": per_camera}


def _reason(e: BaseException | None) -> str:
    """A short lower-case reason for a connection failure ("connection refused", ...)."""
    if e is None:
        return "unreachable"
    if isinstance(e, socket.gaierror):
        return f"unknown host ({(e.strerror or str(e)).lower()})"
    if isinstance(e, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(e, OSError) and e.errno is not None and e.errno in errno.errorcode:
        return os.strerror(e.errno).lower()
    return (str(e) or type(e).__name__).splitlines()[0][:200]


def _topic_level(name: str) -> str:
    """A safe single topic level (camera names are validated, this is belt and braces)."""
    return "".join(ch if ch not in "/#+" else "_" for ch in name) or "unknown"
