"""Media faults: recordings cut by a crash, snapshot quality, the Python API's input handling."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import av
import numpy as np
import pytest
from live_helpers import popen_cli

from livefaces.avio import AVWriter, count_frames, probe_frames

FPS = 25


def _decode(path: Path) -> tuple[int, float | None]:
    """(frames decoded, time of the last one in seconds) of a video file, with PyAV."""
    n, last = 0, None
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            n += 1
            last = f.time
    return n, last


def _wait_for(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.02)
    return False


# -- 1. recordings survive a crash -----------------------------------------------------------

@pytest.mark.parametrize("how", ["SIGKILL", "second Ctrl-C"])
def test_recording_cut_by_a_crash_keeps_all_but_the_last_second(tmp_path, how):
    rec, part = tmp_path / "rec.mp4", tmp_path / "rec.part.mp4"
    p = popen_cli("watch", f"synthetic:640x360@{FPS}", "-q", "--events", str(tmp_path / "ev.jsonl"),
                  "--record", str(rec))
    try:
        # the part file is created when the first frame is written: the recording's origin
        assert _wait_for(part, 90), p.stderr.read() if p.poll() is not None else "no recording"
        t0 = time.monotonic()
        time.sleep(4.0)
        elapsed = time.monotonic() - t0
        if how == "SIGKILL":
            p.kill()
        else:  # the CLI's second Ctrl-C is os._exit: no finalisation either
            p.send_signal(signal.SIGINT)
            p.send_signal(signal.SIGINT)
        p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    if how == "SIGKILL" or not rec.exists():
        assert not rec.exists() and part.exists()
        frames, last = _decode(part)  # raised InvalidDataError before: no moov atom at all
    else:  # the polite stop won the race and finalised the file: it must be complete
        frames, last = _decode(rec)
    assert last is not None and last >= elapsed - 1.5, (frames, last, elapsed)
    assert frames >= (elapsed - 1.5) * FPS, (frames, last, elapsed)


def test_clean_close_gives_a_complete_seekable_mp4_at_the_final_path(tmp_path):
    out = tmp_path / "clip.mp4"
    w = AVWriter(out, fps=FPS)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (120, 160, 3), np.uint8)
    for i in range(100):  # 4 s
        w.write(np.roll(base, i, axis=1), i / FPS)
    assert Path(w.part_path).exists() and not out.exists()
    w.close()
    assert out.exists() and not Path(w.part_path).exists()
    assert probe_frames(out) == 100 and count_frames(out) == 100  # header knows the length
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert c.duration is not None and abs(c.duration / 1e6 - 4.0) < 0.1
        c.seek(int(2.5 / s.time_base), stream=s)  # seek to 2.5 s lands on the keyframe at 2 s
        first = next(c.decode(s))
        assert first.key_frame and 1.9 <= float(first.time) <= 2.5
        keys = [f.time for f in c.decode(s) if f.key_frame]
    assert keys and all(b - a <= 1.0 + 1e-6 for a, b in zip([first.time, *keys], keys))


def test_keyframes_follow_recording_time_not_frame_count(tmp_path):
    """A live recording at 5 fps (slow detection) still gets a fragment every second."""
    out = tmp_path / "slow.mp4"
    w = AVWriter(out, fps=FPS)  # nominal 25 fps, frames arrive at 5 fps
    img = np.zeros((64, 64, 3), np.uint8)
    for i in range(25):
        img[:] = i * 9
        w.write(img, 100.0 + i * 0.2)
    w.close()
    with av.open(str(out)) as c:
        times = [float(f.time) for f in c.decode(video=0)]
        c.seek(0)
        keys = [float(f.time) - times[0] for f in c.decode(video=0) if f.key_frame]
    # (fragmented MP4 has no edit list: times start at the encoder's B-frame delay, 2 frames)
    assert len(times) == 25 and keys == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])


# -- 3. the Python API's input: PIL images, BGR frames, the right hint for each dtype ----------

def test_pil_images_are_accepted_in_any_mode(detector, grace_hopper):
    from PIL import Image

    ref = detector.detect(grace_hopper)
    pil = Image.fromarray(grace_hopper)
    np.testing.assert_array_equal(detector.detect(pil).boxes, ref.boxes)
    np.testing.assert_array_equal(detector.detect(pil.convert("RGBA")).boxes, ref.boxes)
    assert len(detector.detect(pil.convert("L"))) == 1  # gray and palette: converted to RGB
    assert len(detector.detect(pil.convert("P"))) == 1
    both = detector.detect_batch([pil, grace_hopper])
    np.testing.assert_array_equal(both[0].boxes, both[1].boxes)


def test_pil_16_bit_image_gets_the_uint16_hint(detector):
    from PIL import Image

    from livefaces.errors import InputError

    img = Image.fromarray(np.zeros((32, 32), np.uint16))
    with pytest.raises(InputError, match=r">> 8"):
        detector.detect(img)
    with pytest.raises(InputError, match="always RGB"):
        detector.detect(Image.new("RGB", (32, 32)), color="bgr")


def test_bgr_frames_have_an_explicit_switch_on_both_engines(detector, shared):
    """multiface.jpg read by OpenCV: as RGB it gave 7 faces (one a 0.80 false positive)
    instead of the 6 that RGB input gives; color="bgr" gives the RGB answer exactly."""
    import cv2

    bgr = cv2.imread(str(shared / "media/timesler__facenet-pytorch/data/multiface.jpg"))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    ref = detector.detect(rgb)
    assert len(ref) == 6
    assert len(detector.detect(bgr)) != len(ref)  # the silent mistake the switch is for
    for got in (detector.detect(bgr, color="bgr"), detector.detect_batch([bgr], color="bgr")[0]):
        np.testing.assert_array_equal(got.boxes, ref.boxes)
        np.testing.assert_array_equal(got.landmarks, ref.landmarks)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    np.testing.assert_array_equal(detector.detect(bgra, color="bgr").boxes, ref.boxes)
    from livefaces.errors import InputError

    with pytest.raises(InputError, match="'rgb' or 'bgr'"):
        detector.detect(rgb, color="BGR ")


def test_torch_engine_takes_the_same_color_switch(grace_hopper):
    pytest.importorskip("torch")
    import inspect

    from livefaces.detect.mtcnn import Detector
    from livefaces.detect.torch_engine import TorchDetector

    for name in ("detect", "detect_batch"):  # one spelling for both engines
        a = inspect.signature(getattr(Detector, name)).parameters["color"]
        b = inspect.signature(getattr(TorchDetector, name)).parameters["color"]
        assert a.kind == b.kind == inspect.Parameter.KEYWORD_ONLY and a.default == b.default == "rgb"
    det = TorchDetector(device="cpu", threads=1)
    ref = det.detect(grace_hopper)
    np.testing.assert_array_equal(det.detect(np.ascontiguousarray(grace_hopper[..., ::-1]),
                                             color="bgr").boxes, ref.boxes)
    from PIL import Image

    np.testing.assert_array_equal(det.detect_batch([Image.fromarray(grace_hopper)])[0].boxes,
                                  ref.boxes)


@pytest.mark.parametrize("make,needles", [
    (lambda im: im.astype(np.float32) / 255,
     ["looks like 0-1", "(img * 255).round().clip(0, 255).astype(np.uint8)"]),
    (lambda im: im.astype(np.float64), ["looks like 0-255", "img.round().clip(0, 255).astype(np.uint8)"]),
    (lambda im: im.astype(np.float32) * 4, ["neither 0-1 nor 0-255"]),
    (lambda im: im.astype(np.uint16) * 257, ["uint16", "(img >> 8).astype(np.uint8)", "/ 257"]),
    (lambda im: im.astype(np.int64), ["int64", "img.astype(np.uint8)"]),
])
def test_non_uint8_input_gets_the_exact_conversion(detector, astronaut, make, needles):
    from livefaces.errors import InputError

    bad = make(astronaut)
    with pytest.raises(InputError) as info:
        detector.detect(bad)
    msg = str(info.value)
    assert "[0, 1]" not in msg or "0-1" in msg
    for n in needles:
        assert n in msg, msg
    # and the conversion the message names gives back the original faces
    if "looks like" in msg or "uint16" in msg or "int64" in msg:
        code = next(n for n in needles if "astype" in n)
        fixed = eval(code, {"np": np, "img": bad})  # noqa: S307 - the hint's own code
        np.testing.assert_array_equal(detector.detect(fixed).boxes, detector.detect(astronaut).boxes)


# -- 2. snapshots: the best view of a track's first second, not its first detection -----------

def _scene(face: np.ndarray, height: int, w: int = 480, h: int = 360) -> np.ndarray:
    import cv2

    img = np.full((h, w, 3), (70, 90, 110), np.uint8)
    fw = int(round(face.shape[1] * height / face.shape[0]))
    small = cv2.resize(face, (fw, height), interpolation=cv2.INTER_AREA)
    y, x = (h - height) // 2, (w - fw) // 2
    img[y:y + height, x:x + fw] = small
    return img


def test_snapshot_is_the_best_view_of_the_first_second(tmp_path, grace_hopper):
    """A face that comes closer: small at first detection (the old snapshot: a ~20 px crop),
    largest at 0.96 s, then smaller again. The one snapshot is the largest view."""
    clip, snaps = tmp_path / "closer.mp4", tmp_path / "snaps"
    heights = [int(60 + 10 * i) for i in range(25)] + [int(300 - 8 * i) for i in range(25)]
    w = AVWriter(clip, fps=FPS)
    for i, fh in enumerate(heights):
        w.write(_scene(grace_hopper, fh), i / FPS)
    w.close()
    from conftest import run_cli

    r = run_cli("watch", str(clip), "-q", "--events", str(tmp_path / "ev.jsonl"), "--snapshots",
                str(snaps), "--detect-every", "1", timeout=300)
    assert r.returncode == 0, r.stderr
    (snap,) = sorted(snaps.glob("*.jpg"))
    frame = int(snap.stem.rsplit("frame", 1)[1])
    assert 20 <= frame <= 26, snap.name  # the biggest face, within the first second
    from livefaces.imageio import read_image

    assert read_image(snap).shape[0] > 120  # a ~110 px face + margins; the first view: ~30 px


def _result(tid: int, box, landmarks, score: float, index: int, t: float, detected: bool = True):
    from livefaces.types import Faces, Frame, FrameResult

    img = np.full((400, 600, 3), index % 250, np.uint8)
    faces = Faces(np.array([box], np.float32), np.array([score], np.float32),
                  np.array([landmarks], np.float32))
    return FrameResult(Frame(img, "cam", index, t, 0.0), faces, detected,
                       np.array([tid], np.int64), np.array([detected]))


def _marks(x1: float, y1: float, s: float, turn: float = 0.0) -> list[list[float]]:
    """5 landmarks of a face box at (x1, y1) of side s; ``turn`` moves the nose sideways."""
    return [[x1 + 0.3 * s, y1 + 0.4 * s], [x1 + 0.7 * s, y1 + 0.4 * s],
            [x1 + (0.5 + turn) * s, y1 + 0.55 * s], [x1 + 0.35 * s, y1 + 0.75 * s],
            [x1 + 0.65 * s, y1 + 0.75 * s]]


def test_snapshot_prefers_frontal_and_skips_small_faces(tmp_path):
    from livefaces.publish.snapshots import SnapshotSink, frontality

    assert frontality(np.array(_marks(0, 0, 100))) == pytest.approx(1.0)
    assert frontality(np.array(_marks(0, 0, 100, 0.15))) < 0.6
    assert frontality(np.array(_marks(0, 0, 100, 0.3))) == 0.0  # nose beyond an eye: profile
    sink = SnapshotSink(tmp_path)
    # track 1: too small first (30 px), then turned (big), then frontal (a bit smaller): frontal
    seq = [(30, 0.0, 0.99), (120, 0.18, 0.99), (110, 0.0, 0.98), (115, 0.12, 0.99)]
    for k, (s, turn, score) in enumerate(seq):
        sink.on_result(_result(1, [100, 100, 100 + s, 100 + s], _marks(100, 100, s, turn), score,
                               k, k * 0.2))
    assert sink.written == []  # still inside the first second
    sink.on_result(_result(1, [100, 100, 220, 220], _marks(100, 100, 120), 1.0, 9, 1.2))
    assert [p.name for p in sink.written] == ["cam_track000001_frame00000002.jpg"]
    # frames after the first second never replace it, and nothing more is written
    sink.on_result(_result(1, [100, 100, 300, 300], _marks(100, 100, 200), 1.0, 10, 1.4))
    sink.close()
    assert len(sink.written) == 1 and len(list(tmp_path.glob("*.jpg"))) == 1


def test_snapshot_tracks_never_big_enough_write_none_short_ones_their_best(tmp_path):
    from livefaces.publish.snapshots import SnapshotSink
    from livefaces.types import Faces, Frame, FrameResult

    sink = SnapshotSink(tmp_path, min_size=40)
    for k in range(30):  # track 1: 30 px for 1.2 s -> nothing
        sink.on_result(_result(1, [10, 10, 40, 40], _marks(10, 10, 30), 0.99, k, k * 0.04))
    assert sink.written == []
    # track 2: 0.2 s at 60 px, then gone (a frame without it): its best view so far is written
    for k in range(30, 35):
        sink.on_result(_result(2, [50, 50, 110, 110], _marks(50, 50, 60), 0.99, k, k * 0.04))
    assert sink.written == []
    empty = FrameResult(Frame(np.zeros((400, 600, 3), np.uint8), "cam", 35, 1.4, 0.0), Faces.empty(),
                        True)
    sink.on_result(empty)
    assert [p.name for p in sink.written] == ["cam_track000002_frame00000030.jpg"]
    # track 3: ends with face.lost (or the stream's end): written by the event / by close()
    sink.on_result(_result(3, [50, 50, 110, 110], _marks(50, 50, 60), 0.99, 40, 1.6))
    sink.on_event({"type": "face.lost", "source": "cam", "track_id": 3})
    sink.on_result(_result(4, [50, 50, 110, 110], _marks(50, 50, 60), 0.99, 41, 1.64))
    sink.close()
    assert [p.name for p in sink.written][1:] == ["cam_track000003_frame00000040.jpg",
                                                 "cam_track000004_frame00000041.jpg"]


# -- 4. docs/python.md: every example runs as written ------------------------------------------

def test_python_guide_examples_run(tmp_path, monkeypatch, grace_hopper):
    import re

    from conftest import ROOT

    from livefaces.imageio import write_image

    text = (ROOT / "docs" / "python.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 6
    write_image(tmp_path / "photo.jpg", grace_hopper)
    monkeypatch.chdir(tmp_path)
    # the identify example reads ./people: enrol the photo as the guide says (the identify extra)
    from conftest import run_cli

    r = run_cli("people", "add", "grace", str(tmp_path / "photo.jpg"), "--people", str(tmp_path / "people"))
    assert r.returncode == 0, r.stderr
    ns: dict = {}
    for code in blocks:
        exec(compile(code, "docs/python.md", "exec"), ns)  # noqa: S102 - our own docs
    assert len(ns["faces"]) == 1 and ns["aligned"].shape == (112, 112, 3)
    assert ns["crop"].shape == (160, 160, 3) and (tmp_path / "annotated.jpg").exists()
    assert ns["m"].name == "grace" and ns["m"].distance < 0.1  # the enrolled photo itself
    np.testing.assert_allclose(ns["eyes_in_crop"], [[38.3, 51.7], [73.5, 51.5]], atol=4)


def test_public_helpers_document_shapes_and_coordinates():
    from livefaces.align import align_face, crop_box
    from livefaces.render import annotate

    for fn in (align_face, crop_box, annotate):
        doc = fn.__doc__ or ""
        assert "uint8" in doc and "Returns" in doc and "top-left" in doc, fn.__name__
