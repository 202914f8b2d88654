"""The settings of an extraction: :class:`ExtractOptions` (what is detected and written) and
:class:`ClusterOptions` (where a run on Ray goes). Plain data with their checks; both runners
(``job.py`` on this machine, ``cluster.py`` on Ray) read them."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..detect.options import DetectorOptions
from ..errors import InputError
from ..imageio import MAX_PIXELS


@dataclass(frozen=True)
class ExtractOptions:
    """Settings of an extraction job.

    Attributes:
        stride: detect on every ``stride``-th frame of a video (1 = all).
        resize: scale frames by this factor before detection (0.5 = half width and height);
            boxes, landmarks and crops are in *original* pixels either way.
            ``detector.min_face_size`` applies to the resized frame, as in facenet-pytorch's
            FastMTCNN recipe.
        detector: which engine runs where, with which settings (defaults: see
            :mod:`livefaces.detect.options`).
        batch_size: frames per detector call (across inputs).
        margin: crop margin in pixels of the output crop (facenet-pytorch's ``margin``).
        crop_size: output crop side in pixels (``None``: 112 aligned, 160 otherwise).
        align: crops aligned by the 5 landmarks to the ArcFace 112×112 template, scaled.
        image_format: crop file type, ``"jpg"`` or ``"png"``.
        max_pixels: images (and video frames) larger than this, width x height, are not
            decoded: the input fails (``None``: no limit). Read from the header, so a small
            file claiming a huge image (a decompression bomb) costs nothing.
    """

    stride: int = 1
    resize: float = 1.0
    detector: DetectorOptions = field(default_factory=DetectorOptions)
    batch_size: int = 32
    margin: float = 0
    crop_size: int | None = None
    align: bool = False
    image_format: str = "jpg"
    max_pixels: int | None = MAX_PIXELS

    def check(self) -> None:
        if self.stride < 1:
            raise InputError(f"stride must be 1 or more, got {self.stride}")
        if not 0 < self.resize <= 4:
            raise InputError(f"resize must be in (0, 4], got {self.resize}")
        if self.batch_size < 1:
            raise InputError(f"batch size must be 1 or more, got {self.batch_size}")
        if self.size < 8:
            raise InputError(f"crop size must be at least 8 pixels, got {self.size}")
        if not 0 <= self.margin < self.size:
            raise InputError(f"margin must be in [0, crop size), got {self.margin}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise InputError(f"max pixels must be 1 or more, got {self.max_pixels}")
        if self.image_format not in ("jpg", "png"):
            raise InputError(f"image format must be jpg or png, got {self.image_format!r}")

    @property
    def size(self) -> int:
        return int(self.crop_size or (112 if self.align else 160))

    def output_settings(self) -> dict:
        """The settings that change what is written (compared on resume; the same keys as
        before the detector settings moved into :attr:`detector`, so older folders resume)."""
        d = self.detector
        return {"stride": self.stride, "resize": self.resize, "min_face_size": d.min_face_size,
                "thresholds": list(d.thresholds), "factor": d.factor, "margin": self.margin,
                "crop_size": self.size, "align": self.align, "image_format": self.image_format}



@dataclass(frozen=True)
class ClusterOptions:
    """Where and how a run goes on a Ray cluster (``extract(..., cluster=...)``).

    Attributes:
        address: ``"local"`` starts a Ray cluster on this machine for the run and stops it
            after; ``"auto"`` joins the cluster this machine belongs to (``ray start``);
            ``"ray://host:10001"`` joins through Ray Client. An already connected Ray session
            (``ray.init`` done by the caller) is used as it is and left connected.
        workers: detector actors (each loads the engine once); ``None``: one per GPU when the
            cluster has GPUs and the engine may use CUDA, else the cluster's CPUs minus one.
        cpus_per_worker: CPUs each CPU detector actor reserves (and its ONNX threads unless
            ``detector.threads`` is set).
        gpus_per_worker: GPUs each detector actor reserves when it runs on CUDA.
        segment_seconds: length of a video segment (a part), aligned to the stride.
        images_per_part: images decoded by one task.
        cpus: logical CPUs of a ``local`` cluster (``None``: cores + 1: decoding and writing
            tasks beside one detector per core).
        object_store_mb: object store of a ``local`` cluster (``None``: Ray's default).
    """

    address: str = "local"
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    segment_seconds: float = 60.0
    images_per_part: int = 64
    cpus: int | None = None
    object_store_mb: int | None = None

    def check(self) -> None:
        if not self.address:
            raise InputError("the Ray address is empty: use local, auto or ray://HOST:PORT")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"workers must be 1 or more, got {self.workers}")
        if self.cpus_per_worker <= 0 or self.gpus_per_worker <= 0:
            raise InputError("cpus and gpus per worker must be more than 0")
        if self.segment_seconds <= 0:
            raise InputError(f"segment length must be more than 0 s, got {self.segment_seconds}")
        if self.images_per_part < 1:
            raise InputError(f"images per part must be 1 or more, got {self.images_per_part}")
        if self.cpus is not None and self.cpus < 1:
            raise InputError(f"cpus must be 1 or more, got {self.cpus}")
        if self.object_store_mb is not None and self.object_store_mb < 80:
            raise InputError(f"the object store needs at least 80 MB, got {self.object_store_mb}")
