"""Face crops: plain (box + margin, facenet-pytorch style) and aligned by the 5 landmarks.

Aligned crops map the 5 landmarks with a similarity transform (rotation, uniform scale,
translation; ``cv2.estimateAffinePartial2D``) onto :data:`ARCFACE_TEMPLATE`, the 112×112
reference used by ArcFace/InsightFace-style face-recognition models.
"""

from __future__ import annotations

import cv2
import numpy as np

from .types import Faces

#: Landmark positions ``(5, 2)`` (x, y) in a 112×112 crop, order ``types.LANDMARK_NAMES``
#: (left/right as seen in the image); InsightFace's ``arcface_dst``.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def crop_box(image: np.ndarray, box: np.ndarray, size: int = 160, margin: float = 0) -> np.ndarray:
    """The region of ``box`` plus a margin, resized to a ``(size, size)`` square.

    As facenet-pytorch's ``extract_face``: the margin is added,
    the region is clamped to the image (not padded), cut with integer (truncated) bounds and
    resized with area interpolation, so the aspect ratio follows the box (MTCNN's boxes are
    nearly square).

    Args:
        image: ``(H, W, 3)`` uint8 (any channel order: kept as it is; ``(H, W)`` gray works
            too and gives ``(size, size)``).
        box: ``(4,)`` ``x1, y1, x2, y2`` in pixels of ``image``, origin top-left, x to the
            right, y down — one row of :attr:`Faces.boxes <livefaces.Faces>` (float).
        size: side of the output square, pixels.
        margin: border in pixels **of the output crop** (facenet-pytorch's ``margin``):
            ``margin=32, size=160`` leaves about 16 output pixels of context on each side.

    Returns:
        ``(size, size, 3)`` uint8, a new array; all black if the box lies outside the image.
    """
    h, w = image.shape[:2]
    bw, bh = float(box[2] - box[0]), float(box[3] - box[1])
    mx = margin * bw / (size - margin) if margin else 0.0
    my = margin * bh / (size - margin) if margin else 0.0
    x1 = int(max(box[0] - mx / 2, 0))
    y1 = int(max(box[1] - my / 2, 0))
    x2 = int(min(box[2] + mx / 2, w))
    y2 = int(min(box[3] + my / 2, h))
    if x2 <= x1 or y2 <= y1:  # a box entirely outside the image (cannot come from MTCNN)
        return np.zeros((size, size, 3), np.uint8)
    return cv2.resize(image[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA)


def crop_region(image: np.ndarray, face: Faces, margin: float) -> tuple[np.ndarray, Faces]:
    """The region of ``image`` around one face (``face``: one row) and the face in the
    region's pixels.

    The face's box is grown by ``margin`` times its larger side on every side and clipped to
    the image; no resizing. Returns a new contiguous uint8 array (a copy, so the frame may be
    dropped) and the face moved by the region's top-left corner.
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in face.boxes[0])
    m = margin * max(x2 - x1, y2 - y1)
    a, b = int(max(0, x1 - m)), int(max(0, y1 - m))
    crop = image[b:int(min(h, y2 + m + 1)), a:int(min(w, x2 + m + 1))].copy()
    off = np.array([a, b], np.float32)
    return crop, Faces(face.boxes - np.tile(off, 2), face.scores.copy(), face.landmarks - off)


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity transform (rotation, uniform scale, translation; no
    reflection) taking points ``src`` ``(K, 2)`` onto ``dst`` ``(K, 2)``, as a ``(2, 3)``
    float64 matrix (Umeyama's closed form, all points weighted alike, as dlib's
    ``find_similarity_transform``). Degenerate ``src`` (all points equal) gives a translation.
    """
    a = np.asarray(src, np.float64).reshape(-1, 2)
    b = np.asarray(dst, np.float64).reshape(-1, 2)
    ma, mb = a.mean(0), b.mean(0)
    za = (a[:, 0] - ma[0]) + 1j * (a[:, 1] - ma[1])
    zb = (b[:, 0] - mb[0]) + 1j * (b[:, 1] - mb[1])
    norm = float((np.abs(za) ** 2).sum())
    c = complex((np.conj(za) * zb).sum() / norm) if norm > 1e-12 else 1 + 0j
    rot = np.array([[c.real, -c.imag], [c.imag, c.real]])
    return np.hstack([rot, (mb - rot @ ma)[:, None]])


def alignment_matrix(landmarks: np.ndarray, size: int = 112, margin: float = 0) -> np.ndarray:
    """The ``(2, 3)`` similarity transform taking ``landmarks`` ``(5, 2)`` onto the template
    scaled to ``size`` pixels, shrunk by ``margin`` output pixels (``margin/2`` on each side)."""
    dst = ARCFACE_TEMPLATE * ((size - margin) / 112.0) + margin / 2.0
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), dst, method=cv2.LMEDS)
    if matrix is None:  # degenerate landmarks (all equal): fall back to least squares
        matrix = similarity_matrix(landmarks, dst)
    return matrix


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112, margin: float = 0) -> np.ndarray:
    """A face crop aligned by its 5 landmarks, as face-recognition models expect.

    A similarity transform (rotation, uniform scale, translation; robust LMedS fit) maps
    ``landmarks`` onto :data:`ARCFACE_TEMPLATE` scaled to ``size``, and the image is warped
    with bilinear interpolation: eyes level, at fixed places. ``size=112, margin=0`` is
    exactly the ArcFace/InsightFace input.

    Args:
        image: ``(H, W, 3)`` uint8 (channel order kept; RGB in livefaces).
        landmarks: ``(5, 2)`` float ``(x, y)`` in pixels of ``image`` (origin top-left), order
            left eye, right eye, nose, mouth left, mouth right (left/right as seen in the
            image; :data:`livefaces.LANDMARK_NAMES`) — one entry of
            :attr:`Faces.landmarks <livefaces.Faces>`.
        size: side of the output square, pixels.
        margin: output pixels of extra context, ``margin / 2`` per side (the template is
            shrunk into ``size - margin`` pixels).

    Returns:
        ``(size, size, 3)`` uint8, a new array; parts outside ``image`` are black.
        :func:`alignment_matrix` gives the ``(2, 3)`` transform (image -> crop pixels) to map
        other points, e.g. ``cv2.transform(points[None], matrix)[0]``.
    """
    matrix = alignment_matrix(landmarks, size, margin)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def warp_chip(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """``image`` warped by ``matrix`` ``(2, 3)`` (image -> chip pixels) into a ``(size, size)``
    chip, bilinear, anti-aliased: where the chip shrinks the face by more than 2, the region
    is first halved with :func:`cv2.pyrDown` (as dlib's chip extraction does), so a large face
    does not alias. Parts outside ``image`` are black. Returns a new array."""
    m = np.asarray(matrix, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        # the image region the chip covers, with a little border for the filters
        inv = cv2.invertAffineTransform(m)
        corners = cv2.transform(np.array([[[0, 0], [size, 0], [0, size], [size, size]]], np.float64), inv)[0]
        h, w = image.shape[:2]
        x0 = int(max(np.floor(corners[:, 0].min()) - 4, 0))
        y0 = int(max(np.floor(corners[:, 1].min()) - 4, 0))
        x1 = int(min(np.ceil(corners[:, 0].max()) + 4, w))
        y1 = int(min(np.ceil(corners[:, 1].max()) + 4, h))
        if x1 > x0 and y1 > y0:
            region = image[y0:y1, x0:x1]
            m = m @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)  # region -> chip
            while scale < 0.5 and min(region.shape[:2]) >= 4:
                region = cv2.pyrDown(region)
                m = m @ np.array([[2, 0, 0], [0, 2, 0], [0, 0, 1]], np.float64)  # pyrDown: u = x / 2
                scale *= 2
            image = region
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
