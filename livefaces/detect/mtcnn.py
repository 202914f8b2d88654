"""The MTCNN cascade (P-Net → R-Net → O-Net) on ONNX Runtime.

Follows facenet-pytorch's ``detect_face`` step by step, to its arithmetic (see ``boxes.py``:
torch's ``interpolate(mode="area")`` bins computed exactly from a summed-area table, float32
window arithmetic). The differences are in *how* it runs: P-Net in exact row bands that share
calls between same-size images, R-/O-Net crops of all images in small batches (both sized so
intermediate maps stay in the CPU caches), and on the CPU the work split over two lanes.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import cv2
import numpy as np

from ..errors import InputError
from ..geometry import iou_matrix
from ..types import Faces
from . import boxes as bx
from .options import FACTOR, MIN_FACE_SIZE, THRESHOLDS, check_settings
from .runtime import Session, choose_providers, load_sessions

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

log = logging.getLogger(__name__)

#: Crops per R-Net/O-Net call: small batches keep each layer's output in the CPU caches
#: (one core: R-Net on 800 crops 45 -> 34 ms in calls of 16-32; O-Net on 64, 22 -> 16 ms in 8-16s).
#: With the leaner export nets (torch_nets.export_net) R-Net's calls of 32 beat 16 (2 lanes,
#: Intel Xeon, video frames: 1080p 99.1 -> 95.7 ms, 720p 54.0 -> 51.6, 480p 22.7 -> 21.7;
#: 48: the same as 32); O-Net 8 vs 12 vs 16: equal.
CROPS_PER_CALL = {"rnet": 32, "onet": 8}
#: P-Net output cells per call (rows × width × images): small enough for the caches.
PNET_BAND_CELLS = 16384
#: Fewest output rows in a band (a band's input overlaps its neighbour's by 10 rows).
PNET_MIN_BAND_ROWS = 16
#: A refinement (:meth:`Detector.refine`) first gives R-Net squares of the predicted face's size
#: at these (dx, dy) shifts in face sizes: the prediction and four neighbours; the best goes
#: through O-Net (cheap: most tracked faces are found so) ...
REFINE_SHIFTS = ((0.0, 0.0), (0.15, 0.0), (-0.15, 0.0), (0.0, 0.15), (0.0, -0.15))
#: ... and where O-Net rejects that, or the face it gives overlaps the prediction by less than
#: REFINE_AGREE (tier 1's squares then fit the face badly: its box is not the detector's), it
#: runs the frame's own cascade on a square of REFINE_REGION face sizes around the prediction
#: (a face that moved off the motion model's prediction is still caught) ...
REFINE_AGREE = 0.5
REFINE_REGION = 2.6
#: ... over the pyramid levels of faces from REFINE_SIZES[0] to REFINE_SIZES[1] times the
#: predicted size (a face that approaches, recedes or turns is still caught).
REFINE_SIZES = (0.35, 2.0)
#: ... and O-Net sees only R-Net's candidates that overlap the predicted box by at least this
#: IoU (O-Net is the costly net; the others are neighbours, which other tracks look after).
REFINE_OVERLAP = 0.2
#: Below twice this many crops, one lane does them all (splitting costs more than it saves).
MIN_CROPS_PER_LANE = 8


#: Channel orders :func:`as_rgb` (and every engine's ``detect``/``detect_batch``) accept.
COLORS = ("rgb", "bgr")

#: What the detectors take: a numpy array or a PIL image (PIL stays an optional import).
ImageInput: TypeAlias = "np.ndarray | PILImage"


def _dtype_hint(image: np.ndarray) -> str:
    """Why a non-uint8 array is refused and the exact line that converts it."""
    dt = image.dtype
    if np.issubdtype(dt, np.floating):
        finite = image[np.isfinite(image)] if image.size else image
        if finite.size == 0:
            return f"{dt} with no finite values; give a (H, W, 3) uint8 RGB image"
        lo, hi = float(finite.min()), float(finite.max())
        nan = "; it has NaN/inf values: replace them first (np.nan_to_num)" \
            if finite.size != image.size else ""
        if lo >= 0.0 and hi <= 1.0:
            return (f"{dt} with values in [{lo:g}, {hi:g}], which looks like 0-1: convert with "
                    f"(img * 255).round().clip(0, 255).astype(np.uint8){nan}")
        if lo >= 0.0 and hi <= 255.0:
            return (f"{dt} with values in [{lo:g}, {hi:g}], which looks like 0-255: convert with "
                    f"img.round().clip(0, 255).astype(np.uint8){nan}")
        return (f"{dt} with values in [{lo:g}, {hi:g}], neither 0-1 nor 0-255: scale to 0-255, "
                f"then .round().clip(0, 255).astype(np.uint8){nan}")
    if dt == np.uint16:
        return ("uint16 (0-65535, e.g. a 16-bit PNG or camera frame): scale to 8 bits with "
                "(img >> 8).astype(np.uint8) or (img / 257).round().astype(np.uint8)")
    if dt == np.bool_:
        return "bool: give an image, e.g. img.astype(np.uint8) * 255"
    if np.issubdtype(dt, np.integer):
        lo, hi = (int(image.min()), int(image.max())) if image.size else (0, 0)
        if 0 <= lo and hi <= 255:
            return f"{dt} with values in [{lo}, {hi}]: convert with img.astype(np.uint8)"
        return (f"{dt} with values in [{lo}, {hi}], outside 0-255: scale to 0-255, then "
                f".astype(np.uint8)")
    return f"{dt}; give a (H, W, 3) uint8 RGB image"


def as_rgb(image: object, name: str = "image", color: str = "rgb") -> np.ndarray:
    """Check and convert a caller's image to a C-contiguous ``(H, W, 3)`` uint8 RGB array.

    Args:
        image: a numpy array ``(H, W, 3)`` (colour, channel order ``color``), ``(H, W, 4)``
            (alpha dropped), ``(H, W)`` or ``(H, W, 1)`` (grayscale), dtype uint8 0-255; or a
            PIL image of any mode (converted with ``image.convert("RGB")``; 16-bit and float
            modes are refused like the matching numpy arrays).
        name: what to call the image in error messages.
        color: ``"rgb"`` (default; PyAV, PIL, imageio, scikit-image, matplotlib) or ``"bgr"``
            (OpenCV's ``cv2.imread`` / ``cv2.VideoCapture`` frames; ``(H, W, 4)`` is then BGRA).
            Passing BGR as RGB is not an error anyone can detect: it finds different faces.

    Raises :class:`InputError` for anything else, with the exact conversion for float, uint16
    and other integer arrays.
    """
    if color not in COLORS:
        raise InputError(f"color must be 'rgb' or 'bgr', got {color!r}")
    pil = sys.modules.get("PIL.Image")  # a PIL image means PIL is imported already
    if pil is not None and isinstance(image, pil.Image):
        if color != "rgb":
            raise InputError(f"{name} is a PIL image, which is always RGB; leave color='rgb'")
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            image = np.asarray(image)  # refused below with the right hint
        else:
            image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name} must be a numpy array (H, W, 3) uint8 RGB or a PIL image, "
                         f"got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"{name} must be uint8 (0-255), got {_dtype_hint(image)}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB if color == "bgr" else cv2.COLOR_RGBA2RGB
        image = cv2.cvtColor(np.ascontiguousarray(image), code)
    elif image.ndim == 3 and image.shape[2] == 3:
        if color == "bgr":
            image = image[:, :, ::-1]
    else:
        raise InputError(f"{name} must have shape (H, W, 3), (H, W, 4) or (H, W); got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"{name} is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


@dataclass
class _Image:
    """Per-image state through the cascade."""

    height: int
    width: int
    boxes: np.ndarray  # (K, 5+) candidates, x1 y1 x2 y2 score ...
    table: np.ndarray  # summed-area table: the pyramid and the crops are cut from it
    min_face: float  # smallest face looked for (the pyramid's first level)
    scales: list[float] | None = None  # P-Net's pyramid (None: from min_face down to 12 px)
    keep: int | None = None  # O-Net sees at most this many of R-Net's best candidates
    window: tuple[float, float, float, float] | None = None  # P-Net only here (x0 y0 x1 y1)
    target: np.ndarray | None = None  # refine: O-Net only for candidates overlapping this box


def _faces(st: _Image, points: np.ndarray) -> Faces:
    """The faces an image's state holds after O-Net, highest score first."""
    if len(st.boxes) == 0:
        return Faces.empty()
    order = np.argsort(-st.boxes[:, 4], kind="stable")
    return Faces(np.ascontiguousarray(st.boxes[order, :4], np.float32),
                 np.ascontiguousarray(st.boxes[order, 4], np.float32),
                 np.ascontiguousarray(points[order], np.float32))


def _shifted(faces: Faces, offset: np.ndarray) -> Faces:
    """``faces`` found in a region whose top-left corner is at ``offset`` of the frame."""
    if len(faces) == 0:
        return faces
    return Faces((faces.boxes + np.tile(offset, 2)).astype(np.float32), faces.scores,
                 (faces.landmarks + offset).astype(np.float32))


def _run_all(tasks: list[Callable[[], None]]) -> None:
    for task in tasks:
        task()


class Detector:
    """MTCNN face detector with facenet-pytorch's weights, run by ONNX Runtime.

    Args:
        min_face_size: smallest face to look for, in pixels of the input image.
        thresholds: score thresholds of P-Net, R-Net and O-Net.
        factor: pyramid scale step (0 < factor < 1); larger is slower and finds more.
        providers: ``None`` picks CUDA when onnxruntime-gpu and a GPU are there, else CPU;
            ``"cpu"`` or ``"cuda"`` (or ONNX Runtime provider names) force one — a forced
            provider that is missing raises :class:`~livefaces.errors.ProviderError`.
        threads: ONNX Runtime intra-op threads (``None``: ONNX Runtime's default, all cores).

    Example::

        det = Detector()
        faces = det.detect(rgb)                  # rgb: (H, W, 3) uint8, or a PIL image
        faces = det.detect(frame, color="bgr")   # a frame from OpenCV
        for box, score in zip(faces.boxes, faces.scores): ...
    """

    def __init__(
        self,
        min_face_size: float = MIN_FACE_SIZE,
        thresholds: Sequence[float] = THRESHOLDS,
        factor: float = FACTOR,
        providers: str | Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        thresholds = check_settings(min_face_size, thresholds, factor)
        self.min_face_size = float(min_face_size)
        self.thresholds = thresholds
        self.factor = float(factor)
        self.providers = choose_providers(providers)
        # On the CPU the work of a frame runs in two lanes (threads), each preparing its own
        # inputs in numpy and running its own network calls on a single-threaded session:
        # both cores stay busy through the numpy parts too, which ONNX Runtime's own
        # intra-op threads cannot do. A/B in one process, 2 cores: 1080p 192 -> 177 ms,
        # 720p 103 -> 90 ms per frame against one lane with a 2-thread ONNX Runtime.
        cores = threads or os.cpu_count() or 1
        on_cpu = self.providers[0] == "CPUExecutionProvider"
        self._lanes = 2 if on_cpu and cores >= 2 else 1
        self._nets: dict[str, Session] = load_sessions(self.providers,
                                                       threads=max(1, cores // self._lanes))
        self.provider = self._nets["pnet"].providers[0]
        self._pool = (ThreadPoolExecutor(max_workers=self._lanes - 1, thread_name_prefix="livefaces-lane")
                      if self._lanes > 1 else None)
        log.info("detector: %d lane(s), %d ONNX Runtime thread(s) each", self._lanes,
                 max(1, cores // self._lanes))
        self.detect(np.zeros((64, 64, 3), np.uint8))  # warm-up: first call allocates

    def __repr__(self) -> str:
        return (f"Detector(min_face_size={self.min_face_size:g}, thresholds={self.thresholds}, "
                f"factor={self.factor:g}, provider={self.provider!r})")

    # -- public API ---------------------------------------------------------------------------
    def detect(self, image: ImageInput, *, color: str = "rgb") -> Faces:
        """Faces in one image: ``(H, W, 3)`` uint8 RGB, or a PIL image, or ``color="bgr"``
        for OpenCV frames; see :func:`as_rgb` for every accepted layout.

        Returns boxes ``(N, 4)`` xyxy, scores ``(N,)``, landmarks ``(N, 5, 2)`` in pixels of
        ``image``, highest score first; :meth:`Faces.empty` when there are none.
        """
        return self.detect_batch([image], color=color)[0]

    def detect_batch(self, images: Sequence[ImageInput], *, color: str = "rgb") -> list[Faces]:
        """Faces in each of ``images`` (sizes may differ); one :class:`Faces` per image.

        ``color`` (``"rgb"`` or ``"bgr"``) applies to every image. Network calls are shared:
        P-Net bands of same-size images go in one call, and R-/O-Net batches mix the crops of
        all images.
        """
        states = []
        for i, img in enumerate(images):
            px = as_rgb(img, name=f"images[{i}]" if len(images) > 1 else "image", color=color)
            states.append(_Image(px.shape[0], px.shape[1], np.zeros((0, 9), np.float32),
                                 bx.integral(px), self.min_face_size))
        return self._cascade(states)

    def refine(self, items: Sequence[tuple[np.ndarray, Any]]) -> list[Faces]:
        """Look for tracked faces where they are expected: the live pipeline's refinement of
        tracked faces between full detections.

        ``items``: ``(rgb, (x1, y1, x2, y2))`` each, an ``(H, W, 3)`` uint8 RGB frame (not
        checked: the pipeline's own frames) and where a tracked face is expected on it.
        Two tiers, each batched over all items:

        1. :data:`REFINE_SHIFTS` squares of the box's size through R-Net, the best through
           O-Net (as P-Net's proposals would go): most tracked faces are found so.
        2. Where O-Net rejects that, or its face overlaps the box by less than
           :data:`REFINE_AGREE`, the frame's own cascade: P-Net's cells in a square of
           :data:`REFINE_REGION` face sizes around the box, on the pyramid levels of faces of
           :data:`REFINE_SIZES` times its size, R-Net and O-Net on the frame's crops
           (:meth:`_refine_search`): a face that moved further, approaches, recedes or turns
           is found as a full detection finds it.

        Returns per item the faces found there (box, score, 5 landmarks in pixels of the
        frame; best first), empty when the networks find none (the face left, turned away or
        is hidden).
        """
        out = self._refine_at(items)
        again = [i for i, (f, (_, box)) in enumerate(zip(out, items)) if len(f) == 0 or
                 iou_matrix(np.asarray(box[:4], np.float32)[None], f.boxes[:1])[0, 0] < REFINE_AGREE]
        if again:
            for i, f in zip(again, self._refine_search([items[i] for i in again])):
                out[i] = f
        return out

    def _refine_at(self, items: Sequence[tuple[np.ndarray, Any]]) -> list[Faces]:
        """Tier 1 of :meth:`refine`: shifted squares of the predicted size."""
        states, offsets = [], []
        for rgb, box in items:
            h, w = rgb.shape[:2]
            x1, y1, x2, y2 = (float(v) for v in box[:4])
            size = max(x2 - x1, y2 - y1, 12.0)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            a, b = max(0, int(cx - size)), max(0, int(cy - size))
            c, d = min(w, int(np.ceil(cx + size))), min(h, int(np.ceil(cy + size)))
            if c - a < 12 or d - b < 12:  # off the frame
                states.append(_Image(1, 1, np.zeros((0, 5), np.float32),
                                     bx.integral(np.zeros((1, 1, 3), np.uint8)), size))
                offsets.append(np.zeros(2, np.float32))
                continue
            cand = np.array([[cx + dx * size - size / 2 - a, cy + dy * size - size / 2 - b,
                              cx + dx * size + size / 2 - a, cy + dy * size + size / 2 - b, 1.0]
                             for dx, dy in REFINE_SHIFTS], np.float32)
            states.append(_Image(d - b, c - a, cand, bx.integral(rgb[b:d, a:c]), size, keep=1))
            offsets.append(np.array([a, b], np.float32))
        if not states:
            return []
        self._refine(states, "rnet", 24, self.thresholds[1])
        points = self._refine(states, "onet", 48, self.thresholds[2])
        return [_shifted(_faces(st, pts), off) for st, pts, off in zip(states, points, offsets)]

    def _refine_search(self, items: Sequence[tuple[np.ndarray, Any]]) -> list[Faces]:
        """Tier 2 of :meth:`refine`: the frame's own cascade, P-Net restricted to a window
        around each box and to the pyramid levels of faces of :data:`REFINE_SIZES` times its
        size. The window's P-Net cells are exactly those of a full detection (P-Net is
        convolutional and the window's edges fall on its stride), and R-Net and O-Net crop the
        frame itself, so a face found here is, to the candidates outside the window, the face
        a full detection finds."""
        states = []
        tables: dict[int, np.ndarray] = {}  # one summed-area table per frame
        lo, hi = REFINE_SIZES
        for rgb, box in items:
            h, w = rgb.shape[:2]
            x1, y1, x2, y2 = (float(v) for v in box[:4])
            size = max(x2 - x1, y2 - y1, 12.0)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            half = REFINE_REGION * size / 2
            levels = [s for s in bx.pyramid_scales(h, w, self.min_face_size, self.factor)
                      if lo * size <= 12.0 / s <= hi * size]
            table = tables.get(id(rgb))
            if table is None:
                table = tables[id(rgb)] = bx.integral(rgb)
            states.append(_Image(h, w, np.zeros((0, 9), np.float32), table, size, levels,
                                 window=(cx - half, cy - half, cx + half, cy + half),
                                 target=np.array([x1, y1, x2, y2], np.float32)))
        return self._cascade(states)

    def _cascade(self, states: list[_Image]) -> list[Faces]:
        if not states:
            return []
        self._stage1(states)
        self._refine(states, "rnet", 24, self.thresholds[1])
        points = self._refine(states, "onet", 48, self.thresholds[2])
        return [_faces(st, pts) for st, pts in zip(states, points)]

    def _run_lanes(self, lanes: list[list[Callable[[], None]]]) -> None:
        """Run each lane's tasks in order; lane 0 on this thread, the others on the pool."""
        pending = [self._pool.submit(_run_all, tasks) for tasks in lanes[1:] if tasks] if self._pool else []
        _run_all(lanes[0])
        for f in pending:
            f.result()

    # -- stages -------------------------------------------------------------------------------
    def _stage1(self, states: list[_Image]) -> None:
        """P-Net over the pyramid: candidates per image after NMS 0.5 per level, 0.7 overall.

        Same-size images of a batch share P-Net calls.
        """
        pyramids = [s.scales if s.scales is not None
                    else bx.pyramid_scales(s.height, s.width, s.min_face, self.factor) for s in states]
        jobs: list[tuple[int, int, int, list[int]]] = []  # level, h, w, members
        for level in range(max((len(p) for p in pyramids), default=0)):
            groups: dict[tuple[int, int], list[int]] = {}
            for i, (st, scales) in enumerate(zip(states, pyramids)):
                if level < len(scales) and st.window is None:
                    groups.setdefault(bx.scaled_size(st.height, st.width, scales[level]), []).append(i)
            jobs += [(level, h, w, members) for (h, w), members in groups.items()]
        # Each level runs in bands of output rows: P-Net's intermediate maps of a band stay in
        # the CPU caches (level 0 of 1080p alone: 65 -> 32 ms on one core), and bands spread
        # evenly over the lanes. Bands are exact (see bx.pnet_band_rows).
        bands: dict[tuple[int, int, int], np.ndarray] = {}  # (image, level, band row) -> boxes

        def band_job(level: int, h: int, w: int, members: list[int], r0: int, r1: int,
                     c0: int = 0, c1: int | None = None) -> None:
            """Output rows [r0, r1) of the level (and only columns [c0, c1): a refinement's
            window) for every member image."""
            a, b = bx.pnet_band_rows(r0, r1, h)
            cols = None if c1 is None else (*bx.pnet_band_rows(c0, c1, w), w)
            width = w if cols is None else cols[1] - cols[0]
            batch = np.empty((len(members), b - a, width, 3), np.float32)
            for j, i in enumerate(members):
                bx.area_resize(states[i].table, h, batch[j], (a, b), cols)
            prob, reg = self._nets["pnet"].run(batch)
            for j, i in enumerate(members):
                bands[i, level, r0] = bx.generate_boxes(prob[j, : r1 - r0], reg[j, :, : r1 - r0],
                                                        pyramids[i][level], self.thresholds[0], r0, c0)

        tasks: list[tuple[int, Callable[[], None]]] = []  # (cost, task)
        for level, h, w, members in jobs:
            out_h, out_w = bx.pnet_out_size(h, w)
            # Bands of at least PNET_MIN_BAND_ROWS rows (each repeats 5 rows of its neighbour's
            # input); small levels group several images into one call instead.
            rows = max(PNET_MIN_BAND_ROWS, -(-PNET_BAND_CELLS // max(1, out_w)))
            group = max(1, PNET_BAND_CELLS // max(1, min(rows, out_h) * out_w))
            for g in range(0, len(members), group):
                some = members[g:g + group]
                for r0 in range(0, out_h, rows):
                    r1 = min(out_h, r0 + rows)
                    tasks.append(((r1 - r0) * out_w * len(some),
                                  functools.partial(band_job, level, h, w, some, r0, r1)))
        for i, st in enumerate(states):  # refinement: P-Net's cells in a window of each level
            if st.window is None:
                continue
            x0, y0, x1, y1 = st.window
            for level, scale in enumerate(pyramids[i]):
                h, w = bx.scaled_size(st.height, st.width, scale)
                out_h, out_w = bx.pnet_out_size(h, w)
                # cells whose 12 px window overlaps the window
                r0, c0 = max(0, int(y0 * scale - 12) // 2), max(0, int(x0 * scale - 12) // 2)
                r1 = min(out_h, int(np.ceil(y1 * scale / 2)) + 1)
                c1 = min(out_w, int(np.ceil(x1 * scale / 2)) + 1)
                if r1 > r0 and c1 > c0:
                    tasks.append(((r1 - r0) * (c1 - c0), functools.partial(
                        band_job, level, h, w, [i], r0, r1, c0, c1)))
        # Largest first, each to the least loaded lane.
        lanes: list[list[Callable[[], None]]] = [[] for _ in range(self._lanes)]
        load = [0] * self._lanes
        for cost, task in sorted(tasks, key=lambda t: -t[0]):
            lane = load.index(min(load))
            load[lane] += cost
            lanes[lane].append(task)
        self._run_lanes(lanes)
        # Per image and level: bands in row order (the candidates' order, hence NMS ties, is
        # that of the whole map), then NMS 0.5.
        level_parts: dict[tuple[int, int], list[np.ndarray]] = {}
        for i, level, r0 in sorted(bands):
            level_parts.setdefault((i, level), []).append(bands[i, level, r0])
        found: dict[tuple[int, int], np.ndarray] = {}
        for key, band_boxes in level_parts.items():
            cand = np.concatenate(band_boxes)
            if len(cand):
                found[key] = cand[bx.nms(cand, cand[:, 4], 0.5)]
        for i, st in enumerate(states):
            parts = [found[i, lv] for lv in range(len(pyramids[i])) if (i, lv) in found]
            if not parts:
                st.boxes = np.zeros((0, 5), np.float32)
                continue
            cand = np.concatenate(parts)
            cand = cand[bx.nms(cand, cand[:, 4], 0.7)]
            st.boxes = bx.square(bx.regress_pnet(cand))

    def _refine(self, states: list[_Image], net: str, size: int, threshold: float) -> list[np.ndarray]:
        """R-Net (``size`` 24) or O-Net (48) on square crops of every candidate of every image.

        Returns per-image landmarks ``(K, 5, 2)`` (empty for R-Net).
        """
        windows = []
        for st in states:
            if net == "onet" and st.keep is not None and len(st.boxes) > st.keep:
                st.boxes = st.boxes[np.argsort(-st.boxes[:, 4], kind="stable")[:st.keep]]
            if net == "onet" and st.target is not None and len(st.boxes):
                st.boxes = st.boxes[iou_matrix(st.target[None], st.boxes[:, :4])[0] >= REFINE_OVERLAP]
            if len(st.boxes):
                win = bx.crop_windows(st.boxes, st.width, st.height)
                valid = (win[:, 2] > win[:, 0]) & (win[:, 3] > win[:, 1])
                st.boxes, win = st.boxes[valid], win[valid]
            else:
                win = np.zeros((0, 4), np.int64)
            windows.append(win)
        # Crops are cut in top-to-bottom order of their windows, not in candidate order:
        # overlapping candidates then read the same summed-area rows while they are still in
        # the CPU caches (R-Net's ~800 crops of a 1080p frame, one core, Intel Xeon:
        # 12.5 -> 10.6 ms). The outputs are put back in candidate order below.
        orders = [np.lexsort((w[:, 0], w[:, 1])) for w in windows]
        windows = [w[o] for w, o in zip(windows, orders)]
        counts = [len(w) for w in windows]
        total = sum(counts)
        points_out = [np.zeros((0, 5, 2), np.float32) for _ in states]
        if total == 0:
            for st in states:
                st.boxes = np.zeros((0, 5), np.float32)
            return points_out
        # Each lane cuts and runs a contiguous share of all crops (one call each, normally).
        crops = np.empty((total, size, size, 3), np.float32)
        owner = np.repeat(np.arange(len(states)), counts)
        offset = np.concatenate([[0], np.cumsum(counts)])
        n_lanes = self._lanes if total >= 2 * MIN_CROPS_PER_LANE else 1
        bounds = [total * k // n_lanes for k in range(n_lanes + 1)]
        step = CROPS_PER_CALL[net]
        chunks = [(k, min(k + step, hi)) for lo, hi in zip(bounds, bounds[1:]) for k in range(lo, hi, step)]
        outs: dict[int, list[np.ndarray]] = {}

        def crop_job(a: int, b: int) -> None:
            for i in range(int(owner[a]), int(owner[b - 1]) + 1):  # owner is sorted
                lo, hi = max(a, offset[i]), min(b, offset[i + 1])
                if hi <= lo:
                    continue
                bx.area_crops(states[i].table, windows[i][lo - offset[i]:hi - offset[i]], size, crops[lo:hi])
            outs[a] = self._nets[net].run(crops[a:b])

        lanes: list[list[Callable[[], None]]] = [[] for _ in range(self._lanes)]
        for a, b in chunks:
            lanes[min(n_lanes - 1, a * n_lanes // total)].append(functools.partial(crop_job, a, b))
        self._run_lanes(lanes)
        outs_list = [outs[a] for a, _ in chunks]
        # back to candidate order: crop k of image i is its candidate offset[i] + orders[i][k]
        position = np.concatenate([o + offset[i] for i, o in enumerate(orders)])

        def gather(k: int) -> np.ndarray:
            cut = np.concatenate([o[k] for o in outs_list])
            out = np.empty_like(cut)
            out[position] = cut
            return out

        prob, reg = gather(0), gather(1)
        pts = gather(2) if net == "onet" else None
        start = 0
        for idx, (st, n) in enumerate(zip(states, counts)):
            sl = slice(start, start + n)
            start += n
            keep = prob[sl] > threshold
            boxes = st.boxes[keep, :4].copy()
            boxes = np.concatenate([boxes, prob[sl][keep, None]], axis=1)
            r = reg[sl][keep]
            if net == "rnet":
                pick = bx.nms(boxes, boxes[:, 4], 0.7)
                st.boxes = bx.square(bx.regress(boxes[pick], r[pick]))
            else:
                assert pts is not None
                p = pts[sl][keep]
                w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
                h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
                landmarks = np.stack([w * p[:, :5] + boxes[:, 0:1] - 1,
                                      h * p[:, 5:] + boxes[:, 1:2] - 1], axis=2)
                boxes = bx.regress(boxes, r)
                pick = bx.nms(boxes, boxes[:, 4], 0.7, mode="min")
                st.boxes = boxes[pick]
                points_out[idx] = landmarks[pick].astype(np.float32)
        return points_out
