"""One camera, one engine: the same detector flags in every command, the torch engine finds the
same faces as ONNX Runtime through each of them; RingBuffer.put(stop=); geometry on the ground
floor; extract's index rows use the one face JSON."""

from __future__ import annotations

import argparse
import ast
import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli

from livefaces.detect.options import FACTOR, MIN_FACE_SIZE, THRESHOLDS, DetectorOptions
from livefaces.errors import InputError
from livefaces.geometry import iou_matrix
from livefaces.ringbuffer import Closed, RingBuffer
from livefaces.types import LANDMARK_NAMES, face_json

COMMANDS = ["detect", "demo", "extract", "watch", "preview"]
FLAGS = ["--engine", "--device", "--min-face", "--factor", "--thresholds", "--threads"]
ENGINES = {"onnx": ["--engine", "onnx", "--device", "cpu"],
           "torch": ["--engine", "torch", "--device", "cpu"]}


@pytest.fixture(scope="module")
def photos(tmp_path_factory, grace_hopper, astronaut) -> Path:
    from livefaces.imageio import write_image

    d = tmp_path_factory.mktemp("photos")
    write_image(d / "0_grace.png", grace_hopper)
    write_image(d / "1_astronaut.png", astronaut)
    return d


def assert_same_faces(a: dict, b: dict) -> None:
    """``{key: boxes (N, 4)}`` of two engines: same keys, same counts, each box matched with
    IoU > 0.99 and corners within 1.5 px."""
    assert a.keys() == b.keys()
    total = 0
    for k in a:
        ba, bb = np.asarray(a[k], np.float32).reshape(-1, 4), np.asarray(b[k], np.float32).reshape(-1, 4)
        assert len(ba) == len(bb), (k, ba, bb)
        if not len(ba):
            continue
        iou = iou_matrix(ba, bb)
        j = iou.argmax(axis=1)
        assert sorted(j.tolist()) == list(range(len(bb))), (k, iou)
        assert iou.max(axis=1).min() > 0.99, (k, iou)
        assert np.abs(ba - bb[j]).max() < 1.5, (k, ba, bb[j])
        total += len(ba)
    assert total >= 2  # the photos hold faces: the comparison compared something


# -- 1. the same faces through every command ----------------------------------------------------
def test_detect_torch_matches_onnx(photos):
    found = {}
    for name, flags in ENGINES.items():
        r = run_cli("detect", str(photos), "--json", *flags)
        assert r.returncode == 0, r.stderr
        recs = [json.loads(line) for line in r.stdout.splitlines()]
        found[name] = {Path(x["source"]).name: [f["box"] for f in x["faces"]] for x in recs}
    assert_same_faces(found["onnx"], found["torch"])


def test_watch_torch_matches_onnx(photos):
    found = {}
    for name, flags in ENGINES.items():
        r = run_cli("watch", str(photos), "--detect-every", "1", "--events", "-", *flags)
        assert r.returncode == 0, r.stderr
        boxes: dict[int, list] = {0: [], 1: []}
        for line in r.stdout.splitlines():
            e = json.loads(line)
            if e["type"] == "face.appeared":
                boxes[e["frame_index"]].append(e["box"])
        found[name] = boxes
    assert_same_faces(found["onnx"], found["torch"])


def test_extract_torch_matches_onnx(photos, tmp_path):
    found = {}
    for name, flags in ENGINES.items():
        out = tmp_path / name
        r = run_cli("extract", str(photos), "--out", str(out), "--progress", "off", *flags)
        assert r.returncode == 0, r.stderr
        assert ("torch:cpu" if name == "torch" else "CPUExecutionProvider") in r.stderr
        rows = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
        boxes: dict[str, list] = {}
        for row in rows:
            boxes.setdefault(Path(row["source"]).name, []).append(row["box"])
        found[name] = boxes
    assert_same_faces(found["onnx"], found["torch"])


def test_demo_torch_matches_onnx(tmp_path):
    found = {}
    for name, flags in ENGINES.items():
        r = run_cli("demo", "--out", str(tmp_path / f"{name}.jpg"), *flags)
        assert r.returncode == 0, r.stderr
        assert ("on torch:cpu" if name == "torch" else "on CPUExecutionProvider") in r.stdout
        boxes = [[float(v) for v in m.split(",")] for m in re.findall(r"box \[([^\]]+)\]", r.stdout)]
        assert (tmp_path / f"{name}.jpg").stat().st_size > 0
        found[name] = {"grace": boxes}
    # the demo prints whole pixels: allow the rounding on top of the 1 px
    a, b = (np.asarray(found[n]["grace"], np.float32) for n in ("onnx", "torch"))
    assert len(a) == len(b) == 1
    assert np.abs(a - b).max() <= 2 and iou_matrix(a, b)[0, 0] > 0.98


# -- the flags ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_the_detector_flags(command):
    r = run_cli(command, "--help")
    assert r.returncode == 0, r.stderr
    for flag in FLAGS:
        assert flag in r.stdout, flag
    assert "--providers" not in r.stdout  # the deprecated alias is hidden
    assert f"default: {FACTOR:g}" in r.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_bogus_engine_is_a_usage_error(command, tmp_path):
    args = {"detect": ["x.jpg"], "extract": ["x.mp4", "--out", str(tmp_path / "o")]}.get(command, [])
    r = run_cli(command, *args, "--engine", "bogus")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "--engine" in errors[0] and "'bogus'" in errors[0]
    assert not (tmp_path / "o").exists()


def test_bad_device_is_a_usage_error():
    r = run_cli("detect", "x.jpg", "--device", "gpu")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert [line for line in r.stderr.splitlines() if "error" in line] == [
        "livefaces detect: error: argument --device: invalid device 'gpu' "
        "(choose from auto, cpu, cuda, cuda:N)"]


def _parse(*argv: str) -> argparse.Namespace:
    from livefaces.cli._common import add_detector_arguments

    p = argparse.ArgumentParser()
    add_detector_arguments(p)
    return p.parse_args(argv)


def test_flag_defaults_are_the_options_defaults():
    from livefaces.cli._common import detector_options

    assert detector_options(_parse()) == DetectorOptions()
    assert (MIN_FACE_SIZE, THRESHOLDS, FACTOR) == (20.0, (0.6, 0.7, 0.7), 0.709)  # facenet-pytorch's
    o = detector_options(_parse("--engine", "torch", "--device", "cuda:1", "--min-face", "40",
                                "--factor", "0.5", "--thresholds", "0.5", "0.6", "0.9",
                                "--threads", "2"))
    assert o == DetectorOptions("torch", "cuda:1", 40.0, (0.5, 0.6, 0.9), 0.5, 2)


def test_providers_is_a_deprecated_alias_of_device(caplog):
    from livefaces.cli._common import detector_options

    caplog.set_level("DEBUG", logger="livefaces.cli")
    o = detector_options(_parse("--providers", "cpu"))
    assert (o.engine, o.device) == ("onnx", "cpu")  # providers were always ONNX Runtime's
    assert "deprecated" in caplog.text
    assert detector_options(_parse("--providers", "cpu", "--engine", "torch")).engine == "torch"
    assert detector_options(_parse("--providers", "cpu", "--device", "cpu")).device == "cpu"
    with pytest.raises(InputError, match="contradicts"):
        detector_options(_parse("--providers", "cpu", "--device", "cuda"))
    r = run_cli("demo", "--out", "/dev/null", "--providers", "cpu")
    assert r.returncode == 0 and "on CPUExecutionProvider" in r.stdout, r.stderr


def test_no_default_literals_outside_options():
    """0.709, 0.6/0.7/0.7 live in detect/options.py only (in the files of this package that
    build detectors; serve's config is checked in its own tests)."""
    files = [*ROOT.glob("livefaces/cli/*.py"), *ROOT.glob("livefaces/detect/*.py"),
             *ROOT.glob("livefaces/extract/*.py"), ROOT / "scripts/fidelity.py",
             ROOT / "scripts/bench_detect.py", ROOT / "scripts/bench_extract.py"]
    for f in files:
        if f.name == "options.py" or f.name == "serve.py":
            continue
        code = "\n".join(line for line in f.read_text().splitlines()
                         if not line.lstrip().startswith("#"))
        tree = ast.parse(code)
        nums = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                and isinstance(n.value, float)]
        assert 0.709 not in nums, f
        assert "(0.6, 0.7, 0.7)" not in code and "[0.6, 0.7, 0.7]" not in code, f


# -- 2. RingBuffer.put(stop=) -------------------------------------------------------------------
def test_wait_put_gives_up_when_stop_is_set():
    ring: RingBuffer[int] = RingBuffer(1, "wait")
    assert ring.put(1)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    assert ring.put(2, stop=stop) is False
    assert 0.15 < time.monotonic() - t0 < 1.0
    assert len(ring) == 1 and ring.dropped == 0
    assert ring.put(2, stop=stop) is False  # already set: no wait at all
    assert ring.get(0) == 1
    assert ring.put(2, stop=stop) is True  # room: stop does not matter


def test_wait_put_waits_for_room_and_for_close():
    ring: RingBuffer[int] = RingBuffer(1, "wait")
    ring.put(1)
    threading.Timer(0.2, ring.get, args=(0,)).start()
    assert ring.put(2, stop=threading.Event()) is True and ring.get(0) == 2
    ring.put(3)
    threading.Timer(0.2, ring.close).start()
    assert ring.put(4) is False  # closed while waiting
    assert ring.get(0) == 3
    with pytest.raises(Closed):
        ring.get(0)
    assert ring.put(5, timeout=0.05) is False
    assert not hasattr(ring, "put_count")


def test_drop_oldest_ignores_stop():
    ring: RingBuffer[int] = RingBuffer(2, "drop_oldest")
    stop = threading.Event()
    stop.set()
    for i in range(5):
        assert ring.put(i, stop=stop)
    assert ring.get_all() == [3, 4] and ring.dropped == 3


# -- 3. geometry ------------------------------------------------------------------------------
def test_tracker_uses_geometry_not_the_fidelity_helper():
    import livefaces.compare
    import livefaces.geometry
    import livefaces.track

    src = (ROOT / "livefaces/track.py").read_text()
    assert "from .geometry import iou_matrix" in src and "compare" not in src
    assert livefaces.track.iou_matrix is livefaces.geometry.iou_matrix
    assert livefaces.compare.iou_matrix is livefaces.geometry.iou_matrix
    geo = ast.parse((ROOT / "livefaces/geometry.py").read_text())
    imported = {a.name for n in ast.walk(geo) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(geo) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "numpy"}
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
    b = np.array([[5, 0, 15, 10]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150], [0]], rtol=1e-6)
    assert iou_matrix(a[:0], b).shape == (0, 1)


# -- 4. one face JSON in extract's index ------------------------------------------------------
def test_extract_index_rows_use_face_json(photos, tmp_path, detector):
    from livefaces.extract import extract

    report = extract([photos], tmp_path / "o", detector=detector)
    rows = [json.loads(line) for line in (tmp_path / "o" / "index.jsonl").read_text().splitlines()]
    assert len(rows) == report.faces >= 2
    for row in rows:
        assert set(row) == {"source", "frame", "pts", "box", "confidence", "landmarks", "crop"}
        assert list(row["landmarks"]) == list(LANDMARK_NAMES)
        face = face_json(row["box"], row["confidence"], list(row["landmarks"].values()))
        assert {k: row[k] for k in face} == face
    # the same face object as 'detect --json'
    r = run_cli("detect", str(photos / "0_grace.png"), "--json", "--engine", "onnx")
    det = json.loads(r.stdout)["faces"][0]
    ext = next(row for row in rows if row["source"].endswith("0_grace.png"))
    assert det.keys() == {"box", "confidence", "landmarks"}
    assert det["landmarks"].keys() == ext["landmarks"].keys()
    np.testing.assert_allclose(det["box"], ext["box"], atol=0.02)


def test_folder_of_an_older_version_still_resumes(photos, tmp_path, detector):
    """Settings written before the detector settings moved into DetectorOptions (ints, the
    same keys) are still the same settings: the run resumes instead of refusing."""
    from livefaces.extract import ExtractOptions, extract

    out = tmp_path / "old"
    out.mkdir()
    (out / "extract.json").write_text(json.dumps({"version": 1, "settings": {
        "stride": 1, "resize": 1.0, "min_face_size": 20, "thresholds": [0.6, 0.7, 0.7],
        "factor": 0.709, "margin": 0, "crop_size": 160, "align": False, "image_format": "jpg"}}))
    report = extract([photos], out, ExtractOptions(), detector=detector)
    assert report.done == 2 and not report.failed
    again = extract([photos], out, ExtractOptions(detector=DetectorOptions(min_face_size=20.0)),
                    detector=detector)
    assert (again.skipped, again.done) == (2, 0)


def test_extract_writer_failure_ends_the_run(photos, tmp_path, detector, monkeypatch):
    """A writer that fails (disk full, say) closes its ring: the detect loop stops at once
    instead of waiting on a ring nobody drains, and the error reaches the caller."""
    from livefaces.errors import LiveFacesError
    from livefaces.extract import ExtractOptions, extract, output

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output, "write_image", full)
    t0 = time.monotonic()
    with pytest.raises(LiveFacesError, match="No space left"):
        extract([photos], tmp_path / "o", ExtractOptions(batch_size=1), detector=detector)
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "o" / "done.jsonl").read_text()
