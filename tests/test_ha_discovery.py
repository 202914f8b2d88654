"""Home Assistant MQTT discovery (livefaces/serve/discovery.py, publish/mqtt.py): the payloads
as pure data (ids, slugs, collisions, every payload checked against the keys HA documents for
MQTT discovery), and serve against a real mosquitto broker: retained configs with valid JSON,
unique_ids stable across a restart, availability online/offline, states following a face,
``online`` on ``homeassistant/status`` republishing, empty retained payloads removing the
entities of a camera or person that is gone."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from livefaces.publish.mqtt import MqttPublisher
from livefaces.serve.app import CameraServer
from livefaces.serve.config import MqttConfig, WebConfig, config_from_sources, parse_config
from livefaces.serve.discovery import (
    CameraStates,
    config_payloads,
    discovery_configs,
    node_id,
    slug,
)
from livefaces.types import Faces

ID = re.compile(r"^[a-zA-Z0-9_-]+$")


# --------------------------------------------------------------------------- HA's documented keys
# From the MQTT integration's documentation (discovery, and the binary_sensor, sensor and event
# platforms) and its abbreviation table: every key a livefaces payload uses must be one of these;
# the required ones must be there.

COMMON_KEYS = {"name", "unique_id", "object_id", "availability_topic", "payload_available",
               "payload_not_available", "availability", "availability_mode", "device", "origin",
               "icon", "json_attributes_topic", "json_attributes_template", "entity_category",
               "enabled_by_default", "qos", "encoding", "value_template", "state_topic"}
PLATFORM_KEYS = {
    "binary_sensor": COMMON_KEYS | {"device_class", "payload_on", "payload_off", "expire_after",
                                    "force_update", "off_delay"},
    "sensor": COMMON_KEYS | {"device_class", "state_class", "unit_of_measurement",
                             "expire_after", "force_update", "last_reset_value_template",
                             "suggested_display_precision"},
    "event": COMMON_KEYS | {"device_class", "event_types"},
    "device_tracker": COMMON_KEYS | {"payload_home", "payload_not_home", "payload_reset",
                                     "source_type"},
    "image": (COMMON_KEYS - {"state_topic", "value_template"}) | {"image_topic", "content_type",
                                                                 "image_encoding", "url_topic",
                                                                 "url_template"},
}
REQUIRED = {"binary_sensor": {"state_topic"}, "sensor": {"state_topic"},
            "event": {"state_topic", "event_types"}, "image": {"image_topic"},
            "device_tracker": {"state_topic"}}
DEVICE_KEYS = {"identifiers", "connections", "name", "model", "manufacturer", "sw_version",
               "hw_version", "configuration_url", "suggested_area", "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
#: the device classes HA 2024.3 accepts (binary_sensor: those livefaces uses among them)
BINARY_SENSOR_CLASSES = {"occupancy", "presence", "motion", "connectivity", "problem"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}


def check_payload(topic: str, payload: bytes, prefix: str = "homeassistant") -> dict[str, Any]:
    """Raise AssertionError where ``topic``/``payload`` break HA's discovery rules."""
    m = re.match(rf"^{re.escape(prefix)}/([a-z_]+)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/config$", topic)
    assert m, f"not <prefix>/<component>/<node_id>/<object_id>/config: {topic}"
    component = m.group(1)
    assert component in PLATFORM_KEYS, topic
    cfg = json.loads(payload)
    assert isinstance(cfg, dict)
    unknown = set(cfg) - PLATFORM_KEYS[component]
    assert not unknown, f"{topic}: keys HA does not know: {unknown}"
    assert REQUIRED[component] <= set(cfg), topic
    assert ID.match(cfg["unique_id"]) and ID.match(cfg["object_id"]), topic
    for key in ("state_topic", "availability_topic", "json_attributes_topic", "image_topic"):
        if key in cfg:
            assert isinstance(cfg[key], str) and cfg[key] and not set(cfg[key]) & set("#+"), (topic, key)
    dev = cfg["device"]
    assert set(dev) <= DEVICE_KEYS and dev["identifiers"] and dev["name"], topic
    assert all(ID.match(i) for i in dev["identifiers"]), topic
    if "configuration_url" in dev:
        assert re.match(r"^https?://[^/\s]+/", dev["configuration_url"]), topic
    assert set(cfg["origin"]) <= ORIGIN_KEYS and cfg["origin"]["name"], topic
    if component == "binary_sensor" and "device_class" in cfg:
        assert cfg["device_class"] in BINARY_SENSOR_CLASSES, topic
    if component == "binary_sensor":
        assert isinstance(cfg["payload_on"], str) and isinstance(cfg["payload_off"], str)
    if "state_class" in cfg:
        assert cfg["state_class"] in STATE_CLASSES, topic
    if component == "event":
        assert cfg["event_types"] and all(isinstance(t, str) for t in cfg["event_types"])
    if "value_template" in cfg:
        assert cfg["value_template"].startswith("{{") and cfg["value_template"].endswith("}}")
    return cfg


# --------------------------------------------------------------------------- pure data


def test_slugs_are_ids_stable_and_never_collide():
    assert slug("front_door-2") == "front_door-2"  # a valid id stays itself
    names = ["Anna B", "anna_b", "Anna-B", "anna b", "Zoë", "Zoe", "名前", "a/b", "a+b", "", " "]
    ids = [slug(n) for n in names]
    assert all(ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(names), ids  # collisions handled
    assert ids == [slug(n) for n in names]  # stable (no state, no order)
    assert slug("Zoë").startswith("zoe_") and slug("Anna B").startswith("anna_b_")
    assert node_id("livefaces") == "livefaces" and node_id("home/live faces/") == "home_live_faces"


def test_every_payload_follows_has_discovery_rules():
    configs = discovery_configs(topic_prefix="home/livefaces", cameras=["front", "back-yard"],
                                people=["Anna B", "bob", "Zoë"], page_url="http://10.0.0.2:8780/")
    payloads = config_payloads(configs)
    # per camera: face, faces, last person, event, image, and one per person; a tracker per person
    assert len(payloads) == 2 * (5 + 3) + 3
    uids = set()
    for topic, payload in payloads.items():
        cfg = check_payload(topic, payload)
        uids.add(cfg["unique_id"])
        assert cfg["availability_topic"] == "home/livefaces/available"
        assert cfg["device"]["model"] == "livefaces"
        assert cfg["device"]["configuration_url"] == "http://10.0.0.2:8780/"
        assert cfg["device"]["sw_version"]
    assert len(uids) == len(payloads)  # unique ids are unique
    ada = json.loads(payloads[f"homeassistant/device_tracker/home_livefaces/person_{slug('Anna B')}/config"])
    assert ada["state_topic"] == "home/livefaces/people/Anna B/home" and ada["name"] == "Anna B"
    assert ada["device"]["identifiers"] == ["home_livefaces"]
    front = {t.rsplit("/", 2)[1]: json.loads(p) for t, p in payloads.items() if "/front_" in t}
    assert front["front_face"]["device_class"] == "occupancy"
    assert front["front_face"]["state_topic"] == "home/livefaces/front/occupancy"
    assert front["front_faces"]["state_topic"] == "home/livefaces/front/faces"
    assert front["front_last_person"]["value_template"] == "{{ value_json.name }}"
    anna = front[f"front_person_{slug('Anna B')}"]
    assert anna["name"] == "Anna B at front"
    assert anna["state_topic"] == "home/livefaces/front/people/Anna B"  # the presence topic
    assert (anna["payload_on"], anna["payload_off"]) == ("present", "absent")
    assert len({json.dumps(c["device"]) for t, c in configs.items() if "/front_" in t}) == 1
    # the same names give the same payloads (unique ids stable across restarts)
    assert config_payloads(discovery_configs(
        topic_prefix="home/livefaces", cameras=["front", "back-yard"], people=["Zoë", "bob", "Anna B"],
        page_url="http://10.0.0.2:8780/")) == payloads


def test_camera_states_follow_the_face_events():
    st = CameraStates("livefaces", ["front"])
    assert st.initial() == [("livefaces/front/faces", b"0", True),
                            ("livefaces/front/occupancy", b"OFF", True)]
    ev = {"source": "front", "time": "2026-01-01T00:00:00Z", "confidence": 0.99}
    out = st.update({**ev, "type": "face.appeared", "track_id": 1}, identified=True)
    assert out == [("livefaces/front/faces", b"1", True), ("livefaces/front/occupancy", b"ON", True)]
    assert st.update({**ev, "type": "face.appeared", "track_id": 2}, True)[0][1] == b"2"
    out = st.update({**ev, "type": "face.identified", "track_id": 2, "identity": {"name": "Ann"}}, True)
    last = json.loads(next(p for t, p, _ in out if t == "livefaces/front/last_person"))
    assert last == {"name": "Ann", "track_id": 2, "confidence": 0.99, "time": ev["time"], "camera": "front"}
    event = json.loads(next(p for t, p, r in out if t == "livefaces/front/ha_event" and not r))
    assert event["event_type"] == "face_identified" and event["name"] == "Ann"
    st.update({**ev, "type": "face.lost", "track_id": 1}, True)
    out = st.update({**ev, "type": "face.lost", "track_id": 2}, True)
    assert out == [("livefaces/front/faces", b"0", True), ("livefaces/front/occupancy", b"OFF", True)]
    # without identification, every new face is the "unknown" last person
    out = CameraStates("livefaces", ["front"]).update({**ev, "type": "face.appeared", "track_id": 5}, False)
    assert json.loads(out[-1][1])["name"] == "unknown"


def test_face_image_of_the_last_person_and_never_an_unknown_one_with_blur_unknown():
    from test_serve_web import _face_result

    from livefaces.serve.discovery import HaStateSink
    from livefaces.serve.hub import encode_jpeg

    class Pub:
        def __init__(self) -> None:
            self.sent: list[tuple[str, bytes, bool]] = []

        def publish_raw(self, topic: str, payload: bytes, retain: bool) -> None:
            self.sent.append((topic, payload, retain))

    ev = {"source": "front", "time": "t", "confidence": 0.9, "track_id": 1, "box": [60, 40, 160, 170]}
    for unknown_images, name, expect in ((True, None, True), (False, None, False), (False, "Ann", True)):
        pub = Pub()
        sink = HaStateSink(CameraStates("livefaces", ["front"]), pub, identified=True,
                           encode=encode_jpeg, unknown_images=unknown_images)
        sink.on_event({**ev, "type": "face.appeared"})
        sink.on_event({**ev, "type": "face.identified", "identity": {"name": name}})
        sink.on_result(_face_result("front"))
        jpegs = [p for t, p, r in pub.sent if t == "livefaces/front/face_jpeg" and r]
        assert bool(jpegs) == expect, (unknown_images, name)
        if jpegs:
            assert jpegs[0].startswith(b"\xff\xd8")


def test_device_tracker_home_while_seen_within_home_within():
    from livefaces.serve.discovery import HaStateSink

    now = [100.0]
    sent: list[tuple[str, bytes]] = []

    class Pub:
        def publish_raw(self, topic: str, payload: bytes, retain: bool) -> None:
            assert retain or topic.endswith("/ha_event")
            sent.append((topic, payload))

    sink = HaStateSink(CameraStates("livefaces", ["a", "b"]), Pub(), identified=True,
                       people=lambda: ("Ann", "Bo"), home_within=60, clock=lambda: now[0])
    sink.start()
    home = [(t, p) for t, p in sent if t.endswith("/home")]
    assert home == [("livefaces/people/Ann/home", b"not_home"), ("livefaces/people/Bo/home", b"not_home")]
    sent.clear()
    ev = {"time": "t", "confidence": 0.9, "type": "face.identified", "identity": {"name": "Ann"}}
    sink.on_event({**ev, "source": "a", "track_id": 1})
    now[0] += 50
    sink.on_event({**ev, "source": "b", "track_id": 2})  # seen again elsewhere: still home
    now[0] += 59
    sink.on_stats(None)
    assert [(t, p) for t, p in sent if t.endswith("/home")] == [("livefaces/people/Ann/home", b"home")]
    now[0] += 2
    sink.on_stats(None)
    assert [(t, p) for t, p in sent if t.endswith("/home")][-1] == ("livefaces/people/Ann/home", b"not_home")


def test_discovery_is_on_by_default_when_a_broker_is_set(tmp_path):
    cfg = parse_config("cameras: {a: 'synthetic:'}\nmqtt: {host: 127.0.0.1}\n")
    assert cfg.mqtt is not None and cfg.mqtt.discovery and cfg.mqtt.discovery_prefix == "homeassistant"
    cfg = parse_config("cameras: {a: 'synthetic:'}\nmqtt: {host: 127.0.0.1, discovery: false}\n")
    assert cfg.mqtt is not None and not cfg.mqtt.discovery


# --------------------------------------------------------------------------- against a real broker


class Watcher:
    """A subscriber to ``homeassistant/#`` and ``livefaces/#`` keeping every message."""

    def __init__(self, port: int, client_id: str):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311)
        self.subscribed = threading.Event()
        self.c.on_connect = lambda c, u, f, r, p: c.subscribe([("homeassistant/#", 1), ("livefaces/#", 1)])
        self.c.on_subscribe = lambda c, u, mid, r, p: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, c, u, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[list], Any], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (got := pred(self.messages)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; got {[(t, p[:60]) for t, p, _ in self.messages]}")
                self.cond.wait(left)
            return got

    def last(self, topic: str) -> bytes | None:
        with self.cond:
            found = [p for t, p, _ in self.messages if t == topic]
        return found[-1] if found else None

    def configs(self) -> dict[str, bytes]:
        with self.cond:
            return {t: p for t, p, _ in self.messages
                    if t.startswith("homeassistant/") and t.endswith("/config")}

    def clear(self) -> None:
        with self.cond:
            self.messages.clear()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def retained(port: int, client_id: str, settle: float = 1.0) -> dict[str, bytes]:
    """What the broker holds retained under ``homeassistant/#`` (a fresh subscriber's view:
    retained messages come right after the subscription; ``settle`` s of quiet ends it)."""
    w = Watcher(port, client_id)
    try:
        time.sleep(settle)
        with w.cond:
            return {t: p for t, p, r in w.messages if r and t.startswith("homeassistant/")}
    finally:
        w.close()


class FaceDetector:
    """Finds one face in the middle of every image while ``on`` is set."""

    min_face_size = 40.0

    def __init__(self) -> None:
        self.on = threading.Event()

    def detect_batch(self, images: list[np.ndarray]) -> list[Faces]:
        out = []
        for img in images:
            if not self.on.is_set():
                out.append(Faces.empty())
                continue
            h, w = img.shape[:2]
            box = np.array([[w * 0.3, h * 0.2, w * 0.7, h * 0.8]], np.float32)
            lm = np.array([[[w * .4, h * .4], [w * .6, h * .4], [w * .5, h * .5], [w * .42, h * .65],
                            [w * .58, h * .65]]], np.float32)
            out.append(Faces(box, np.array([0.99], np.float32), lm))
        return out


def make_server(port: int, cams: list[str], detector: Any) -> CameraServer:
    cfg = config_from_sources([f"{c}=synthetic:160x120@10" for c in cams], detect_fps=5, min_face_size=40)
    cfg = dataclasses.replace(cfg, web=WebConfig(port=0),
                              mqtt=MqttConfig(host="127.0.0.1", port=port, client_id="lf-ha"))
    return CameraServer(cfg, detector=detector)


def test_serve_publishes_discovery_states_and_availability(broker):
    w = Watcher(broker.port, "ha-watch")
    det = FaceDetector()
    server = make_server(broker.port, ["front", "back"], det).start()
    try:
        want = 2 * 5  # face, faces, last person, event, image per camera (no people: no persons)
        w.wait_for(lambda m: len(w.configs()) >= want)
        configs = w.configs()
        assert len(configs) == want
        for topic, payload in configs.items():
            check_payload(topic, payload)
        url = json.loads(configs["homeassistant/binary_sensor/livefaces/front_face/config"])
        assert url["device"]["configuration_url"] == f"http://127.0.0.1:{server.web.port}/"
        w.wait_for(lambda m: w.last("livefaces/available") == b"online")
        w.wait_for(lambda m: w.last("livefaces/front/occupancy") == b"OFF")
        assert w.last("livefaces/front/faces") == b"0"

        det.on.set()  # a face: occupancy ON, a count, the last person "unknown"
        w.wait_for(lambda m: w.last("livefaces/front/occupancy") == b"ON", timeout=30)
        assert int(w.last("livefaces/front/faces") or b"0") >= 1
        w.wait_for(lambda m: w.last("livefaces/front/last_person") is not None)
        last = json.loads(w.last("livefaces/front/last_person") or b"{}")
        assert last["name"] == "unknown" and isinstance(last["track_id"], int) and last["time"]
        w.wait_for(lambda m: (w.last("livefaces/front/face_jpeg") or b"").startswith(b"\xff\xd8"))
        det.on.clear()  # gone again
        w.wait_for(lambda m: w.last("livefaces/front/occupancy") == b"OFF", timeout=30)
        assert w.last("livefaces/front/faces") == b"0"

        # Home Assistant restarts: its birth message makes livefaces publish the configs again
        w.clear()
        w.c.publish("homeassistant/status", "online", qos=1)
        w.wait_for(lambda m: len(w.configs()) >= want)
        assert w.configs() == configs
    finally:
        server.stop()
    w.wait_for(lambda m: w.last("livefaces/available") == b"offline")
    held = retained(broker.port, "ha-held")
    assert {t: p for t, p in held.items() if t.endswith("/config")} == configs  # retained
    w.close()

    # a restart with camera "back" removed: same unique ids for "front", "back"'s entities removed
    w = Watcher(broker.port, "ha-watch-2")
    server = make_server(broker.port, ["front"], FaceDetector()).start()
    try:
        back = [t for t in configs if "/back_" in t]
        w.wait_for(lambda m: all(w.last(t) == b"" for t in back))
        w.wait_for(lambda m: all(w.last(t) is not None for t in configs if "/front_" in t))
        for t in configs:
            if "/front_" in t:
                assert json.loads(w.last(t) or b"")["unique_id"] == json.loads(configs[t])["unique_id"]
    finally:
        server.stop()
        w.close()
    held = retained(broker.port, "ha-held-2")
    assert {t for t in held if t.endswith("/config")} == {t for t in configs if "/front_" in t}


def test_a_person_gone_is_removed_and_a_new_one_added(broker):
    people = ["Anna B", "bob"]

    def configs() -> dict[str, bytes]:
        return config_payloads(discovery_configs(topic_prefix="livefaces", cameras=["door"],
                                                 people=people))

    pub = MqttPublisher("127.0.0.1", broker.port, client_id="lf-people")
    pub.set_discovery("homeassistant", node_id("livefaces"), configs)
    w = Watcher(broker.port, "p-watch-1")
    pub.start()
    try:
        first = configs()
        w.wait_for(lambda m: set(w.configs()) >= set(first))
    finally:
        pub.close()
        w.close()
    assert set(first) <= set(retained(broker.port, "p1"))
    people = ["bob", "Zoë"]  # Anna B forgotten, Zoë enrolled, before the next start
    pub = MqttPublisher("127.0.0.1", broker.port, client_id="lf-people")
    pub.set_discovery("homeassistant", node_id("livefaces"), configs)
    w = Watcher(broker.port, "p-watch")
    pub.start()
    try:
        anna = f"homeassistant/binary_sensor/livefaces/door_person_{slug('Anna B')}/config"
        zoe = f"homeassistant/binary_sensor/livefaces/door_person_{slug('Zoë')}/config"
        w.wait_for(lambda m: w.last(anna) == b"" and w.last(zoe))
        assert json.loads(w.last(zoe) or b"")["name"] == "Zoë at door"
        people.append("carl")  # enrolled while running
        pub.republish_discovery()
        carl = "homeassistant/binary_sensor/livefaces/door_person_carl/config"
        w.wait_for(lambda m: w.last(carl))
    finally:
        pub.close()
        w.close()
    held = retained(broker.port, "p2")
    assert anna not in held and zoe in held and carl in held


# --------------------------------------------------------------------------- a real Home Assistant


@pytest.mark.timeout(1800)  # the first run installs HA into its venv (minutes)
def test_real_home_assistant_makes_the_entities(broker, tmp_path):
    """HA 2024.3.3 (tests/_homeassistant.py) with its MQTT integration on the test's broker:
    the entities appear through discovery with the right states, go ``unavailable`` when
    serve stops, and disappear when a camera is removed."""
    from _homeassistant import HomeAssistant, ensure_venv

    ha = HomeAssistant(ensure_venv(), tmp_path / "ha", broker.port)
    det = FaceDetector()
    server = None

    def wait_states(pred: Callable[[dict], Any], what: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        st: dict = {}
        while time.monotonic() < deadline:
            st = ha.states("livefaces_")
            if pred(st):
                return st
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; HA has "
                             f"{ {k: v['state'] for k, v in st.items()} }\n{ha.log_tail()}")

    def state(st: dict, eid: str) -> str | None:
        return st[eid]["state"] if eid in st else None

    ids = [f"{c}.livefaces_{cam}_{w}" for cam in ("front", "back")
           for c, w in (("binary_sensor", "face"), ("sensor", "faces"), ("sensor", "last_person"),
                        ("event", "event"), ("image", "image"))]
    try:
        ha.start()
        server = make_server(broker.port, ["front", "back"], det).start()
        st = wait_states(lambda s: all(i in s for i in ids)
                         and s["binary_sensor.livefaces_front_face"]["state"] == "off", "the entities")
        assert state(st, "sensor.livefaces_front_faces") == "0"
        assert st["binary_sensor.livefaces_front_face"]["attributes"]["device_class"] == "occupancy"
        assert st["event.livefaces_front_event"]["attributes"]["event_types"] == ["face_identified",
                                                                                 "stranger_seen"]
        det.on.set()  # a face is seen: on, a count, the last person with its attributes
        st = wait_states(lambda s: state(s, "binary_sensor.livefaces_front_face") == "on"
                         and state(s, "sensor.livefaces_front_last_person") == "unknown", "face on")
        assert int(state(st, "sensor.livefaces_front_faces") or 0) >= 1
        st = wait_states(lambda s: state(s, "image.livefaces_front_image") not in (None, "unknown",
                                                                                  "unavailable"),
                         "the face image")
        attrs = st["sensor.livefaces_front_last_person"]["attributes"]
        assert isinstance(attrs["track_id"], int) and attrs["camera"] == "front" and attrs["time"]
        # a person named (the face.identified event the identification worker sends)
        tid = attrs["track_id"]
        assert server.ha_states is not None
        server.ha_states.on_event({"type": "face.identified", "source": "front", "track_id": tid,
                                   "confidence": 0.99, "time": "2026-01-01T00:00:00Z",
                                   "identity": {"name": "Ada"}})
        st = wait_states(lambda s: state(s, "sensor.livefaces_front_last_person") == "Ada"
                         and s["event.livefaces_front_event"]["attributes"].get("event_type")
                         == "face_identified", "Ada and the event")
        assert st["event.livefaces_front_event"]["attributes"]["name"] == "Ada"
        server.stop()
        server = None
        wait_states(lambda s: all(state(s, i) == "unavailable" for i in ids), "unavailable")

        # serve again without "back": its entities are removed from HA
        server = make_server(broker.port, ["front"], FaceDetector()).start()
        st = wait_states(lambda s: not any("_back_" in k for k in s)
                         and state(s, "binary_sensor.livefaces_front_face") == "off", "back removed")
        assert all(i in st for i in ids if "_front_" in i)

        # the per-person payloads (with people:): presence at a camera and the device tracker
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-people", protocol=mqtt.MQTTv311)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        try:
            for topic, payload in config_payloads(discovery_configs(
                    topic_prefix="lfp", cameras=["door"], people=["Ada Lovelace"])).items():
                c.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
            for topic, payload in (("lfp/available", "online"), ("lfp/people/Ada Lovelace/home", "home"),
                                   ("lfp/door/people/Ada Lovelace", "present")):
                c.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
            pid = slug("Ada Lovelace")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                st = ha.states("lfp_")
                if state(st, f"device_tracker.lfp_person_{pid}") == "home" and \
                        state(st, f"binary_sensor.lfp_door_person_{pid}") == "on":
                    break
                time.sleep(0.5)
            else:
                raise AssertionError(f"person entities: { {k: v['state'] for k, v in st.items()} }")
        finally:
            c.loop_stop()
            c.disconnect()
    finally:
        if server is not None:
            server.stop()
        ha.stop()


def test_a_stranger_given_its_id_is_a_stranger_seen_event_new_once_a_day():
    """``face.identified`` with ``identity.stranger`` (serve's strangers on) fires HA's
    ``stranger_seen`` with the id and whether this serve saw that stranger earlier that day."""
    st = CameraStates("livefaces", ["front"])
    ev = {"source": "front", "confidence": 0.99, "type": "face.identified",
          "identity": {"name": None, "stranger": "stranger-7"}}

    def seen(track: int, time: str) -> dict:
        out = st.update({**ev, "track_id": track, "time": time}, True)
        return json.loads(next(p for t, p, r in out if t == "livefaces/front/ha_event" and not r
                               and b"stranger_seen" in p))

    first = seen(1, "2026-01-01T09:00:00Z")
    assert first["stranger"] == "stranger-7" and first["new_today"] is True
    assert seen(2, "2026-01-01T17:00:00Z")["new_today"] is False
    assert seen(3, "2026-01-02T08:00:00Z")["new_today"] is True
    named = st.update({**ev, "track_id": 4, "time": "2026-01-02T09:00:00Z",
                       "identity": {"name": "Ann"}}, True)
    assert not [p for t, p, _ in named if b"stranger_seen" in p]
