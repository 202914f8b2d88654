"""MqttPublisher against a real mosquitto broker: topics, retained availability and last will,
broker restart with buffered events delivered afterwards, bounded buffer with drop counting."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from livefaces.publish.mqtt import MqttPublisher


class Subscriber:
    """A persistent-session subscriber to ``livefaces/#`` collecting (topic, payload, retain)."""

    def __init__(self, port: int, client_id: str = "test-sub"):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=False)
        self.c.reconnect_delay_set(1, 1)
        self.subscribed = threading.Event()
        self.c.on_connect = lambda c, u, f, r, p: c.subscribe("livefaces/#", qos=1)
        self.c.on_subscribe = lambda c, u, mid, r, p: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect_async("127.0.0.1", port, keepalive=10)
        self.c.loop_start()

    def _on_message(self, c, u, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self.cond.notify_all()

    def wait_for(self, pred, timeout: float = 20.0) -> list:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; got {[(t, p[-40:]) for t, p, _ in self.messages]}")
                self.cond.wait(left)
            return list(self.messages)

    def events(self, topic: str) -> list[dict]:
        with self.cond:
            return [json.loads(p) for t, p, _ in self.messages if t == topic]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def _event(cam: str, i: int, kind: str = "face.appeared") -> dict:
    return {"schema": 1, "type": kind, "source": cam, "time": "2026-01-01T00:00:00Z", "seq": i}


def test_topics_qos1_and_availability(broker):
    sub = Subscriber(broker.port)
    assert sub.subscribed.wait(10)  # events are not retained: published before this, they are gone
    pub = MqttPublisher("127.0.0.1", broker.port, client_id="lf-test").start()
    try:
        assert pub.wait_connected(10)
        pub.publish(_event("front", 1))
        pub.publish(_event("front", 2, "face.lost"))
        pub.publish(_event("back", 3))
        pub.publish({**_event("back", 4, "source.status"), "state": "streaming"})
        sub.wait_for(lambda m: sum(t.endswith("/events") for t, _, _ in m) >= 3
                     and any(t == "livefaces/back/status" for t, _, _ in m))
        assert [e["seq"] for e in sub.events("livefaces/front/events")] == [1, 2]
        assert [e["seq"] for e in sub.events("livefaces/back/events")] == [3]
        assert sub.events("livefaces/back/status")[0]["state"] == "streaming"
        assert any(t == "livefaces/available" and p == b"online" for t, p, _ in sub.messages)
        deadline = time.monotonic() + 10
        while pub.stats()["published"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        st = pub.stats()
        assert st["published"] == 4 and st["dropped"] == 0 and st["connected"]
        assert st["published_per_camera"] == {"front": 2, "back": 2}
    finally:
        pub.close()
        sub.close()
    # a new subscriber sees the retained availability ("offline" after a clean close) and status
    late = Subscriber(broker.port, client_id="late")
    try:
        msgs = late.wait_for(lambda m: any(t == "livefaces/available" for t, _, _ in m)
                             and any(t == "livefaces/back/status" for t, _, _ in m))
        assert (("livefaces/available", b"offline", True)) in msgs
        assert any(t == "livefaces/back/status" and r for t, _, r in msgs)
    finally:
        late.close()


def test_last_will_when_publisher_dies(broker, tmp_path):
    """A publisher process killed without a goodbye: the broker publishes the retained will."""
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[1])
    code = (
        f"import sys, time; sys.path.insert(0, {root!r})\n"
        "from livefaces.publish.mqtt import MqttPublisher\n"
        f"p = MqttPublisher('127.0.0.1', {broker.port}, client_id='doomed', keepalive=5).start()\n"
        "assert p.wait_connected(10); print('up', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    sub = Subscriber(broker.port, client_id="will-watcher")
    try:
        assert proc.stdout.readline().strip() == "up"
        sub.wait_for(lambda m: ("livefaces/available", b"online", False) in m
                     or ("livefaces/available", b"online", True) in m)
        proc.kill()
        proc.wait(5)
        sub.wait_for(lambda m: any(t == "livefaces/available" and p == b"offline" for t, p, _ in m))
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()


def test_broker_restart_buffers_and_resumes(broker):
    sub = Subscriber(broker.port)
    assert sub.subscribed.wait(10)
    pub = MqttPublisher("127.0.0.1", broker.port, client_id="lf-restart", keepalive=5,
                        reconnect_min_s=1, reconnect_max_s=2).start()
    try:
        assert pub.wait_connected(10)
        pub.publish(_event("cam", 0))
        sub.wait_for(lambda m: any(t == "livefaces/cam/events" for t, _, _ in m))
        broker.stop()
        deadline = time.monotonic() + 15
        while pub.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pub.connected
        for i in range(1, 21):  # published while the broker is down: buffered, nothing raises
            pub.publish(_event("cam", i))
        assert pub.stats()["buffered"] == 20
        broker.start()
        assert pub.wait_connected(20), "publisher did not reconnect"
        pub.publish(_event("cam", 21))
        # QoS 1 is at-least-once: a message in flight when the broker died may come twice
        sub.wait_for(lambda m: len({json.loads(p)["seq"] for t, p, _ in m
                                    if t == "livefaces/cam/events"}) >= 22, timeout=30)
        seqs = [e["seq"] for e in sub.events("livefaces/cam/events")]
        assert sorted(set(seqs)) == list(range(22))
        assert seqs.index(21) > max(seqs.index(i) for i in range(1, 21))  # the buffer went first
        st = pub.stats()
        assert st["dropped"] == 0 and st["buffered"] == 0
        assert st["errors"] >= 1 and st["connects"] >= 2
    finally:
        pub.close()
        sub.close()


def test_bounded_buffer_drops_oldest_and_counts(broker):
    sub = Subscriber(broker.port)  # persistent session: survives the broker restart
    assert sub.subscribed.wait(10)
    broker.stop()
    pub = MqttPublisher("127.0.0.1", broker.port, client_id="lf-drop", buffer=5,
                        reconnect_min_s=1, reconnect_max_s=1).start()
    try:
        for i in range(12):
            pub.publish(_event("cam", i))
        st = pub.stats()
        assert st["buffered"] == 5 and st["dropped"] == 7 and not st["connected"]
        broker.start()
        assert pub.wait_connected(20)
        sub.wait_for(lambda m: len([1 for t, _, _ in m if t == "livefaces/cam/events"]) >= 5, timeout=30)
        assert [e["seq"] for e in sub.events("livefaces/cam/events")] == [7, 8, 9, 10, 11]
    finally:
        pub.close()
        sub.close()
