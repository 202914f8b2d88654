"""ONNX Runtime behind one module: model files, provider choice, sessions.

This is the only module that imports ``onnxruntime``. ``onnxruntime`` (CPU) and
``onnxruntime-gpu`` ship the same module; install one of them, never both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ModelError, ProviderError

log = logging.getLogger(__name__)

MODEL_NAMES = ("pnet", "rnet", "onet")

#: Preference order when ``providers`` is not given: first available wins.
PREFERENCE = ("CUDAExecutionProvider", "CPUExecutionProvider")

_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def models_dir() -> Path:
    """Where the ONNX files live: ``$LIVEFACES_MODELS``, else the ``models/`` shipped with us."""
    env = os.environ.get("LIVEFACES_MODELS")
    if env:
        return Path(env)
    try:
        files = resources.files("livefaces.models")
    except ModuleNotFoundError:  # running from a source tree without installing
        return Path(__file__).resolve().parents[2] / "models"
    # A package on disk gives a Path. Anything else (a zip import) cannot be opened by ONNX
    # Runtime by name: say so rather than pass str() of a Traversable on as a path.
    if not isinstance(files, Path):
        raise ModelError(f"the models inside {files!r} are not files on disk; install livefaces "
                         "from a wheel or set LIVEFACES_MODELS to a folder with the .onnx files")
    return files


def read_manifest(directory: Path | None = None) -> dict:
    directory = directory or models_dir()
    path = directory / "MANIFEST.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ModelError(
            f"{path} is missing; reinstall livefaces or run scripts/export_onnx.py"
        ) from e
    except json.JSONDecodeError as e:
        raise ModelError(f"{path} is not valid JSON ({e}); restore it from the repository") from e


def verify_models(directory: Path | None = None) -> dict[str, bool]:
    """sha256 of each ONNX file against MANIFEST.json: ``{name: matches}``."""
    directory = directory or models_dir()
    manifest = read_manifest(directory)
    result = {}
    for name, entry in manifest["models"].items():
        path = directory / entry["file"]
        ok = path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        result[name] = ok
    if "weights_npz" in manifest:  # the torch engine's copy of the weights
        entry = manifest["weights_npz"]
        path = directory / entry["file"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        result["weights"] = digest == entry["sha256"]
    return result


#: The ONNX Runtime builds on PyPI that ship the same ``onnxruntime`` module; one at a time.
RUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml",
                         "onnxruntime-openvino", "onnxruntime-qnn")

NOT_INSTALLED = ("ONNX Runtime is not installed: install livefaces with its 'cpu' extra, or 'gpu' "
                 "for NVIDIA GPUs (pip install '.[cpu]' in the source folder; README: Set up), "
                 "or use --engine torch")


def installed_runtimes() -> list[tuple[str, str]]:
    """``(distribution, version)`` of every ONNX Runtime build installed, from package metadata.

    More than one means they overwrite each other's ``onnxruntime`` module: whichever was
    installed last is the one that runs, and uninstalling either breaks the other.
    """
    from importlib import metadata

    found = []
    for dist in RUNTIME_DISTRIBUTIONS:
        try:
            found.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            pass
    return found


def _ort():  # type: ignore[no-untyped-def]
    """``import onnxruntime``, or a :class:`ProviderError` that says how to install it."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ProviderError(NOT_INSTALLED) from e
    return onnxruntime


def available_providers() -> list[str]:
    return list(_ort().get_available_providers())


def choose_providers(providers: str | Sequence[str] | None) -> list[str]:
    """Resolve a user's provider request into the list handed to ONNX Runtime.

    ``None`` takes :data:`PREFERENCE` filtered by what this ONNX Runtime build has.
    ``"cpu"``/``"cuda"`` (or full provider names, or a list of them) force a choice; a forced
    provider that is missing raises :class:`ProviderError` instead of silently falling back.
    """
    have = available_providers()
    if providers is None:
        chosen = [p for p in PREFERENCE if p in have]
    else:
        wanted = [providers] if isinstance(providers, str) else list(providers)
        chosen = [_ALIASES.get(p.lower(), p) for p in wanted]
        missing = [p for p in chosen if p not in have]
        if missing:
            hint = ""
            if "CUDAExecutionProvider" in missing:
                hint = ("; CUDA needs livefaces' 'gpu' extra (onnxruntime-gpu instead of "
                        "onnxruntime; README: GPU) and an NVIDIA GPU")
            raise ProviderError(
                f"ONNX Runtime provider(s) {', '.join(missing)} not available "
                f"(this build has {', '.join(have)}){hint}"
            )
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")  # ops a GPU provider lacks run on CPU
    return chosen


@dataclass
class Session:
    """One ONNX model ready to run: ``session.run({'image': batch})`` → list of arrays."""

    name: str
    _session: object
    input_name: str
    output_names: list[str]

    def run(self, image: np.ndarray) -> list[np.ndarray]:
        return self._session.run(self.output_names, {self.input_name: image})  # type: ignore[attr-defined]

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())  # type: ignore[attr-defined]


def load_sessions(providers: list[str], threads: int | None = None,
                  directory: Path | None = None) -> dict[str, Session]:
    """Open the three MTCNN models with ``providers``; ``threads`` bounds intra-op threads."""
    ort = _ort()
    builds = installed_runtimes()
    if len(builds) > 1:
        log.warning("several ONNX Runtime builds are installed (%s); they share one module, so the "
                    "last one installed runs: keep one (README: GPU)",
                    ", ".join(f"{d} {v}" for d, v in builds))
    directory = directory or models_dir()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # Idle ONNX Runtime workers sleep instead of spinning: the prep thread (pyramid levels,
    # crops) needs that core between network calls. 1080p, 2 threads: 203 -> 176 ms/frame.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = {}
    for name in MODEL_NAMES:
        path = directory / f"{name}.onnx"
        if not path.is_file():
            raise ModelError(f"model file {path} is missing; reinstall livefaces or run "
                             "scripts/export_onnx.py")
        try:
            s = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load {path}: {e}") from e
        sessions[name] = Session(name, s, s.get_inputs()[0].name,
                                 [o.name for o in s.get_outputs()])
    log.info("ONNX Runtime %s: using %s", ort.__version__, sessions["pnet"].providers[0])
    return sessions


def version() -> str:
    return str(_ort().__version__)
