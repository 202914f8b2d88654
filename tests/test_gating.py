"""Motion gating and refinement of tracked faces (issue 11), on real RTSP streams.

Streams come from tests/rtsp_server.py (GStreamer, H.264): an empty still scene, a face that
moves, and a face that leaves the scene. ``watch --stats`` and ``--events`` say what each
frame went through.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from live_helpers import RtspServer, popen_cli, read_events, write_face_frames
from test_live_rtsp import _has_gst_rtsp

from livefaces.motion import MotionDetector, MotionOptions
from livefaces.schedule import Action, FrameState, GateOptions, plan

STATS_KEYS = {"frames", "captured", "dropped", "detected", "refined", "tracked",
              "skipped_no_motion", "latency_ms", "cpu_seconds"}


# ----------------------------------------------------------------------------- units

def _plan(o, due=True, **state):
    asked = []

    def ask():
        asked.append(1)
        return due

    return plan(o, FrameState(live=True, **state), ask).value, bool(asked)


def test_plan_runs_the_cascade_only_when_it_is_needed():
    o = GateOptions(idle_interval=5.0, full_interval=0.3)
    # no face, no motion: nothing to do until the idle interval is up
    assert _plan(o, since_full=0.5, motion=False) == ("skip", False)
    assert _plan(o, since_full=5.0, motion=False)[0] == "detect"
    assert _plan(o, since_full=None, motion=False)[0] == "detect"
    # no face, motion: look for faces as often as the policy allows
    assert _plan(o, since_full=0.05, motion=True) == ("detect", True)
    assert _plan(o, due=False, since_full=0.05, motion=True) == ("track", True)
    # faces, motion only where they are: refine them
    assert _plan(o, since_full=2.0, tracks=True, motion=True, motion_outside=False) == ("refine", False)
    # faces and motion elsewhere: a full detection once per full_interval
    assert _plan(o, since_full=0.1, tracks=True, motion=True, motion_outside=True)[0] == "refine"
    assert _plan(o, since_full=0.3, tracks=True, motion=True, motion_outside=True)[0] == "detect"
    # a face not found where expected, or a scene cut: a full detection at once
    assert _plan(o, since_full=0.05, tracks=True, motion=False, motion_outside=False,
                 searching=True)[0] == "detect"
    assert _plan(o, since_full=0.05, motion=False, cut=True)[0] == "detect"
    # ... if the policy allows it now; else the faces are refined
    assert _plan(o, due=False, since_full=0.05, tracks=True, searching=True) == ("refine", True)
    # only the newest waiting frame may get a full detection; a backlog frame is carried
    assert _plan(o, since_full=9.0, tracks=True, newest=False) == ("refine", False)
    assert _plan(o, since_full=9.0, tracks=True, backlog=True) == ("track", False)
    # switched off: no skipping, no refinement
    off = GateOptions(motion=False, refine=False)
    assert _plan(off, since_full=0.1, motion=False)[0] == "detect"
    assert _plan(off, since_full=0.1, tracks=True, motion=False, motion_outside=False)[0] == "detect"
    assert _plan(off, due=False, since_full=0.1, tracks=True)[0] == "track"
    # files and folders: the policy alone (no gate)
    assert plan(o, FrameState(live=False, tracks=True), lambda: False) is Action.REFINE
    assert plan(o, FrameState(live=False, stills=True), lambda: False) is Action.DETECT
    with pytest.raises(ValueError, match="idle_interval"):
        GateOptions(idle_interval=float("nan"))


def test_motion_sees_slow_drift_against_the_background_and_scene_cuts(astronaut, grace_hopper):
    """A face drifting 1 px a frame changes too little between two frames to count, but
    drifts away from the background model within a few frames; a cut to another picture
    is a cut, a pan of the same picture is not."""
    img = cv2.resize(astronaut, (640, 360))
    m = MotionDetector()
    prev = MotionDetector(MotionOptions(background_alpha=1.0))  # background = the previous frame
    assert m.measure(img).cut and prev.measure(img).cut  # the first frame: everything is new
    for k in range(1, 16):
        shifted = np.roll(img, k, axis=1)
        r, p = m.measure(shifted), prev.measure(shifted)
        assert not r.cut and not p.cut
    # frame to frame, the drift moves a few cells (edges); against the background, a lot
    assert r.fraction > 0.3 and r.fraction > 5 * p.fraction, (r.fraction, p.fraction)
    assert not m.measure(np.roll(img, 60, axis=1)).cut  # a pan: many cells, same histogram
    assert m.measure(cv2.resize(grace_hopper, (640, 360))).cut


def test_motion_sees_a_moving_face_and_ignores_compression_noise(astronaut):
    img = cv2.resize(astronaut, (1280, 720))
    m = MotionDetector()
    assert m.measure(img).moving  # the first frame counts as motion
    rng = np.random.default_rng(0)
    noisy = np.clip(img.astype(np.int16) + rng.integers(-4, 5, img.shape), 0, 255).astype(np.uint8)
    still = m.measure(noisy)
    assert not still.moving and still.fraction < 0.001 and len(still.boxes) == 0
    moved = np.roll(noisy, 40, axis=1)
    mv = m.measure(moved)
    assert mv.moving and len(mv.boxes) >= 1
    # the motion is the whole picture shifting: it is outside a small box in a corner...
    assert mv.outside(np.array([[0, 0, 50, 50]], np.float32))
    # ...and not outside a box covering the frame
    assert not mv.outside(np.array([[0, 0, 1280, 720]], np.float32), margin=0.0)


class _NoRefine:
    """An engine without its own ``refine`` (as the torch engine): the generic path is used."""

    def __init__(self, det) -> None:  # noqa: ANN001
        self.det, self.min_face_size = det, det.min_face_size

    def detect_batch(self, images):  # noqa: ANN001, ANN201
        return self.det.detect_batch(images)


@pytest.mark.parametrize("generic", [False, True], ids=["onnx-refine", "generic-refine"])
def test_refine_finds_a_moved_face_and_rejects_an_empty_box(detector, astronaut, generic):
    from livefaces.detect.rescale import refine
    from livefaces.geometry import iou_matrix

    engine = _NoRefine(detector) if generic else detector
    full = detector.detect(astronaut)
    box = full.boxes[0]
    size = float(box[2] - box[0])
    for dx, dy in ((0, 0), (0.12, 0.0), (-0.1, 0.08)):  # where the tracker expected it
        shifted = box + np.array([dx, dy, dx, dy], np.float32) * size
        found = refine(engine, [(astronaut, shifted)])[0]
        assert len(found) == 1
        assert iou_matrix(found.boxes, full.boxes)[0, 0] > 0.85
        err = np.linalg.norm(found.landmarks[0] - full.landmarks[0], axis=1).mean() / size
        assert err < 0.05
    # a box on the background (the astronaut's suit), and one off the frame: no face
    nothing = refine(engine, [(astronaut, np.array([300, 380, 380, 460], np.float32)),
                              (astronaut, np.array([900, 900, 990, 990], np.float32))])
    assert [len(f) for f in nothing] == [0, 0]


def test_the_refinement_search_finds_the_face_a_full_detection_finds(detector, astronaut):
    """Tier 2 of refinement runs the frame's own cascade in a window: its P-Net cells are the
    full detection's (a resized window equals the same columns of the resized frame), so the
    face it finds is the full detection's, even from a prediction that is off in place and
    size (where tier 1's fixed squares give up)."""
    from livefaces.detect import boxes as bx
    from livefaces.geometry import iou_matrix

    table = bx.integral(astronaut)
    whole = np.empty((256, 256, 3), np.float32)
    bx.area_resize(table, 256, whole)
    part = np.empty((40, 70, 3), np.float32)
    bx.area_resize(table, 256, part, (100, 140), (90, 160, 256))
    assert np.array_equal(part, whole[100:140, 90:160])
    full = detector.detect(astronaut)
    box = full.boxes[0]
    w = float(box[2] - box[0])
    for dx, grow in ((0.0, 1.0), (0.35, 1.0), (0.0, 1.3), (-0.3, 0.75)):
        c = (box[:2] + box[2:]) / 2 + np.array([dx * w, 0.0], np.float32)
        half = (box[2:] - box[:2]) / 2 * grow
        pred = np.concatenate([c - half, c + half]).astype(np.float32)
        found = detector._refine_search([(astronaut, pred)])[0]
        assert len(found) >= 1, (dx, grow)
        assert iou_matrix(found.boxes[:1], full.boxes[:1])[0, 0] > 0.99, (dx, grow, found.boxes)
        assert np.allclose(found.landmarks[0], full.landmarks[0], atol=0.5)


# ----------------------------------------------------------------------------- real streams

rtsp = pytest.mark.skipif(not _has_gst_rtsp(), reason=(
    "gst-rtsp-server missing: run scripts/install_system_deps.sh (scripts/test.sh does)"))


def _still_frames(folder: Path, image: np.ndarray, n: int = 50, size=(640, 360)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    for i in range(n):
        cv2.imwrite(str(folder / f"frame{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def _leaving_frames(folder: Path, face: np.ndarray, n_face: int = 75, n_empty: int = 75,
                    size=(640, 360)) -> Path:
    """A face moving slowly for ``n_face`` frames, then the same backdrop without it."""
    write_face_frames(folder, [face], n=n_face, size=size)
    w, h = size
    empty = np.full((h, w, 3), 80, np.uint8)
    for i in range(n_face, n_face + n_empty):
        cv2.imwrite(str(folder / f"frame{i:05d}.jpg"), empty)
    return folder


def _watch(url: str, tmp_path: Path, seconds: float, *extra: str) -> tuple[dict, list[dict]]:
    stats, ev = tmp_path / "stats.json", tmp_path / "ev.jsonl"
    p = popen_cli("watch", url, "--events", str(ev), "--duration", str(seconds),
                  "--stats", str(stats), *extra)
    out, err = p.communicate(timeout=seconds + 60)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    data = json.loads(stats.read_text())
    assert STATS_KEYS <= set(data), data
    return data, read_events(ev)


@rtsp
def test_an_empty_still_scene_runs_the_cascade_rarely(tmp_path):
    from skimage import data

    srv = RtspServer(_still_frames(tmp_path / "still", data.coffee())).start()
    try:
        st, _ = _watch(srv.url, tmp_path, 12, "--idle-interval", "5")
    finally:
        srv.kill()
    assert st["frames"] >= 100, st
    # the first frame, then one every 5 s (a reconnect would add one): 2-4 over 12 s
    assert 1 <= st["detected"] <= 4, st
    assert st["skipped_no_motion"] >= 0.9 * st["frames"], st
    assert st["frames"] == st["detected"] + st["refined"] + st["tracked"] + st["skipped_no_motion"]


@rtsp
def test_same_scene_without_gating_detects_as_the_schedule_says(tmp_path):
    from skimage import data

    srv = RtspServer(_still_frames(tmp_path / "still", data.coffee())).start()
    try:
        st, _ = _watch(srv.url, tmp_path, 6, "--no-motion-gating", "--detect-fps", "5")
    finally:
        srv.kill()
    assert st["skipped_no_motion"] == 0, st
    assert st["detected"] >= 0.15 * st["frames"], st  # 5/s of a 25 fps stream: 0.2


@rtsp
def test_tracked_faces_are_refined_between_detections(tmp_path, astronaut, grace_hopper):
    frames = write_face_frames(tmp_path / "faces", [grace_hopper, astronaut], n=100)
    srv = RtspServer(frames).start()
    try:
        st, events = _watch(srv.url, tmp_path, 10, "--min-face", "40")
    finally:
        srv.kill()
    assert st["dropped"] == 0, st
    verified = st["detected"] + st["refined"]
    assert st["refined"] > 2 * st["detected"], st  # most frames are refined, not re-detected
    assert verified >= 0.9 * st["frames"], st
    lat = st["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["max"] + 1, lat
    assert st["cpu_seconds"] > 0
    faces = [e for e in events if e["type"] in ("face.appeared", "face.updated")]
    assert {e["obtained"] for e in faces} >= {"refined"}, {e["obtained"] for e in faces}
    # two people, two tracks: refinement keeps their ids
    assert len({e["track_id"] for e in events if e["type"] == "face.appeared"}) == 2


@rtsp
def test_a_face_that_leaves_ends_its_track_within_a_second(tmp_path, astronaut):
    srv = RtspServer(_leaving_frames(tmp_path / "leave", astronaut)).start()
    try:
        st, events = _watch(srv.url, tmp_path, 14, "--min-face", "40")
    finally:
        srv.kill()
    lost = [e for e in events if e["type"] == "face.lost"]
    gone = [e for e in lost if e["reason"] == "not_found"]
    assert gone, [e["reason"] for e in lost]
    for e in gone:
        last_seen = datetime.fromisoformat(e["captured"].replace("Z", "+00:00"))
        ended = datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
        # the face is on its last frame at `captured`; the track ends with the frames after it
        assert (ended - last_seen).total_seconds() < 1.0, e
