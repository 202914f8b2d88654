"""One camera, one object: per-camera options, schedule state, scale and face-event state."""

from __future__ import annotations

import numpy as np

from livefaces.events import FaceEvents
from livefaces.pipeline import Camera, CameraOptions, Pipeline
from livefaces.publish.memory import MemoryPublisher
from livefaces.schedule import DetectSchedule, EveryN, PerCameraRate
from livefaces.sources.synthetic import SyntheticSource
from livefaces.track import Tracker
from livefaces.types import Faces, Frame


class _Sizes:
    """A detector that finds nothing and records the image sizes it was given."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def detect_batch(self, images):
        self.shapes += [im.shape for im in images]
        return [Faces.empty() for _ in images]


def test_camera_options_name_and_scale_belong_to_their_camera():
    det = _Sizes()
    p = Pipeline([CameraOptions(SyntheticSource(320, 240, 25, frames=10, realtime=False), name="front",
                                scale=0.5),
                  CameraOptions(SyntheticSource(320, 240, 25, frames=10, realtime=False), name="back")],
                 det, policy=EveryN(n=1))
    assert [c.name for c in p.cameras] == ["front", "back"]
    assert all(isinstance(c, Camera) for c in p.cameras)
    assert p.cameras[0].scale == 0.5 and p.cameras[1].scale == 1.0
    st = p.run()
    assert {s.name for s in st.sources} == {"front", "back"}
    assert all(s.frames_processed == 10 for s in st.sources)
    # the same-size frames of the two cameras reach the detector at their own scale
    assert det.shapes.count((120, 160, 3)) == 10 and det.shapes.count((240, 320, 3)) == 10


def test_camera_scale_is_capped_at_one():
    p = Pipeline([CameraOptions(SyntheticSource(64, 48, frames=1, realtime=False), scale=3.0)], _Sizes())
    assert p.cameras[0].scale == 1.0


def test_per_camera_rate_comes_from_each_cameras_own_state():
    pol = PerCameraRate()
    a, b = DetectSchedule(fps=5.0), DetectSchedule(fps=2.0)
    pol.register("a", a)
    pol.register("b", b)
    img = np.zeros((2, 2, 3), np.uint8)
    counts = {"a": 0, "b": 0}
    for i in range(15 * 20):  # 20 s at 15 fps
        now = i / 15
        for name, st in (("a", a), ("b", b)):
            f = Frame(img, name, i, now, now)
            if pol.due(f, True, now, st):
                pol.detected(f, now, st)
                counts[name] += 1
    assert abs(counts["a"] - 100) <= 1 and abs(counts["b"] - 40) <= 1
    assert pol.describe() == "per camera: a 5/s, b 2/s"
    assert pol._state == {"a": a, "b": b}  # no copies: the cameras' own objects


def test_pipeline_gives_each_camera_its_detect_fps():
    p = Pipeline([CameraOptions(SyntheticSource(64, 48, frames=1, realtime=False), name="x",
                                detect_fps=3.0)], _Sizes(), policy=PerCameraRate())
    assert p.cameras[0].schedule.fps == 3.0 and "x 3/s" in p.policy.describe()


def _faces(*boxes):
    n = len(boxes)
    return Faces(np.array(boxes, np.float32).reshape(n, 4), np.full(n, 0.99, np.float32),
                 np.zeros((n, 5, 2), np.float32))


def test_face_events_update_and_clear():
    t = [0.0]
    ev = FaceEvents("cam", update_interval=1.0, clock=lambda: t[0], wall=lambda: 1000.0 + t[0])
    tr = Tracker()
    img = np.zeros((100, 200, 3), np.uint8)
    out = []
    for i in range(30):  # 3 s at 10 fps, detected every frame
        t[0] = i / 10
        f = Frame(img, "cam", i, t[0], t[0])
        out += ev.update(f, tr.update(_faces((10 + i, 10, 50 + i, 50)), t[0]))
    types = [e["type"] for e in out]
    assert types[0] == "face.appeared" and out[0]["before"] is None
    assert 2 <= types.count("face.updated") <= 3  # rate limited to one per second
    assert ev.active == [out[0]["track_id"]]
    lost = ev.clear("source_ended", [x.id for x in tr.clear()])
    assert [e["type"] for e in lost] == ["face.lost"] and lost[0]["reason"] == "source_ended"
    assert lost[0]["detected"] is True and lost[0]["frame_index"] == 29
    assert lost[0]["duration"] == 2.9 and ev.active == [] and ev.clear("stopped") == []


def test_stream_end_flushes_each_cameras_tracks():
    mem = MemoryPublisher()
    p = Pipeline([CameraOptions(SyntheticSource(320, 240, 25, frames=20, realtime=False), name="c1")],
                 _FaceEveryFrame(), policy=EveryN(n=1), sinks=[mem])
    p.run()
    lost = mem.of_type("face.lost")
    assert [e["source"] for e in mem.of_type("face.appeared")] == ["c1"]
    assert len(lost) == 1 and lost[0]["reason"] == "source_ended"


class _FaceEveryFrame:
    def detect_batch(self, images):
        return [_faces((10, 10, 60, 60)) for _ in images]


def test_status_is_one_enum_and_json_stays_a_string():
    import json

    from livefaces.events import status_event
    from livefaces.types import Status

    assert Status.CONNECTED == "connected" and f"{Status.FAILED}" == "failed"
    ev = status_event("cam", Status.CONNECTING, Status.CONNECTED)
    assert json.loads(json.dumps(ev))["after"] == "connected" and type(ev["after"]) is str
    st = Pipeline([SyntheticSource(64, 48, frames=3, realtime=False)], _Sizes()).run()
    assert st.source().status is Status.ENDED and json.dumps(st.source().status) == '"ended"'


def _live_args(source):
    import argparse

    from livefaces.cli._live import add_live_arguments

    ap = argparse.ArgumentParser()
    add_live_arguments(ap)
    return ap.parse_args([source, "--max-frames", "3"])


def test_preview_queue_policy_is_set_before_the_runner_is_built(tmp_path):
    """A file preview must not drop frames: the runner copies the sink's policy when built."""
    import cv2

    from livefaces.cli._live import build
    from livefaces.cli.preview import PreviewSink

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), np.full((48, 64, 3), 90, np.uint8))
    made = []

    def sinks(live):
        made.append(PreviewSink(live))
        return made[-1:]

    p, live = build(_live_args(str(tmp_path)), sinks)
    assert not live and made[0].queue.policy == "wait"
    assert p._runners[0].results.policy == "wait"  # nothing dropped between pipeline and window
    p2, live2 = build(_live_args("synthetic:"), sinks)
    assert live2 and p2._runners[0].results.policy == "drop_oldest"


def test_stats_flow_down_to_sinks_about_every_interval_and_once_at_the_end():
    import dataclasses

    import pytest

    from livefaces.publish import BaseSink
    from livefaces.types import PipelineStats

    class Stats(BaseSink):
        def __init__(self):
            self.got = []

        def on_stats(self, stats):
            self.got.append(stats)

    sink = Stats()
    p = Pipeline([SyntheticSource(64, 48, 25, frames=20)], _Sizes(), sinks=[sink], stats_interval=0.1)
    p.run()  # 0.8 s of frames
    assert len(sink.got) >= 4 and all(isinstance(s, PipelineStats) for s in sink.got)
    last = sink.got[-1]
    assert last.source().frames_processed == 20 and not last.running and last.source().status == "ended"
    with pytest.raises(dataclasses.FrozenInstanceError):
        last.running = True  # type: ignore[misc]


def test_record_hud_comes_from_the_pushed_stats(tmp_path):
    from livefaces.publish.record import RecordSink
    from livefaces.render import HudInfo
    from livefaces.types import PipelineStats, SourceStats

    st = SourceStats("cam", "connected", True, 10, 10, 5, 5, 1, 0, 25.0, 5.0, 25.0, 40.0, 60.0, 0.01,
                     1, None)
    stats = PipelineStats((st,), (), 0.01, 1.0, "x", True, 1.0)
    assert HudInfo.of(stats, "cam") == HudInfo(25.0, 5.0, 1, 40.0, "connected", "cam")
    assert HudInfo.of(stats, "other") is None and HudInfo.of(None, "cam") is None
    files = dataclasses_replace_live(st)
    assert HudInfo.of(PipelineStats((files,), (), 0, 1, "x", True, 1), "cam").latency_ms is None
    sink = RecordSink(tmp_path / "o.mp4", hud=True)
    sink.on_stats(stats)
    assert sink._stats is stats
    sink.close()


def dataclasses_replace_live(st):
    import dataclasses

    return dataclasses.replace(st, live=False)


def test_hub_takes_pushed_stats_and_health():
    from livefaces.serve.config import CameraConfig
    from livefaces.serve.hub import CameraHealth, Hub
    from livefaces.types import PipelineStats, SourceStats

    hub = Hub([CameraConfig(name="front", url="synthetic:")])
    assert hub.health() == {} and "detect_fps" not in hub.status()["front"]  # nothing pushed yet
    st = SourceStats("front", "connected", True, 10, 10, 5, 5, 0, 0, 25.0, 4.5, 25.0, 40.0, 60.0, 0.01,
                     1, None, frames_skipped=3)
    hub.put_stats(PipelineStats((st,), (), 0.01, 1.0, "x", True, 1.0),
                  {"front": CameraHealth("streaming")},
                  health={"problems": ["x"]}, publisher={"connected": True})
    cam = hub.status()["front"]
    assert cam["detect_fps"] == 4.5 and cam["health"] == "streaming" and cam["streaming"] is True
    assert cam["state"] == "connected" and cam["frames_skipped_no_motion"] == 3
    assert cam["detect_behind"] is False and cam["error"] is None
    assert hub.health() == {"problems": ["x"]} and hub.publisher_stats == {"connected": True}


def test_mqtt_counters_are_changed_under_the_lock():
    from livefaces.publish.mqtt import MqttPublisher

    pub = MqttPublisher("127.0.0.1", 1)
    held = []
    real = pub._mid_lock

    class Spy:
        def __enter__(self):
            held.append(True)
            return real.__enter__()

        def __exit__(self, *a):
            return real.__exit__(*a)

    pub._mid_lock = Spy()
    pub._on_connect_fail(None, None)
    assert held and pub.stats()["errors"] == 1


def test_frame_result_face_detected_is_always_one_per_face():
    from livefaces.types import FrameResult

    f = Frame(np.zeros((4, 4, 3), np.uint8), "c", 0, None, 0.0)
    two = _faces((0, 0, 1, 1), (1, 1, 2, 2))
    assert FrameResult(f, two, True).face_detected.tolist() == [True, True]
    assert FrameResult(f, two, False).face_detected.tolist() == [False, False]
    assert FrameResult(f, two, True, face_detected=np.array([True, False])).face_detected.tolist() \
        == [True, False]
    assert not hasattr(FrameResult, "detected_mask")


def test_metrics_come_from_prometheus_client_with_counters_and_build_info():
    import time

    from livefaces import __version__
    from livefaces.serve.config import CameraConfig
    from livefaces.serve.hub import Hub
    from livefaces.serve.metrics import Metrics

    hub = Hub([CameraConfig(name="front", url="synthetic:")])
    img = np.zeros((24, 32, 3), np.uint8)
    from livefaces.types import FrameResult

    for i in range(3):
        hub.put_result("front", FrameResult(Frame(img, "front", i, None, time.monotonic()), Faces.empty(),
                                            i != 1))
    from livefaces.types import PipelineStats, SourceStats

    st = SourceStats("front", "connected", True, 7, 6, 4, 2, 1, 2, 25.0, 5.0, 25.0, 40.0, 60.0, 0.01,
                     0, None)
    hub.put_stats(PipelineStats((st,), (), 0.01, 1.0, "x", True, 1.0))
    m = Metrics(hub)
    text = m.text()
    for line in ('livefaces_frames_captured_total{camera="front"} 7',
                 'livefaces_frames_total{camera="front"} 6',
                 'livefaces_detections_total{camera="front"} 4',
                 'livefaces_frames_dropped_total{camera="front"} 1',
                 'livefaces_reconnects_total{camera="front"} 2',
                 'livefaces_detect_latency_seconds_count{camera="front"} 2',
                 "# TYPE livefaces_detections_total counter"):
        assert line in text.splitlines(), line
    assert f'version="{__version__}"' in text and "livefaces_build_info{" in text
    assert "livefaces_capture_fps" not in text and "livefaces_result_fps" not in text
    # its own registry: nothing in prometheus_client's global one
    from prometheus_client import REGISTRY

    assert not [n for n in REGISTRY._names_to_collectors if n.startswith("livefaces")]
    assert Metrics(hub).text().count("livefaces_build_info{") == 1  # a second one is independent


def test_mqtt_publisher_is_a_sink_itself():
    from livefaces.publish import Sink, SinkRunner
    from livefaces.publish.mqtt import MqttPublisher

    pub = MqttPublisher("127.0.0.1", 1)
    assert isinstance(pub, Sink)
    r = SinkRunner(pub)
    assert r.results.capacity == 1  # results are not sent: one slot
    pub.on_event({"type": "face.appeared", "source": "cam"})
    assert pub.stats()["buffered"] == 1  # queued for the broker, never blocking
