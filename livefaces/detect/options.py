"""Detector settings: the one place their defaults live.

Every command (``detect``, ``watch``, ``preview``, ``serve``, ``extract``), serve's
``detector:`` config section and the Python API build a :class:`DetectorOptions` and hand it to
:func:`livefaces.detect.engine.make_engine`; the engines take the same values as keywords.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import InputError

ENGINES = ("auto", "onnx", "torch")
DEVICES = ("auto", "cpu", "cuda")

#: facenet-pytorch's MTCNN defaults, so detections match its out of the box
MIN_FACE_SIZE = 20.0
THRESHOLDS = (0.6, 0.7, 0.7)
FACTOR = 0.709


def check_settings(min_face_size: float, thresholds: Sequence[float], factor: float) -> tuple[float, ...]:
    """Validate detector settings (shared by every engine); the thresholds as a float tuple."""
    if not (math.isfinite(min_face_size) and min_face_size >= 12):
        raise InputError(f"min_face_size must be at least 12 pixels, got {min_face_size}")
    if not 0.0 < factor < 1.0:
        raise InputError(f"factor must be between 0 and 1 (exclusive), got {factor}")
    out = tuple(float(t) for t in thresholds)
    if len(out) != 3 or not all(0.0 <= t <= 1.0 for t in out):
        raise InputError(f"thresholds must be 3 numbers in [0, 1], got {out}")
    return out


def check_engine(engine: str, device: str) -> None:
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if device.split(":")[0] not in DEVICES:
        raise InputError(f"device must be one of auto, cpu, cuda[:N], got {device!r}")


@dataclass(frozen=True)
class DetectorOptions:
    """Which engine runs the cascade, where, and with which settings.

    Attributes:
        engine: ``auto``, ``onnx`` (ONNX Runtime) or ``torch``; see
            :func:`~livefaces.detect.engine.resolve` for what ``auto`` picks.
        device: ``auto``, ``cpu`` or ``cuda`` / ``cuda:N``.
        min_face_size: smallest face to find, in pixels of the image given to the detector
            (≥ 12; larger is faster).
        thresholds: P-Net, R-Net, O-Net score thresholds, each in [0, 1].
        factor: image pyramid step, 0 < factor < 1 (larger finds more faces, slower).
        threads: CPU threads for the engine (``None``: all cores).
    """

    engine: str = "auto"
    device: str = "auto"
    min_face_size: float = MIN_FACE_SIZE
    thresholds: tuple[float, float, float] = field(default=THRESHOLDS)
    factor: float = FACTOR
    threads: int | None = None

    def __post_init__(self) -> None:
        check_engine(self.engine, self.device)
        t = check_settings(self.min_face_size, self.thresholds, self.factor)
        object.__setattr__(self, "thresholds", t)
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be 1 or more, got {self.threads}")
