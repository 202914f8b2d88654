"""Face detection: the MTCNN cascade on ONNX Runtime."""

from .mtcnn import Detector, as_rgb

__all__ = ["Detector", "as_rgb"]
