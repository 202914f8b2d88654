"""The torch engine, fit for a GPU (issue 21), checked where the suite runs: host waits per
call counted with torch.profiler on the CPU, ties and fp32, the CUDA engine against the CPU
engines when CUDA is present, and the GPU script's dry run."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from test_engines import assert_same

torch = pytest.importorskip("torch")

CLIP = "media/timesler__facenet-pytorch/examples/video.mp4"  # 1920x1080, pedestrians


@pytest.fixture(scope="module")
def torch_detector():
    from livefaces.detect.torch_engine import TorchDetector

    return TorchDetector(device="cpu")


@pytest.fixture(scope="module")
def frames_1080p(shared):
    import cv2

    cap = cv2.VideoCapture(str(shared / CLIP))
    frames = []
    while len(frames) < 16:
        ok, bgr = cap.read()
        assert ok, "the 1080p clip ran out"
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    assert frames[0].shape == (1080, 1920, 3)
    return frames


def sync_ops(fn) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Calls of operators that make the host wait for a CUDA device, while ``fn`` runs."""
    from torch.profiler import ProfilerActivity, profile

    from livefaces.detect.torch_engine import SYNC_OPS

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: e.count for e in prof.key_averages() if e.key in SYNC_OPS}


@pytest.mark.parametrize("n", [1, 16])
def test_host_waits_per_call_are_few_and_fixed(torch_detector, detector, frames_1080p, n):
    """A same-size batch costs SYNCS_PER_BATCH (6) host waits: one nonzero for every level of
    every frame, five small host reads, nothing else (no .item(), torch.equal, boolean-mask
    index, unique, repeat_interleave). Before: 200+ at 1080p, growing with levels and frames."""
    from livefaces.detect.torch_engine import HOST_READ, SYNCS_PER_BATCH

    batch = frames_1080p[:n]
    found: list = []
    ops = sync_ops(lambda: found.extend(torch_detector.detect_batch(batch)))
    assert sum(ops.values()) == SYNCS_PER_BATCH <= 8, ops
    assert ops == {"aten::nonzero": 1, HOST_READ: 5}, ops
    assert torch_detector.exact_reruns == 0
    assert sum(len(f) for f in found) >= n  # pedestrians' faces, in every frame
    for a, b in zip(detector.detect_batch(batch), found, strict=True):
        assert_same(a, b)


def test_host_waits_do_not_grow_with_sizes(torch_detector, astronaut, grace_hopper):
    """Frames of k distinct sizes are k device batches: k * SYNCS_PER_BATCH waits at most."""
    from livefaces.detect.torch_engine import SYNCS_PER_BATCH

    images = [astronaut, grace_hopper, astronaut, grace_hopper[:300]]
    ops = sync_ops(lambda: torch_detector.detect_batch(images))
    assert sum(ops.values()) <= 3 * SYNCS_PER_BATCH, ops


def test_exact_nms_rerun_gives_the_same_faces(monkeypatch, torch_detector, grace_hopper, astronaut):
    """With one fixed-point round per NMS block, blocks do not converge: the engine notices
    (the deferred flag) and reruns the batch with exact NMS: the same faces."""
    from livefaces.detect import torch_engine

    want = torch_detector.detect_batch([astronaut, grace_hopper])
    before = torch_detector.exact_reruns
    monkeypatch.setattr(torch_engine, "NMS_ROUNDS", 1)
    got = torch_detector.detect_batch([astronaut, grace_hopper])
    assert torch_detector.exact_reruns > before
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)


def test_grouped_nms_breaks_score_ties_by_index():
    """Equal scores (saturated probabilities are common): the lower index wins, as the ONNX
    engine's stable sorts (OpenCV NMSBoxes, numpy) do, on every device. Before: torch's
    unstable sort, whose order for ties differs between CPU and CUDA."""
    from livefaces.detect import boxes as bx
    from livefaces.detect.torch_engine import nms_grouped

    rng = np.random.default_rng(1)
    for _ in range(12):
        k = int(rng.integers(50, 600))
        xy = rng.uniform(0, 150, (k, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (k, 2)).astype(np.float32)], axis=1)
        scores = rng.choice([1.0, 0.99, 0.9], k).astype(np.float32)
        groups = np.sort(rng.integers(0, 5, k))
        for mode in ("union", "min"):
            got = nms_grouped(torch.from_numpy(boxes), torch.from_numpy(scores),
                              torch.from_numpy(groups), 0.5, mode=mode).numpy()
            want = []
            for g in np.unique(groups):
                idx = np.nonzero(groups == g)[0]
                want += list(idx[bx.nms(boxes[idx], scores[idx], 0.5, mode=mode)])
            assert sorted(got.tolist()) == sorted(want)


def test_export_nets_match_the_engines_nets_and_find_the_same_faces(torch_detector, astronaut,
                                                                      grace_hopper):
    """torch_nets.export_net's nets (normalisation folded, merged heads) give the engine's
    nets' outputs to ~1e-6, and the same faces; the engine keeps the originals (faster in
    torch eager, see load_torch_nets)."""
    from livefaces.detect.torch_engine import TorchDetector, load_torch_nets

    nets, export = load_torch_nets(), load_torch_nets(export=True)
    x = torch.from_numpy(astronaut[:200, :300].astype(np.float32))[None]
    crops = {"pnet": x, "rnet": x[:, :24, :24], "onet": x[:, :48, :48]}
    with torch.inference_mode():
        for name, inp in crops.items():
            for a, b in zip(nets[name](inp), export[name](inp), strict=True):
                assert torch.allclose(a, b, atol=2e-5, rtol=1e-5), name
    other = TorchDetector(device="cpu")
    other._nets = export
    for image in (astronaut, grace_hopper):
        assert_same(torch_detector.detect(image), other.detect(image))


def test_full_fp32_is_scoped_to_the_engine():
    """On CUDA the engine turns TF32 off while it runs and restores the caller's setting."""
    from livefaces.detect.torch_engine import _full_fp32

    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    with _full_fp32(torch.device("cuda")):
        assert conv.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert conv.fp32_precision == before
    with _full_fp32(torch.device("cpu")):  # nothing to do on the CPU
        assert conv.fp32_precision == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here (torch "
                    f"{torch.__version__}); scripts/gpu_check.py makes this check on a GPU")
def test_cuda_engine_matches_the_cpu_engines(detector, torch_detector, frames_1080p, astronaut,
                                             grace_hopper):
    from livefaces.detect.torch_engine import TorchDetector

    cuda = TorchDetector(device="cuda")
    images = [astronaut, grace_hopper, *frames_1080p[:4]]
    for image in images:
        a = detector.detect(image)
        assert_same(a, cuda.detect(image))
        assert_same(torch_detector.detect(image), cuda.detect(image))
    for a, b in zip(detector.detect_batch(frames_1080p), cuda.detect_batch(frames_1080p), strict=True):
        assert_same(a, b)


def test_gpu_check_dry_run(tmp_path):
    """scripts/gpu_check.py's CPU dry run: every section runs, JSON and table written."""
    import json

    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_check.py"), "--device", "cpu",
                        "--tiny", "--no-peer", "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "gpu_check.json").read_text())
    assert not res["errors"] and not res["skipped"], res["errors"]
    assert {"env", "fidelity", "speed", "extract", "diag", "live"} <= set(res["sections"])
    assert res["sections"]["live"]["runs"]
    assert res["sections"]["diag"]["syncs_per_call"]["b1"] == 6
    assert "| what | livefaces | facenet-pytorch | ratio | notes |" in r.stdout


def test_cli_runs_without_pyav(tmp_path, grace_hopper):
    """The GPU machine has no PyAV: doctor and detect run and say it is missing; a video input
    fails with one line naming the install. Before: every command died importing avio."""
    from livefaces.imageio import write_image

    write_image(tmp_path / "g.jpg", grace_hopper)
    block = "import sys; sys.modules['av'] = None; from livefaces.cli import main; "
    runs = {}
    for name, args in {"doctor": ["doctor"], "detect": ["detect", str(tmp_path / "g.jpg")],
                       "extract": ["extract", str(ROOT / "livefaces/data/demo.mp4"), "--out",
                                   str(tmp_path / "o")]}.items():
        runs[name] = subprocess.run([sys.executable, "-c", block + f"sys.exit(main({args!r}))"],
                                    capture_output=True, text=True, cwd=ROOT, timeout=120)
    doctor, detect, extract = runs["doctor"], runs["detect"], runs["extract"]
    assert doctor.returncode == 0, doctor.stderr
    assert any(line.split()[:1] == ["av"] and "not available" in line
               for line in doctor.stdout.splitlines()), doctor.stdout
    assert detect.returncode == 0 and "1 face" in detect.stdout, detect.stderr
    assert extract.returncode == 1, extract.stderr
    assert "Traceback" not in extract.stderr
    assert "PyAV is not installed" in extract.stderr and "pip install av" in extract.stderr
