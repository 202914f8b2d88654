"""Face detection: the MTCNN cascade on ONNX Runtime (and, optionally, PyTorch).

``Detector().detect(image)`` takes ``(H, W, 3)`` uint8 RGB arrays, PIL images, or OpenCV's BGR
frames with ``color="bgr"``; :func:`as_rgb` is the conversion every engine applies.
"""

from .mtcnn import COLORS, Detector, ImageInput, as_rgb

__all__ = ["COLORS", "Detector", "ImageInput", "as_rgb"]
