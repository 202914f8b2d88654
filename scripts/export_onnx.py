#!/usr/bin/env python3
"""Export facenet-pytorch's MTCNN weights to the ONNX files livefaces runs.

    pip install torch==2.13.0 onnx && pip install --no-deps facenet-pytorch==2.6.0
    python scripts/export_onnx.py            # writes models/{pnet,rnet,onet}.onnx + MANIFEST.json

The weights are read straight from the installed wheel's ``facenet_pytorch/data/*.pt`` (the
package itself is never imported: it needs torchvision). The graphs take float32 NHWC RGB (0-255) and
normalise inside, see ``livefaces/detect/torch_nets.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OPSET = 17

# name -> (input names, output names, example input shape, dynamic axes)
SPECS = {
    "pnet": (
        ["image"],
        ["prob", "reg"],
        (1, 48, 64, 3),
        {"image": {0: "batch", 1: "height", 2: "width"},
         "prob": {0: "batch", 1: "out_height", 2: "out_width"},
         "reg": {0: "batch", 2: "out_height", 3: "out_width"}},
    ),
    "rnet": (["image"], ["prob", "reg"], (2, 24, 24, 3),
             {"image": {0: "batch"}, "prob": {0: "batch"}, "reg": {0: "batch"}}),
    "onet": (["image"], ["prob", "reg", "points"], (2, 48, 48, 3),
             {"image": {0: "batch"}, "prob": {0: "batch"}, "reg": {0: "batch"},
              "points": {0: "batch"}}),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def default_weights_dir() -> Path:
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("facenet-pytorch is not installed: pip install --no-deps facenet-pytorch==2.6.0")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def export_nets(weights_dir: Path):  # type: ignore[no-untyped-def]
    from livefaces.detect import torch_nets as tn

    return dict(zip(("pnet", "rnet", "onet"), (tn.export_net(n) for n in tn.load_nets(str(weights_dir)))))


def share_add_shapes(model) -> int:  # type: ignore[no-untyped-def]
    """Write a shared symbolic shape ``(batch, C, h<k>, w<k>)`` for the inputs and output of every
    ``Add`` of two convolution maps; returns how many.

    ONNX Runtime fuses such an ``Add`` into one of the convolutions (NCHWc "sum" input) only when
    it can prove both maps have the same shape; with P-Net's free height and width, ONNX shape
    inference leaves the convolution outputs' spatial sizes unknown, and the ``Add`` then runs
    as a separate pass (one 1080p P-Net band: 4.49 vs 4.65 ms).
    """
    from onnx import TensorProto, helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    weights = {i.name: i for i in graph.initializer}
    batch = graph.input[0].type.tensor_type.shape.dim[0].dim_param

    def channels(name: str) -> int | None:  # walk back to the convolution that made the map
        node = producer.get(name)
        while node is not None and node.op_type != "Conv":
            if node.op_type not in ("Relu", "Mul", "Add", "MaxPool"):
                return None
            node = next((producer[i] for i in node.input
                         if i in producer and producer[i].op_type != "Constant"), None)
        return None if node is None else int(weights[node.input[1]].dims[0])

    count = 0
    for node in graph.node:
        if node.op_type != "Add" or any(i not in producer or producer[i].op_type == "Constant"
                                        for i in node.input):
            continue
        found = {channels(i) for i in node.input}
        if len(found) != 1 or None in found:
            continue
        count += 1
        dims = [batch, found.pop(), f"h{count}", f"w{count}"]
        for name in [*node.input, *node.output]:
            graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    return count


def export(weights_dir: Path, out_dir: Path) -> dict:
    import onnx
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"opset": OPSET, "source": "facenet-pytorch 2.6.0 facenet_pytorch/data",
                      "input_format": "float32 NHWC RGB 0-255, normalised inside the graph",
                      "notes": "first layer as relu(conv_k(x)) + conv(x) with the normalisation folded in "
                               "(slopes > 1 applied after pool1), other PReLUs as x + relu((a-1)x), "
                               "output layers merged, face softmax as sigmoid(z1-z0); same outputs "
                               "to ~1e-6, faster in ONNX Runtime (livefaces/detect/torch_nets.py "
                               "export_net)",
                      "models": {}}
    for name, module in export_nets(weights_dir).items():
        inputs, outputs, shape, dyn = SPECS[name]
        path = out_dir / f"{name}.onnx"
        example = torch.rand(shape) * 255
        torch.onnx.export(module, (example,), str(path), input_names=inputs,
                          output_names=outputs, dynamic_axes=dyn, opset_version=OPSET,
                          dynamo=False)
        model = onnx.load(str(path))
        share_add_shapes(model)
        onnx.save(model, str(path))
        onnx.checker.check_model(model)

        def dims(vi):  # type: ignore[no-untyped-def]
            return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

        manifest["models"][name] = {
            "file": path.name,
            "sha256": sha256(path),
            "weights": f"{name}.pt",
            "weights_sha256": sha256(weights_dir / f"{name}.pt"),
            "inputs": {vi.name: {"shape": dims(vi), "dtype": "float32"} for vi in model.graph.input},
            "outputs": {vi.name: {"shape": dims(vi), "dtype": "float32"}
                        for vi in model.graph.output},
        }
    npz = out_dir / WEIGHTS_NPZ
    write_weights_npz(weights_dir, npz)
    manifest["weights_npz"] = {"file": npz.name, "sha256": sha256(npz),
                               "keys": "<net>.<parameter> of facenet-pytorch's state dicts, float32"}
    (out_dir / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


WEIGHTS_NPZ = "mtcnn_weights.npz"


def write_weights_npz(weights_dir: Path, path: Path) -> None:
    """The original state dicts as one .npz (for the torch engine: no onnx parsing, no
    facenet-pytorch at run time). Written with fixed zip timestamps so it is reproducible."""
    import io
    import zipfile

    import numpy as np
    import torch

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in ("pnet", "rnet", "onet"):
            state = torch.load(weights_dir / f"{name}.pt", map_location="cpu")
            for key, tensor in state.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, tensor.detach().numpy().astype(np.float32))
                info = zipfile.ZipInfo(f"{name}.{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None,
                    help="folder with pnet.pt/rnet.pt/onet.pt (default: the installed facenet-pytorch wheel)")
    ap.add_argument("--out", type=Path, default=ROOT / "models", help="output folder (default: models/)")
    args = ap.parse_args()
    manifest = export(args.weights or default_weights_dir(), args.out)
    for name, entry in manifest["models"].items():
        print(f"{name}: {args.out / entry['file']}  sha256 {entry['sha256'][:16]}…")


if __name__ == "__main__":
    main()
