"""Engine choice: which implementation of the cascade runs, and on which device.

Two engines give the same detections (tested):

* ``onnx``: :class:`~livefaces.detect.Detector` on ONNX Runtime (CPU, or CUDA with
  ``onnxruntime-gpu``);
* ``torch``: :class:`~livefaces.detect.torch_engine.TorchDetector`, the whole cascade in
  PyTorch on one device, for machines with a CUDA build of torch but no ``onnxruntime-gpu``.

Both have ``detect(image, color="rgb") -> Faces``, ``detect_batch([image, ...], color="rgb")
-> list[Faces]`` (numpy RGB/BGR arrays or PIL images, see :func:`~livefaces.detect.as_rgb`) and a
``provider`` string naming where they run. ``torch`` is only imported when asked about.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from ..errors import ProviderError
from ..types import Faces
from .options import DetectorOptions, check_engine

if TYPE_CHECKING:  # not at run time: mtcnn imports ONNX Runtime
    from .mtcnn import ImageInput


class Engine(Protocol):
    """What every engine offers (structural type)."""

    provider: str

    def detect(self, image: ImageInput, *, color: str = "rgb") -> Faces: ...

    def detect_batch(self, images: Sequence[ImageInput], *, color: str = "rgb") -> list[Faces]: ...


def _ort_has_cuda() -> bool:
    try:
        from .runtime import available_providers

        return "CUDAExecutionProvider" in available_providers()
    except Exception:  # noqa: BLE001 - no onnxruntime at all
        return False


def _ort_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _nvidia_gpu_possible() -> bool:
    """False when this machine certainly has no NVIDIA GPU (macOS; Linux without the NVIDIA
    driver): then ``auto`` need not import torch (~180 MB and seconds) just to hear "no CUDA"."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version") or bool(glob.glob("/dev/nvidia[0-9]*"))
    return True  # Windows and others: only torch can tell


def _torch_cuda() -> tuple[bool, str]:
    """(torch has a usable CUDA device, description) without importing torch if absent."""
    if importlib.util.find_spec("torch") is None:
        return False, "not installed"
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        return False, f"cannot import ({type(e).__name__})"
    if torch.cuda.is_available():
        return True, f"{torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}"
    return False, f"{torch.__version__}, no CUDA device"


def resolve(engine: str = "auto", device: str = "auto") -> tuple[str, str]:
    """The ``(engine, device)`` that ``make_engine`` would build, without building it.

    ``auto`` engine: CUDA through ONNX Runtime if it has the CUDA provider, else through torch
    if torch sees a GPU, else ONNX Runtime on CPU (faster than torch on CPU), else torch on CPU
    when torch is all there is. ``auto`` device: CUDA when the chosen engine can reach one,
    else CPU.
    """
    check_engine(engine, device)
    dev = device.split(":")[0]
    if engine == "auto":
        if not _ort_installed() and importlib.util.find_spec("torch") is not None:
            return resolve("torch", device)
        if dev == "cpu":
            return "onnx", "cpu"
        if _ort_has_cuda():
            return "onnx", "cuda"
        if _nvidia_gpu_possible() and _torch_cuda()[0]:
            return "torch", device if dev == "cuda" else "cuda"
        if dev == "cuda":
            raise ProviderError("no CUDA engine here: install onnxruntime-gpu, or a CUDA build of "
                                "torch; 'livefaces doctor' shows what is found")
        return "onnx", "cpu"
    if engine == "onnx":
        if dev == "auto":
            return "onnx", "cuda" if _ort_has_cuda() else "cpu"
        return "onnx", dev
    if dev == "auto":
        return "torch", "cuda" if _torch_cuda()[0] else "cpu"
    return "torch", device


def make_engine(options: DetectorOptions | None = None) -> Engine:
    """Build the detector engine ``options`` ask for (default: :class:`DetectorOptions()`);
    see :func:`resolve` for what ``auto`` picks.

    Raises :class:`~livefaces.errors.ProviderError` when the asked-for engine or device is not
    available (never falls back silently from an explicit choice).
    """
    o = options or DetectorOptions()
    name, dev = resolve(o.engine, o.device)
    if name == "onnx":
        from .mtcnn import Detector

        return Detector(min_face_size=o.min_face_size, thresholds=o.thresholds, factor=o.factor,
                        providers=dev, threads=o.threads)
    from .torch_engine import TorchDetector

    return TorchDetector(min_face_size=o.min_face_size, thresholds=o.thresholds, factor=o.factor,
                         device=dev, threads=o.threads)


def engine_problem(options: DetectorOptions) -> str | None:
    """Why the engine and device ``options`` ask for cannot run here (one line), or None; the
    check :func:`make_engine` makes, without loading a model. ``auto`` on both is always fine
    (and not checked: it would import torch for nothing)."""
    if (options.engine, options.device) == ("auto", "auto"):
        return None
    from .runtime import choose_providers

    try:
        engine, device = resolve(options.engine, options.device)
        if engine == "onnx":
            choose_providers(device.split(":")[0])
    except ProviderError as e:
        return str(e)
    if engine == "torch" and importlib.util.find_spec("torch") is None:
        return "the torch engine needs PyTorch: install torch, or use engine onnx"
    return None


def engine_report() -> list[tuple[str, str]]:
    """``(label, value)`` rows for ``livefaces doctor``: what each engine can use here."""
    rows = []
    try:
        from .runtime import available_providers

        have = available_providers()
        rows.append(("engine onnx", "cpu" + (", cuda" if "CUDAExecutionProvider" in have else
                                             " (cuda needs the 'gpu' extra: "
                                             "onnxruntime-gpu)")))
    except Exception as e:  # noqa: BLE001
        rows.append(("engine onnx", f"not available ({type(e).__name__})"))
    ok, what = _torch_cuda()
    if importlib.util.find_spec("torch") is None:
        rows.append(("engine torch", "not available: install torch (a CUDA build for GPUs)"))
    else:
        rows.append(("engine torch", f"cpu{', cuda' if ok else ''} (torch {what})"))
    for dev in ("cpu", "cuda"):
        try:
            chosen, where = resolve("auto", dev)
            rows.append((f"engine for {dev}", f"{chosen} on {where} (--engine auto)"))
        except ProviderError as err:
            rows.append((f"engine for {dev}", f"none ({str(err).split(':')[0]})"))
    return rows
