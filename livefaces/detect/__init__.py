"""Face detection: the MTCNN cascade on ONNX Runtime (and, optionally, PyTorch).

``Detector().detect(image)`` takes ``(H, W, 3)`` uint8 RGB arrays, PIL images, or OpenCV's BGR
frames with ``color="bgr"``; :func:`as_rgb` is the conversion every engine applies.
``make_engine(DetectorOptions(engine="torch", device="cuda"))`` builds whichever engine the
options ask for; every command's ``--engine``/``--device``/... flags end up there.
"""

from .engine import Engine, make_engine
from .mtcnn import COLORS, Detector, ImageInput, as_rgb
from .options import DetectorOptions

__all__ = ["COLORS", "Detector", "DetectorOptions", "Engine", "ImageInput", "as_rgb", "make_engine"]
