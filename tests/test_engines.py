"""The torch engine gives the ONNX engine's detections (CPU torch here; same code on CUDA)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from livefaces.compare import iou_matrix

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def torch_detector():
    from livefaces.detect.torch_engine import TorchDetector

    return TorchDetector(device="cpu")


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    if len(a) == 0:
        return
    iou = iou_matrix(a.boxes, b.boxes)
    assert (iou.max(axis=1) >= 0.99).all(), iou
    best = iou.argmax(axis=1)
    assert np.abs(a.landmarks - b.landmarks[best]).max() < 0.5
    assert np.abs(a.scores - b.scores[best]).max() < 1e-3


def test_torch_engine_matches_onnx_on_photos(detector, torch_detector, astronaut, grace_hopper):
    for image in (astronaut, grace_hopper):
        faces = detector.detect(image)
        assert len(faces) == 1
        assert_same(faces, torch_detector.detect(image))


def test_torch_engine_batches_mixed_sizes(detector, torch_detector, astronaut, grace_hopper):
    images = [astronaut, grace_hopper, astronaut[::2, ::2].copy(), np.zeros((50, 80, 3), np.uint8)]
    for a, b in zip(detector.detect_batch(images), torch_detector.detect_batch(images), strict=False):
        assert_same(a, b)


def test_torch_engine_matches_onnx_on_shared_media(detector, torch_detector, shared):
    from livefaces.imageio import read_image

    sources = [json.loads(line)["source"]
               for line in (shared / "reference/facenet_pytorch_minface20.jsonl").open()]
    checked = 0
    for rel in sources:
        image = read_image(shared / rel)
        if image.shape[0] * image.shape[1] > 1300 * 800:  # keep the suite fast on 2 cores
            continue
        assert_same(detector.detect(image), torch_detector.detect(image))
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("block_elements", [1 << 24, 3000])  # one block / many blocks
def test_grouped_nms_is_greedy_nms(monkeypatch, block_elements):
    from livefaces.detect import boxes as bx
    from livefaces.detect import torch_engine
    from livefaces.detect.torch_engine import nms_grouped

    monkeypatch.setattr(torch_engine, "NMS_BLOCK_ELEMENTS", block_elements)

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (600, 2)).astype(np.float32)
    wh = rng.uniform(5, 60, (600, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.uniform(0, 1, 600).astype(np.float32)
    groups = rng.integers(0, 4, 600)
    for mode in ("union", "min"):
        got = nms_grouped(torch.from_numpy(boxes), torch.from_numpy(scores),
                          torch.from_numpy(groups), 0.5, mode=mode).numpy()
        want = []
        for g in range(4):
            idx = np.nonzero(groups == g)[0]
            want += list(idx[bx.nms(boxes[idx], scores[idx], 0.5, mode=mode)])
        assert sorted(got.tolist()) == sorted(want)


def test_engine_choice():
    from livefaces.detect.engine import engine_report, make_engine, resolve
    from livefaces.detect.options import DetectorOptions

    assert resolve("auto", "cpu") == ("onnx", "cpu")
    assert resolve("torch", "cpu") == ("torch", "cpu")
    assert make_engine(DetectorOptions("torch", "cpu")).provider == "torch:cpu"
    labels = [label for label, _ in engine_report()]
    assert "engine torch" in labels and "engine onnx" in labels


def test_livefaces_runs_without_torch(tmp_path, astronaut):
    """torch stays optional: with it unimportable, extract and doctor still work."""
    import subprocess
    import sys

    from conftest import ROOT

    from livefaces.imageio import write_image

    write_image(tmp_path / "a.jpg", astronaut)
    code = f"""
import sys
sys.modules["torch"] = None  # any 'import torch' now raises ImportError
from livefaces.cli import main
assert main(["doctor"]) == 0
assert main(["extract", {str(tmp_path / "a.jpg")!r}, "--out", {str(tmp_path / "o")!r}]) == 0
assert main(["extract", {str(tmp_path / "a.jpg")!r}, "--out", {str(tmp_path / "t")!r},
             "--engine", "torch"]) == 3
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "engine torch" in r.stdout and "not available" in r.stdout
    assert "the torch engine needs PyTorch" in r.stderr


def test_auto_engine_does_not_import_torch_without_an_nvidia_gpu():
    """torch installed (as here) but no NVIDIA driver: ``auto`` picks ONNX Runtime without
    importing torch (it cost serve ~180 MB of RSS per process just to learn "no CUDA")."""
    import subprocess
    import sys

    from conftest import ROOT

    from livefaces.detect.engine import _nvidia_gpu_possible

    if _nvidia_gpu_possible():
        pytest.skip("this machine has an NVIDIA driver: auto must ask torch about CUDA")
    code = ("import sys\nfrom livefaces.detect.engine import make_engine\n"
            "e = make_engine()\nprint(e.provider, 'torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["CPUExecutionProvider", "False"], r.stdout
