"""``livefaces doctor``: what runs where."""

from __future__ import annotations

import argparse
import importlib
import platform

from ..detect import runtime
from ._common import EXIT_OK, EXIT_SETUP

NAME = "doctor"
HELP = "print versions, ONNX Runtime providers and model file checks"
DESCRIPTION = """\
Prints the versions of livefaces and its libraries, the ONNX Runtime execution providers
this machine has, the one livefaces would choose, and whether the model files match
models/MANIFEST.json. Exit code 3 if a model file does not match.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - report anything that stops an import
        return f"not available ({type(e).__name__})"
    return str(getattr(mod, "__version__", "?"))


def run(args: argparse.Namespace) -> int:
    from .. import __version__

    rows = [("livefaces", __version__), ("python", platform.python_version()),
            ("platform", platform.platform())]
    rows += [(m, _version(m)) for m in ("numpy", "cv2", "av", "onnxruntime", "torch")]
    for name, value in rows:
        print(f"{name:<22} {value}")
    have = runtime.available_providers()
    print(f"{'providers available':<22} {', '.join(have)}")
    print(f"{'provider chosen':<22} {runtime.choose_providers(None)[0]}")
    from ..detect.engine import engine_report  # engines: onnx / torch, cpu / cuda
    for name, value in engine_report():
        print(f"{name:<22} {value}")
    directory = runtime.models_dir()
    print(f"{'models':<22} {directory}")
    try:
        checks = runtime.verify_models(directory)
    except Exception as e:  # noqa: BLE001
        print(f"{'  manifest':<22} PROBLEM: {e}")
        return EXIT_SETUP
    for name, ok in checks.items():  # pnet, rnet, onet, weights (the torch engine's copy)
        verdict = 'ok (sha256 matches MANIFEST.json)' if ok else 'MISMATCH: reinstall or re-export'
        print(f"{'  ' + name:<22} {verdict}")
    return EXIT_OK if all(checks.values()) else EXIT_SETUP
