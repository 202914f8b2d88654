"""Detector API: input handling, result shape, providers, conversions."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from livefaces import LANDMARK_NAMES, Detector, Faces
from livefaces.detect import runtime
from livefaces.errors import InputError, LiveFacesError, ProviderError


def test_result_is_parallel_arrays(detector, astronaut):
    faces = detector.detect(astronaut)
    assert isinstance(faces, Faces) and len(faces) == 1
    assert faces.boxes.shape == (1, 4) and faces.boxes.dtype == np.float32
    assert faces.scores.shape == (1,) and 0.99 < faces.scores[0] <= 1.0
    assert faces.landmarks.shape == (1, 5, 2)
    x1, y1, x2, y2 = faces.boxes[0]
    le, re, nose, ml, mr = faces.landmarks[0]
    # the astronaut faces the camera: eyes above the nose above the mouth, all inside the box
    assert x1 < le[0] < re[0] < x2 and max(le[1], re[1]) < nose[1] < min(ml[1], mr[1]) < y2
    assert ml[0] < mr[0]


def test_no_faces_is_empty_not_none(detector):
    faces = detector.detect(np.full((240, 320, 3), 127, np.uint8))
    assert len(faces) == 0
    assert faces.boxes.shape == (0, 4) and faces.landmarks.shape == (0, 5, 2)
    assert faces.to_dicts() == [] and faces.to_mtcnn() == []


def test_tiny_image_below_min_face(detector):
    assert len(detector.detect(np.zeros((10, 10, 3), np.uint8))) == 0


@pytest.mark.parametrize("convert", [
    lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY),
    lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[:, :, None],
    lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2RGBA),
])
def test_gray_and_rgba_are_converted(detector, grace_hopper, convert):
    faces = detector.detect(convert(grace_hopper))
    assert len(faces) == 1
    ref = detector.detect(grace_hopper)
    # RGBA drops alpha (identical); gray loses colour (same face, similar box)
    iou_ok = np.abs(faces.boxes - ref.boxes).max() < 15
    assert iou_ok


def test_bgr_frames_from_opencv_are_flipped_by_the_caller(detector, grace_hopper):
    bgr = cv2.cvtColor(grace_hopper, cv2.COLOR_RGB2BGR)
    a = detector.detect(bgr[..., ::-1])  # the documented way
    b = detector.detect(grace_hopper)
    np.testing.assert_allclose(a.boxes, b.boxes)


@pytest.mark.parametrize("bad,msg", [
    ("not an image", "numpy array"),
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((10, 10, 2), np.uint8), "shape"),
    (np.zeros((2, 10, 10, 3), np.uint8), "shape"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
])
def test_bad_input_raises_clear_error(detector, bad, msg):
    with pytest.raises(InputError, match=msg) as info:
        detector.detect(bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, LiveFacesError)


@pytest.mark.parametrize("kwargs", [{"min_face_size": 5}, {"factor": 1.2}, {"thresholds": (0.6, 0.7)},
                                    {"thresholds": (0.6, 0.7, 1.5)}])
def test_bad_settings_raise(kwargs):
    with pytest.raises(InputError):
        Detector(**kwargs)


def test_cuda_forced_where_missing_is_an_error_not_a_fallback():
    if "CUDAExecutionProvider" in runtime.available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ProviderError, match="onnxruntime-gpu"):
        Detector(providers="cuda")


def test_provider_choice_is_logged_and_cpu_forcible(caplog):
    with caplog.at_level(logging.INFO, logger="livefaces"):
        det = Detector(providers="cpu", threads=1)
    assert det.provider == "CPUExecutionProvider"
    assert any("CPUExecutionProvider" in r.getMessage() for r in caplog.records)


def test_default_preference_is_cuda_then_cpu(monkeypatch):
    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(runtime, "available_providers", lambda: every)
    assert runtime.choose_providers(None) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(runtime, "available_providers", lambda: ["CPUExecutionProvider"])
    assert runtime.choose_providers(None) == ["CPUExecutionProvider"]


def test_mtcnn_format_for_ipazc_users(detector, astronaut):
    faces = detector.detect(astronaut)
    (m,) = faces.to_mtcnn()
    x, y, w, h = m["box"]
    x1, y1, x2, y2 = faces.boxes[0]
    assert (x, y) == (round(x1), round(y1)) and abs(x + w - x2) <= 1 and abs(y + h - y2) <= 1
    assert set(m["keypoints"]) == set(LANDMARK_NAMES)
    assert m["keypoints"]["nose"] == tuple(int(round(v)) for v in faces.landmarks[0, 2])
    assert m["confidence"] == pytest.approx(float(faces.scores[0]))


def test_json_dict_shape(detector, astronaut):
    (d,) = detector.detect(astronaut).to_dicts()
    assert set(d) == {"box", "confidence", "landmarks"}
    assert list(d["landmarks"]) == list(LANDMARK_NAMES)
    assert len(d["box"]) == 4


def test_running_livefaces_never_imports_torch(tmp_path):
    """torch is a dev/export tool only: detection and the CLI work without it."""
    import subprocess
    import sys

    from conftest import ROOT

    code = (
        "import sys, numpy as np\n"
        "sys.modules['torch'] = None  # any 'import torch' now fails\n"
        "from livefaces import Detector\n"
        "from livefaces.cli import main\n"
        "faces = Detector().detect(np.zeros((120, 160, 3), np.uint8))\n"
        "assert len(faces) == 0\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
