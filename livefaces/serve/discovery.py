"""Home Assistant MQTT discovery for ``livefaces serve`` (``mqtt: {discovery: true}``, the
default): the retained config messages that make HA create the entities by itself, as pure
data (:func:`discovery_configs`), and the per-camera state topics they read
(:class:`CameraStates`, fed by :class:`HaStateSink`). The MQTT side (publishing, the
``homeassistant/status`` birth message, removing what is gone) is in
:mod:`livefaces.publish.mqtt`.

Per camera, one HA device (``identifiers`` ``<node>_<camera>``, model ``livefaces``,
``configuration_url`` the web page) with::

    binary_sensor  Face                 <prefix>/<camera>/occupancy   "ON"/"OFF", retained
    sensor         Faces                <prefix>/<camera>/faces       face count, retained
    sensor         Last person          <prefix>/<camera>/last_person JSON {name (or "unknown"),
                                        track_id, confidence, time}, retained; the other keys are
                                        the entity's attributes
    binary_sensor  <person> at <camera> <prefix>/<camera>/people/<person> "present"/"absent"
                                        (the presence topics, with ``people:`` only)

and per known person, on the device ``livefaces`` (``identifiers`` ``<node>``)::

    device_tracker <person>             <prefix>/people/<person>/home "home" while seen on any
                                        camera within ``mqtt.home_within`` s, else "not_home"
    event          Face event           <prefix>/<camera>/ha_event    {"event_type":
                                        "face_identified", name, track_id, ...}, not retained
    image          Last face            <prefix>/<camera>/face_jpeg   the last person's face, JPEG,
                                        retained (not for unknown faces with people.blur_unknown)

Config topics: ``<discovery_prefix>/<component>/<node>/<object_id>/config`` (HA's documented
form with a node id), retained. ``<node>`` is the slug of the topic prefix (``livefaces``),
``<object_id>`` ``<camera>_face``, ``<camera>_faces``, ``<camera>_last_person``,
``<camera>_event``, ``<camera>_image``, ``<camera>_person_<person id>``; ``unique_id`` is
``<node>_<object_id>``: the same names give the same ids at every start. Ids hold
``[a-zA-Z0-9_-]`` only: a person name that is not such an id already is slugified (lower case
ASCII, other characters ``_``) and gets ``_`` and 6 hex digits of its SHA-1, so two names never
share an id and a name keeps its id whatever other names come and go.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from .. import __version__

#: what HA allows in a node id and an object id
ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
DISCOVERY_PREFIX = "homeassistant"
#: the event types of the ``event`` entity
EVENT_TYPES = ("face_identified", "stranger_seen")


def slug(name: str) -> str:
    """``name`` as an HA id: itself when it is one already (``[a-zA-Z0-9_-]+``), else its
    lower-case ASCII slug plus ``_`` and 6 hex digits of its SHA-1 (``"Zoë B"`` →
    ``zoe_b_<hash>``): stable, and never the id of another name."""
    if ID_RE.match(name):
        return name
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^a-z0-9]+", "_", ascii_.lower()).strip("_") or "x"
    return f"{base}_{hashlib.sha1(name.encode('utf-8')).hexdigest()[:6]}"


def node_id(topic_prefix: str) -> str:
    """The node id of a livefaces instance: its topic prefix as an id (``home/livefaces`` →
    ``home_livefaces``); two instances on one broker need different prefixes anyway."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", topic_prefix.strip("/")).strip("_") or "livefaces"


def topic_level(name: str) -> str:
    """A name as one topic level, as :mod:`livefaces.publish.mqtt` writes it."""
    return "".join(ch if ch not in "/#+" else "_" for ch in name) or "unknown"


def state_topics(prefix: str, camera: str) -> dict[str, str]:
    """The state topics of a camera's entities (``occupancy``, ``faces``, ``last_person``,
    ``ha_event``, ``face_jpeg``)."""
    cam = topic_level(camera)
    return {k: f"{prefix}/{cam}/{k}"
            for k in ("occupancy", "faces", "last_person", "ha_event", "face_jpeg")}


def home_topic(prefix: str, person: str) -> str:
    """The device tracker's topic of ``person``: ``home`` / ``not_home``, retained."""
    return f"{prefix}/people/{topic_level(person)}/home"


def discovery_configs(*, topic_prefix: str, cameras: Iterable[str], people: Iterable[str] = (),
                      page_url: str | None = None,
                      discovery_prefix: str = DISCOVERY_PREFIX) -> dict[str, dict[str, Any]]:
    """``{config topic: config}`` of every entity of ``cameras`` (and per person of
    ``people``, each camera); see the module docstring. ``page_url``: the web page (the
    devices' ``configuration_url``), None without a web server."""
    prefix = topic_prefix.rstrip("/")
    node = node_id(prefix)
    avail = f"{prefix}/available"
    people = sorted(set(people))
    out: dict[str, dict[str, Any]] = {}
    hub_device: dict[str, Any] = {"identifiers": [node], "name": "livefaces", "model": "livefaces",
                                  "manufacturer": "livefaces", "sw_version": __version__}
    if page_url:
        hub_device["configuration_url"] = page_url
    for person in people:
        object_id = f"person_{slug(person)}"
        out[f"{discovery_prefix}/device_tracker/{node}/{object_id}/config"] = {
            "name": person, "state_topic": home_topic(prefix, person),
            "payload_home": "home", "payload_not_home": "not_home",
            "unique_id": f"{node}_{object_id}", "object_id": f"{node}_{object_id}",
            "availability_topic": avail, "payload_available": "online",
            "payload_not_available": "offline", "device": hub_device,
            "origin": {"name": "livefaces", "sw_version": __version__}}
    for camera in cameras:
        cam = slug(camera)
        device: dict[str, Any] = {"identifiers": [f"{node}_{cam}"], "name": f"livefaces {camera}",
                                  "model": "livefaces", "manufacturer": "livefaces",
                                  "sw_version": __version__}
        if page_url:
            device["configuration_url"] = page_url
        topics = state_topics(prefix, camera)

        def add(component: str, what: str, cfg: dict[str, Any], cam: str = cam,
                device: dict[str, Any] = device) -> None:
            object_id = f"{cam}_{what}"
            out[f"{discovery_prefix}/{component}/{node}/{object_id}/config"] = {
                **cfg, "unique_id": f"{node}_{object_id}", "object_id": f"{node}_{object_id}",
                "availability_topic": avail, "payload_available": "online",
                "payload_not_available": "offline", "device": device,
                "origin": {"name": "livefaces", "sw_version": __version__}}

        add("binary_sensor", "face", {"name": "Face", "device_class": "occupancy",
                                      "state_topic": topics["occupancy"],
                                      "payload_on": "ON", "payload_off": "OFF"})
        add("sensor", "faces", {"name": "Faces", "state_topic": topics["faces"],
                                "state_class": "measurement", "icon": "mdi:face-recognition"})
        add("sensor", "last_person", {"name": "Last person", "state_topic": topics["last_person"],
                                      "value_template": "{{ value_json.name }}",
                                      "json_attributes_topic": topics["last_person"],
                                      "icon": "mdi:account"})
        add("event", "event", {"name": "Face event", "state_topic": topics["ha_event"],
                               "event_types": list(EVENT_TYPES)})
        add("image", "image", {"name": "Last face", "image_topic": topics["face_jpeg"],
                               "content_type": "image/jpeg"})
        for person in people:
            add("binary_sensor", f"person_{slug(person)}", {
                "name": f"{person} at {camera}", "device_class": "presence",
                "state_topic": f"{prefix}/{topic_level(camera)}/people/{topic_level(person)}",
                "payload_on": "present", "payload_off": "absent"})
    return out


def config_payloads(configs: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    """The configs as the retained payloads (compact JSON, UTF-8)."""
    return {t: json.dumps(c, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            for t, c in configs.items()}


class CameraStates:
    """The state of each camera's entities from the face events: the tracks on it now
    (``face.appeared`` adds, ``face.lost`` removes), the last person (``face.identified``:
    its name, or ``unknown``; without identification every new face is ``unknown``).
    :meth:`update` returns the ``(topic, payload, retain)`` to publish. Not thread-safe."""

    def __init__(self, topic_prefix: str, cameras: Iterable[str]) -> None:
        self.prefix = topic_prefix.rstrip("/")
        self.cameras = list(cameras)
        self.tracks: dict[str, set[int]] = {c: set() for c in self.cameras}
        self._strangers_seen: set[tuple[str, str]] = set()  # (UTC day, stranger id)

    def initial(self) -> list[tuple[str, bytes, bool]]:
        """Every camera empty (its ``last_person`` is left as it was)."""
        out: list[tuple[str, bytes, bool]] = []
        for cam in self.cameras:
            self.tracks[cam] = set()
            out += self._count(cam)
        return out

    def _count(self, cam: str) -> list[tuple[str, bytes, bool]]:
        t = state_topics(self.prefix, cam)
        n = len(self.tracks[cam])
        return [(t["faces"], str(n).encode(), True), (t["occupancy"], b"ON" if n else b"OFF", True)]

    def update(self, event: dict[str, Any], identified: bool) -> list[tuple[str, bytes, bool]]:
        """What ``event`` changes; ``identified``: live identification is on (the last
        person then comes from ``face.identified`` only)."""
        kind, cam, tid = event.get("type"), str(event.get("source")), event.get("track_id")
        if cam not in self.tracks or not isinstance(tid, int):
            return []
        out: list[tuple[str, bytes, bool]] = []
        t = state_topics(self.prefix, cam)
        if kind == "face.appeared" or kind == "face.updated":
            if tid not in self.tracks[cam]:
                self.tracks[cam].add(tid)
                out += self._count(cam)
        elif kind == "face.lost":
            if tid in self.tracks[cam]:
                self.tracks[cam].discard(tid)
                out += self._count(cam)
        if (kind == "face.identified") or (kind == "face.appeared" and not identified):
            name = (event.get("identity") or {}).get("name") if kind == "face.identified" else None
            last = {"name": name if isinstance(name, str) else "unknown", "track_id": tid,
                    "confidence": event.get("confidence"), "time": event.get("time"),
                    "camera": cam}
            out.append((t["last_person"], json.dumps(last, ensure_ascii=False).encode("utf-8"), True))
            if kind == "face.identified":
                out.append((t["ha_event"], json.dumps({"event_type": "face_identified", **last},
                                                      ensure_ascii=False).encode("utf-8"), False))
            stranger = (event.get("identity") or {}).get("stranger")
            if kind == "face.identified" and name is None and isinstance(stranger, str):
                # new_today: first seen by this serve on this UTC day (the store's own first
                # sighting is in /api/people's new_today)
                day = str(event.get("time") or "")[:10]
                new = (day, stranger) not in self._strangers_seen
                self._strangers_seen.add((day, stranger))
                out.append((t["ha_event"], json.dumps(
                    {"event_type": "stranger_seen", "stranger": stranger, "new_today": new,
                     "track_id": tid, "confidence": event.get("confidence"),
                     "time": event.get("time"), "camera": cam},
                    ensure_ascii=False).encode("utf-8"), False))
        return out


class RawPublisher(Protocol):
    """Where the states go (:class:`~livefaces.publish.mqtt.MqttPublisher`)."""

    def publish_raw(self, topic: str, payload: bytes, retain: bool) -> None:
        """Queue one message; never blocks."""


class HaStateSink:
    """A :class:`~livefaces.publish.Sink` (by its methods) publishing :class:`CameraStates`;
    before the MQTT publisher in the sink list, so that closing says ``OFF``/``0`` before
    ``offline``."""

    result_queue = 1

    result_policy = "drop_oldest"
    result_queue = 2  # the newest frame of each camera, for the face image

    def __init__(self, states: CameraStates, publisher: RawPublisher, identified: bool,
                 encode: Callable[[np.ndarray], bytes] | None = None,
                 unknown_images: bool = True, people: Callable[[], Iterable[str]] = tuple,
                 home_within: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.states, self.publisher, self.identified = states, publisher, identified
        self.encode, self.unknown_images = encode, unknown_images
        self.people, self.home_within, self.clock = people, float(home_within), clock
        self._home: dict[str, float] = {}  # person -> last seen (clock), while home
        self._pending: dict[str, dict[str, Any]] = {}  # camera -> event whose face to show
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self._send(self.states.initial())
            for person in self.people():  # nobody is home until seen
                self.publisher.publish_raw(home_topic(self.states.prefix, person), b"not_home", True)

    def _send(self, msgs: list[tuple[str, bytes, bool]]) -> None:
        for topic, payload, retain in msgs:
            self.publisher.publish_raw(topic, payload, retain)

    def on_result(self, result: Any) -> None:
        """The frame after a new last person: their face from it (the event's box)."""
        if self._pending:
            with self._lock:
                event = self._pending.pop(result.frame.source, None)
            if event is not None:
                self._image(event, result.frame.image)

    def on_stats(self, stats: Any) -> None:
        """About once a second: who has not been seen for ``home_within`` s is ``not_home``."""
        with self._lock:
            now = self.clock()
            for person in [p for p, t in self._home.items() if now - t > self.home_within]:
                del self._home[person]
                self.publisher.publish_raw(home_topic(self.states.prefix, person), b"not_home", True)

    def on_event(self, event: dict[str, Any]) -> None:
        with self._lock:
            msgs = self.states.update(event, self.identified)
            self._send(msgs)
            name = (event.get("identity") or {}).get("name")
            if isinstance(name, str) and event.get("type") in ("face.identified", "face.updated"):
                if name not in self._home:
                    self.publisher.publish_raw(home_topic(self.states.prefix, name), b"home", True)
                self._home[name] = self.clock()
            last = [p for t, p, _ in msgs if t.endswith("/last_person")]
            if last and self.encode is not None and \
                    (self.unknown_images or json.loads(last[0])["name"] != "unknown"):
                self._pending[str(event.get("source"))] = event

    def _image(self, event: dict[str, Any], img: np.ndarray) -> None:
        """The face of ``event`` cut from ``img`` (its camera's next frame), as a JPEG on
        ``face_jpeg`` (retained)."""
        cam, box = str(event.get("source")), event.get("box")
        if not isinstance(box, list) or len(box) != 4 or self.encode is None:
            return
        h, w = img.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box)
        mx, my = 0.25 * (x2 - x1), 0.25 * (y2 - y1)  # some margin around the face
        xa, ya = max(0, int(x1 - mx)), max(0, int(y1 - my))
        xb, yb = min(w, int(x2 + mx)), min(h, int(y2 + my))
        if xb - xa < 2 or yb - ya < 2:
            return
        self.publisher.publish_raw(state_topics(self.states.prefix, cam)["face_jpeg"],
                                   self.encode(np.ascontiguousarray(img[ya:yb, xa:xb])), True)

    def close(self) -> None:
        with self._lock:
            self._send(self.states.initial())
