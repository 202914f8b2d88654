"""The committed ONNX files: checksums, and equality with the torch nets they came from."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from livefaces.detect import runtime

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


def test_manifest_checksums_match_committed_files():
    manifest = json.loads((MODELS / "MANIFEST.json").read_text())
    assert set(manifest["models"]) == {"pnet", "rnet", "onet"}
    assert manifest["opset"] >= 13
    for name, entry in manifest["models"].items():
        data = (MODELS / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert len(entry["weights_sha256"]) == 64
        assert list(entry["inputs"]) == ["image"]
    npz = manifest["weights_npz"]
    assert hashlib.sha256((MODELS / npz["file"]).read_bytes()).hexdigest() == npz["sha256"]
    assert runtime.verify_models(MODELS) == {"pnet": True, "rnet": True, "onet": True, "weights": True}


def test_verify_models_detects_a_damaged_file(tmp_path):
    for f in MODELS.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "rnet.onnx").write_bytes(b"garbage")
    assert runtime.verify_models(tmp_path) == {"pnet": True, "rnet": False, "onet": True, "weights": True}


def _weights_dir() -> Path:
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None:
        pytest.skip("facenet-pytorch not installed (scripts/test.sh installs it)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@pytest.fixture(scope="module")
def reexported(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    out = tmp_path_factory.mktemp("models")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "export_onnx.py"), "--weights",
                    str(_weights_dir()), "--out", str(out)], check=True, capture_output=True)
    return out


@pytest.mark.parametrize("name,shape", [("pnet", (2, 37, 53, 3)), ("pnet", (1, 12, 12, 3)),
                                        ("rnet", (5, 24, 24, 3)), ("onet", (3, 48, 48, 3))])
def test_reexported_onnx_equals_torch(reexported, name, shape):
    import onnxruntime as ort
    import torch

    from livefaces.detect import torch_nets as tn

    nets = dict(zip(("pnet", "rnet", "onet"), tn.load_nets(str(_weights_dir()))))
    wrapper = {"pnet": tn.PNetWrapped, "rnet": tn.RNetWrapped, "onet": tn.ONetWrapped}[name]
    module = wrapper(nets[name]).eval()
    x = (np.random.default_rng(0).random(shape, dtype=np.float32) * 255).astype(np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in module(torch.from_numpy(x))]
    for directory in (reexported, MODELS):  # the fresh export and the committed files
        sess = ort.InferenceSession(str(directory / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"image": x})
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            assert np.abs(g - e).max() <= 1e-4


def test_reexport_manifest_records_sources(reexported):
    manifest = json.loads((reexported / "MANIFEST.json").read_text())
    committed = json.loads((MODELS / "MANIFEST.json").read_text())
    for name in ("pnet", "rnet", "onet"):
        # Same source weights as the committed models were made from.
        assert manifest["models"][name]["weights_sha256"] == committed["models"][name]["weights_sha256"]
        assert manifest["models"][name]["inputs"] == committed["models"][name]["inputs"]


def test_weights_npz_equals_facenet_state_dicts():
    torch = pytest.importorskip("torch")
    from livefaces.detect import torch_nets as tn

    from_npz = tn.load_nets_npz(str(MODELS / "mtcnn_weights.npz"))
    from_pt = tn.load_nets(str(_weights_dir()))
    for a, b in zip(from_npz, from_pt):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k


def test_export_nets_give_the_same_outputs():
    """The rewritten nets (first layer as two convolutions with the normalisation folded in,
    slopes > 1 after the pool, PReLU as x + relu((a-1)x), merged output layers, no transposes)
    against facenet-pytorch's layers, on pixels."""
    torch = pytest.importorskip("torch")
    from livefaces.detect import torch_nets as tn

    rng = np.random.default_rng(1)
    nets = tn.load_nets_npz(str(MODELS / "mtcnn_weights.npz"))
    wrappers = (tn.PNetWrapped, tn.RNetWrapped, tn.ONetWrapped)
    for net, wrapper, size in zip(nets, wrappers, (31, 24, 48)):
        fast = tn.export_net(net)
        assert fast.first.conv.out_channels % 16 == 0 and fast.conv2.in_channels % 16 == 0
        assert isinstance(net.prelu1, torch.nn.PReLU)  # the original is left alone
        pixels = torch.from_numpy(rng.integers(0, 256, (4, size, size, 3)).astype(np.float32))
        with torch.no_grad():
            expected = wrapper(net)(pixels)
            got = fast(pixels)
        assert len(expected) == len(got)
        for a, b in zip(expected, got):
            assert a.shape == b.shape
            assert np.abs(a.numpy() - b.numpy()).max() <= 1e-5
    # P-Net and R-Net have slopes above 1 (applied after the pool): the check above covers them
    assert bool((nets[0].prelu1.weight > 1).any()) and tn.export_net(nets[0]).pool1.fix
