"""livefaces: real-time MTCNN face detection for live video and still images.

>>> from livefaces import Detector
>>> faces = Detector().detect(rgb_image)   # boxes (N,4), scores (N,), landmarks (N,5,2)
"""

from .detect import Detector
from .errors import LiveFacesError
from .types import LANDMARK_NAMES, Face, Faces, Frame, FrameResult

__version__ = "0.1.0"

__all__ = ["Detector", "Face", "Faces", "Frame", "FrameResult", "LANDMARK_NAMES",
           "LiveFacesError", "__version__"]
