"""livefaces: real-time MTCNN face detection for live video and still images.

>>> from livefaces import Detector
>>> faces = Detector().detect(rgb_image)   # boxes (N,4), scores (N,), landmarks (N,5,2)
>>> faces = Detector().detect(bgr_frame, color="bgr")   # OpenCV frames; PIL images work too
>>> for result in livefaces.stream("rtsp://cam/stream", duration=10): ...   # live video

Guide with examples: docs/python.md (Detector, Faces, detect_batch, input formats, crops and
alignment in :mod:`livefaces.align`, drawing in :mod:`livefaces.render`, :func:`stream`).
"""

from .detect import Detector
from .errors import LiveFacesError
from .types import LANDMARK_NAMES, Face, Faces, Frame, FrameResult

__version__ = "0.1.0"

__all__ = ["Detector", "Face", "Faces", "Frame", "FrameResult", "LANDMARK_NAMES",
           "LiveFacesError", "Pipeline", "stream", "__version__"]


def __getattr__(name: str):  # noqa: ANN202 - lazy: the live pipeline imports PyAV
    if name in ("Pipeline", "stream"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'livefaces' has no attribute {name!r}")
