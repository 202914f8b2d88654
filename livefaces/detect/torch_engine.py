"""The MTCNN cascade in PyTorch, the whole batch on one device (CPU or CUDA).

For machines with torch + CUDA but no ``onnxruntime-gpu``. Every stage stays on the device:
pyramid, P-Net, thresholding, box generation, grouped NMS (no torchvision), square/pad,
R-Net/O-Net crops and the final NMS. The pyramid levels and the crops are cut from one integer
summed-area table of the frames (exact area averaging over ``interpolate(mode="area")``'s bins,
the ONNX engine's ``boxes.area_resize``/``area_crops`` arithmetic), so each frame is read once.
The nets are :mod:`torch_nets`' originals (see :func:`load_torch_nets` for why not the export's).

**Host synchronisations.** Data-dependent sizes need the host to wait for the device; the
cascade is laid out so that one same-size batch costs a fixed number of such waits, whatever
the number of pyramid levels, frames or candidates (:data:`SYNCS_PER_BATCH`): one ``nonzero``
over every level of every frame at once, then one host read (:func:`_read`, a small int64
vector) per data-dependent step: the candidate counts per (frame, level) for the level NMS, the
survivors per frame after it, after the frame NMS, after R-Net, and the final boxes. Each
grouped NMS plans its padded layout on the host from counts it already has, and resolves its
blocks by a fixed number of fixed-point rounds (:data:`NMS_ROUNDS`) whose convergence is
checked on the device and read with the next host read; in the rare case it had not
converged, the batch is run again with exact (per-round checked) NMS, the same result.
No boolean-mask indexing, ``unique``, ``repeat_interleave`` or ``.item()`` on the device.

**Fidelity on a GPU.** Convolutions and matmuls run in full fp32 on CUDA (TF32 off while the
engine runs, restored after: :func:`_full_fp32`); score ties in every NMS are broken by the
candidates' order (stable sorts), as the ONNX engine's NMS does, and P-Net's softmax is
rounded once from float64 so that saturated scores tie where ONNX Runtime's do. Frames go up
to CUDA through one reused pinned staging buffer and one non-blocking copy per batch.

Weights come from ``models/mtcnn_weights.npz`` (facenet-pytorch's state dicts, shipped and
checksummed beside the ONNX files), so facenet-pytorch is not needed at run time. torch is imported here and
nowhere else at run time; ``import livefaces`` never needs it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, ProviderError
from ..types import Faces
from . import boxes as bx
from .mtcnn import ImageInput, as_rgb
from .options import FACTOR, MIN_FACE_SIZE, THRESHOLDS, check_settings

log = logging.getLogger(__name__)

#: Upper bound on elements of the IoU blocks built by the grouped NMS (bounds memory).
NMS_BLOCK_ELEMENTS = 1 << 24
#: Fixed-point rounds per NMS block before the (deferred) convergence check. A round settles
#: one more link of the longest chain "a suppresses b suppresses c ..." inside a block.
NMS_ROUNDS = 16
#: Largest column block of the grouped NMS: the rounds cost ~ boxes x block per group.
NMS_BLOCK = 1024
#: Host waits per same-size batch: one ``nonzero`` and five host reads (see the module text).
SYNCS_PER_BATCH = 6
#: The profiler label of :func:`_read`, the engine's one way to bring device data to the host.
HOST_READ = "livefaces::host_read"
#: Operators that make the host wait for a CUDA device (counted by tests/test_torch_gpu.py and
#: scripts/gpu_check.py); ``aten::index`` with a boolean mask shows up as ``aten::nonzero``.
SYNC_OPS = ("aten::nonzero", "aten::_local_scalar_dense", "aten::equal", "aten::masked_select",
            "aten::unique_consecutive", "aten::_unique2", "aten::unique_dim",
            "aten::repeat_interleave", "aten::bincount", HOST_READ)


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ProviderError(
            "the torch engine needs PyTorch: install torch (a CUDA build for GPUs, see "
            "https://pytorch.org/get-started/locally/), or use --engine onnx"
        ) from e
    return torch


def load_torch_nets(directory: Path | None = None, *, export: bool = False):  # type: ignore[no-untyped-def]
    """The three nets (NHWC 0-255 in, face probability out) with facenet-pytorch's weights
    from ``models/mtcnn_weights.npz``, eval mode, on CPU: the ``*Wrapped`` originals (P-Net's
    softmax ``precise``), or, ``export=True``, :func:`torch_nets.export_net`'s (what is
    exported to ONNX). Both give the same faces (tests/test_torch_gpu.py); the engine runs the
    originals: in torch eager the export nets' ONNX Runtime rewrites (PReLU as two
    convolutions + ReLU + add) cost more than the passes they save (1080p, 4 frames, one
    core: 590-680 vs 920-940 ms of CPU per frame)."""
    _torch()
    from . import torch_nets as tn
    from .runtime import models_dir

    path = (directory or models_dir()) / "mtcnn_weights.npz"
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall livefaces or run scripts/export_onnx.py")
    try:
        pnet, rnet, onet = tn.load_nets_npz(str(path))
    except Exception as e:  # noqa: BLE001 - a damaged file: zip/npz/state-dict errors
        raise ModelError(f"cannot load {path}: {e}; reinstall livefaces") from e
    if export:
        nets = {"pnet": tn.export_net(pnet), "rnet": tn.export_net(rnet), "onet": tn.export_net(onet)}
        # P-Net's thousands of cells are where saturated scores tie; a correctly rounded
        # sigmoid there agrees with ONNX Runtime's (tests/test_engines.py's shared images).
        # R-Net's and O-Net's float32 sigmoid already agree with it (rounding them too made
        # one image of that set differ).
        nets["pnet"].precise = True  # type: ignore[assignment]
        return nets
    nets = {"pnet": tn.PNetWrapped(pnet).eval(), "rnet": tn.RNetWrapped(rnet).eval(),
            "onet": tn.ONetWrapped(onet).eval()}
    nets["pnet"].precise = True  # type: ignore[assignment]
    return nets


@contextlib.contextmanager
def _full_fp32(device: Any) -> Iterator[None]:
    """Convolutions and matmuls in full fp32 on CUDA while the block runs (torch's default
    lets cuDNN use TF32, 10-bit mantissas, which moves scores near a threshold); the previous
    settings are restored after. Process-wide flags: another thread's CUDA work in the same
    moment runs in fp32 too. Nothing to do on the CPU."""
    if getattr(device, "type", "cpu") != "cuda":
        yield
        return
    torch = _torch()
    conv = getattr(torch.backends.cudnn, "conv", None)
    matmul = torch.backends.cuda.matmul
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9: per-operator API
        saved = conv.fp32_precision, matmul.fp32_precision
        conv.fp32_precision = matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = saved
        return
    old = torch.backends.cudnn.allow_tf32, matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, matmul.allow_tf32 = old


def _read(*tensors):  # type: ignore[no-untyped-def]
    """The host copies of small int64 device vectors, in one transfer (one host wait)."""
    torch = _torch()
    sizes = [int(t.numel()) for t in tensors]
    with torch.profiler.record_function(HOST_READ):
        flat = torch.cat([t.reshape(-1).to(torch.int64) for t in tensors]).cpu().numpy()
    out, at = [], 0
    for n in sizes:
        out.append(flat[at:at + n])
        at += n
    return out


def _upload(array: np.ndarray, device: Any):  # type: ignore[no-untyped-def]
    """A host-planned int64 table on the device without a host wait (pinned, non-blocking)."""
    torch = _torch()
    t = torch.from_numpy(np.ascontiguousarray(array, np.int64))
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t


class _NotConverged(Exception):
    """An NMS block needed more than :data:`NMS_ROUNDS` rounds: the batch is run exactly."""


def _buckets(counts: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Groups (indices into ``counts``) padded together, with their padded size: the groups
    in descending size, a new bucket when a group is under half the bucket's first, so that
    padding never more than doubles a group (the per-level sizes of stage 1 differ ~4x)."""
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    out: list[tuple[np.ndarray, int]] = []
    i = 0
    while i < len(order):
        m = int(counts[order[i]])
        j = i + 1
        while j < len(order) and 2 * int(counts[order[j]]) >= m:
            j += 1
        out.append((order[i:j], m))
        i = j
    return out


def _greedy(padded, valid, threshold: float, mode: str, exact: bool, flags: list):  # type: ignore[no-untyped-def]
    """Greedy NMS of ``(G, M)`` boxes laid out per group in score order (``padded`` ``(G, M, 4)``
    float64, ``valid`` ``(G, M)`` bool): ``(G, M)`` bool, kept.

    Blocks of ``B`` columns are resolved in order: first against the boxes already kept in
    earlier blocks, then inside the block by fixed-point iteration (``keep = not any(suppressor
    kept)``), whose unique fixed point is exactly the greedy result because suppression only
    points forward in score order. ``exact``: iterate to the fixed point, checking each round
    (host waits); else :data:`NMS_ROUNDS` rounds and a "not converged" flag appended to
    ``flags`` (a device bool, read later).
    """
    torch = _torch()
    dev = padded.device
    n_groups, m = valid.shape
    plus = 1.0 if mode == "min" else 0.0
    area = (padded[..., 2] - padded[..., 0] + plus) * (padded[..., 3] - padded[..., 1] + plus)

    def suppress(a_idx: slice, b_idx: slice, gs: slice):  # type: ignore[no-untyped-def]
        """``(g, |a|, |b|)`` bool: box ``a`` overlaps box ``b`` above the threshold."""
        pa, pb = padded[gs, a_idx, None, :], padded[gs, None, b_idx, :]
        w = torch.minimum(pa[..., 2], pb[..., 2]) - torch.maximum(pa[..., 0], pb[..., 0]) + plus
        h = torch.minimum(pa[..., 3], pb[..., 3]) - torch.maximum(pa[..., 1], pb[..., 1]) + plus
        w.clamp_(min=0)
        h.clamp_(min=0)
        inter = w * h
        aa, ab = area[gs, a_idx, None], area[gs, None, b_idx]
        if mode == "min":
            ov = inter / torch.minimum(aa, ab)
        else:
            ov = inter / (aa + ab - inter)
        return ov > threshold

    keep = valid.clone()
    block = max(1, min(m, int((NMS_BLOCK_ELEMENTS // max(1, n_groups)) ** 0.5), NMS_BLOCK))
    group_chunk = max(1, NMS_BLOCK_ELEMENTS // max(1, block * m))
    for g0 in range(0, n_groups, group_chunk):
        gs = slice(g0, min(n_groups, g0 + group_chunk))
        for c0 in range(0, m, block):
            cs = slice(c0, min(m, c0 + block))
            kb = keep[gs, cs]
            if c0 > 0:  # suppressed by boxes kept in earlier blocks
                prev = slice(0, c0)
                hit = suppress(prev, cs, gs) & keep[gs, prev, None]
                kb = kb & ~hit.any(dim=1)
            # inside the block: strictly upper-triangular suppression, fixed point
            s = suppress(cs, cs, gs)
            n = cs.stop - cs.start
            s &= torch.ones((n, n), dtype=torch.bool, device=dev).triu_(1)
            cur = kb
            if exact:
                for _ in range(n + 1):
                    nxt = kb & ~(s & cur[:, :, None]).any(dim=1)
                    if torch.equal(nxt, cur):
                        break
                    cur = nxt
            elif n > 1:
                # a round as a batched vector-matrix product: box b is hit when a kept a
                # suppresses it (0/1 values, exact in float32)
                sf = s.to(torch.float32)

                def hit(cur, sf=sf):  # type: ignore[no-untyped-def]
                    return torch.bmm(cur.to(torch.float32)[:, None, :], sf)[:, 0] > 0

                for _ in range(min(NMS_ROUNDS, n)):
                    cur = kb & ~hit(cur)
                if n > NMS_ROUNDS:
                    nxt = kb & ~hit(cur)
                    flags.append((nxt != cur).any())
                    cur = nxt
            keep[gs, cs] = cur
    return keep


def _nms_keep(boxes, scores, groups, counts: np.ndarray, threshold: float, mode: str = "union",  # type: ignore[no-untyped-def]
              valid=None, exact: bool = True, flags: list | None = None):
    """Greedy NMS within each group, on the tensors' device, without a host wait.

    Args:
        boxes: ``(K, 4)`` float ``x1 y1 x2 y2``; scores ``(K,)``; groups ``(K,)`` int64 in
            ``[0, len(counts))``.
        counts: host copy of the number of entries of each group (valid or not).
        mode: ``"union"`` = torchvision ``nms`` (IoU, areas without ``+1``, suppress
            ``> threshold``); ``"min"`` = facenet-pytorch ``nms_numpy(..., 'Min')``.
        valid: ``(K,)`` bool, entries taking part (default all); the others are neither kept
            nor suppress.
    Returns:
        ``(keep, rank)``: ``(K,)`` bool kept, and each entry's rank in descending score order
        (ties: the lower index first, as the ONNX engine's stable sorts).
    """
    torch = _torch()
    dev = boxes.device
    k = boxes.shape[0]
    if flags is None:
        flags = []
    ranked = torch.argsort(scores, descending=True, stable=True)
    rank = torch.empty_like(ranked)
    rank[ranked] = torch.arange(k, device=dev)
    if k == 0:
        return torch.zeros((0,), dtype=torch.bool, device=dev), rank
    order = ranked[torch.argsort(groups[ranked], stable=True)]  # per group, in score order
    g_sorted = groups[order]
    cnt = torch.zeros(len(counts), dtype=torch.int64, device=dev)
    cnt.index_add_(0, groups, torch.ones_like(groups))  # == counts, computed on the device
    starts = torch.cumsum(cnt, 0) - cnt
    pos = torch.arange(k, device=dev) - starts[g_sorted]
    plan = _buckets(np.asarray(counts, np.int64))
    base = np.zeros(len(counts), np.int64)
    slots = 0
    for gids, m in plan:
        base[gids] = slots + np.arange(len(gids), dtype=np.int64) * m
        slots += len(gids) * m
    dest = _upload(base, dev)[g_sorted] + pos
    padded = torch.zeros((slots, 4), dtype=torch.float64, device=dev)
    padded[dest] = boxes[order].to(torch.float64)
    ok = torch.zeros((slots,), dtype=torch.bool, device=dev)
    ok[dest] = True if valid is None else valid[order]
    kept = torch.zeros((slots,), dtype=torch.bool, device=dev)
    at = 0
    for gids, m in plan:
        sl = slice(at, at + len(gids) * m)
        kb = _greedy(padded[sl].view(len(gids), m, 4), ok[sl].view(len(gids), m), threshold,
                     mode, exact, flags)
        kept[sl] = kb.reshape(-1)
        at = sl.stop
    keep = torch.zeros((k,), dtype=torch.bool, device=dev)
    keep[order] = kept[dest]
    return keep, rank


def nms_grouped(boxes, scores, groups, threshold: float, mode: str = "union"):  # type: ignore[no-untyped-def]
    """Exact greedy NMS within each group (any non-negative int64 labels); int64 indices of the
    kept boxes in descending score order across groups (ties: lower index first). Reads the
    group sizes to the host (the engine itself uses :func:`_nms_keep` with sizes it knows)."""
    torch = _torch()
    k = boxes.shape[0]
    if k == 0:
        return torch.zeros((0,), dtype=torch.int64, device=boxes.device)
    labels, dense = torch.unique(groups, return_inverse=True)
    counts = torch.bincount(dense, minlength=labels.shape[0]).cpu().numpy()
    keep, rank = _nms_keep(boxes, scores, dense, counts, threshold, mode)
    return _compact(keep, rank, int(keep.sum()))


def _compact(keep, rank, total: int):  # type: ignore[no-untyped-def]
    """Indices of the ``total`` kept entries, in rank order, without a host wait."""
    torch = _torch()
    key = torch.where(keep, rank, rank + rank.shape[0])
    return torch.argsort(key)[:total]


def _per_group(groups, mask, n: int):  # type: ignore[no-untyped-def]
    """``(n,)`` int64: how many entries of each group ``mask`` holds (on the device)."""
    torch = _torch()
    out = torch.zeros(n, dtype=torch.int64, device=groups.device)
    return out.index_add_(0, groups, mask.to(torch.int64))


def _flag(flags: list, device: Any):  # type: ignore[no-untyped-def]
    """One int64 element on ``device``: 1 when an NMS block has not converged."""
    torch = _torch()
    if not flags:
        return torch.zeros(1, dtype=torch.int64, device=device)
    out = torch.stack(flags).any().to(torch.int64).reshape(1)
    flags.clear()
    return out


class TorchDetector:
    """The MTCNN cascade in PyTorch, same results as :class:`~livefaces.detect.Detector`.

    Args:
        min_face_size, thresholds, factor: as for :class:`~livefaces.detect.Detector`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...; ``None`` takes CUDA when
            ``torch.cuda.is_available()``, else CPU.
        threads: torch CPU threads (``torch.set_num_threads``; ``None`` leaves torch's default).

    ``detect_batch`` takes frames of mixed sizes; each distinct size is one device batch
    (:data:`SYNCS_PER_BATCH` host waits each). On CUDA the frames go up through one reused
    pinned staging buffer; calls on one detector are serialised (a lock).
    """

    def __init__(
        self,
        min_face_size: float = MIN_FACE_SIZE,
        thresholds: Sequence[float] = THRESHOLDS,
        factor: float = FACTOR,
        device: str | None = None,
        threads: int | None = None,
    ) -> None:
        torch = _torch()
        thresholds = check_settings(min_face_size, thresholds, factor)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ProviderError(f"torch {torch.__version__} has no usable CUDA device; "
                                "use --device cpu or a CUDA build of torch")
        if threads:
            torch.set_num_threads(int(threads))
        self.min_face_size = float(min_face_size)
        self.thresholds = thresholds
        self.factor = float(factor)
        self.device = torch.device(device)
        self.provider = f"torch:{self.device}"
        self._nets = {k: v.to(self.device) for k, v in load_torch_nets().items()}
        self._lock = threading.Lock()
        self._staging: Any = None  # pinned uint8 (n, h, w, 3), reused while big enough
        self._staged: Any = None  # CUDA event: the last upload from it is done
        self._grids: dict[tuple, Any] = {}  # per frame size: pyramid bins, cell coordinates
        self.exact_reruns = 0  # batches whose NMS needed more than NMS_ROUNDS rounds
        log.info("livefaces torch engine on %s (torch %s)", self.device, torch.__version__)
        self.detect(np.zeros((64, 64, 3), np.uint8))

    def __repr__(self) -> str:
        return (f"TorchDetector(min_face_size={self.min_face_size:g}, thresholds={self.thresholds}, "
                f"factor={self.factor:g}, device={str(self.device)!r})")

    def detect(self, image: ImageInput, *, color: str = "rgb") -> Faces:
        """Faces in one image; input as :meth:`Detector.detect <livefaces.detect.Detector.detect>`
        (RGB/BGR uint8 arrays, PIL images)."""
        return self.detect_batch([image], color=color)[0]

    def detect_batch(self, images: Sequence[ImageInput], *, color: str = "rgb") -> list[Faces]:
        """Faces in each of ``images`` (sizes may differ; channel order ``color``, ``"rgb"`` or
        ``"bgr"``); one :class:`Faces` each."""
        torch = _torch()
        pixels = [as_rgb(img, name=f"images[{i}]" if len(images) > 1 else "image", color=color)
                  for i, img in enumerate(images)]
        out: list[Faces] = [Faces.empty()] * len(pixels)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, px in enumerate(pixels):
            by_size.setdefault(px.shape[:2], []).append(i)
        with self._lock, torch.inference_mode(), _full_fp32(self.device):
            for members in by_size.values():
                batch = self._upload_frames([pixels[i] for i in members])
                try:
                    found = self._cascade(batch, exact=False)
                except _NotConverged:
                    self.exact_reruns += 1
                    found = self._cascade(batch, exact=True)
                for j, faces in enumerate(found):
                    out[members[j]] = faces
        return out

    def _upload_frames(self, frames: list[np.ndarray]):  # type: ignore[no-untyped-def]
        """``(n, h, w, 3)`` uint8 on the device. CPU: the frames as they are (one frame: no
        copy). CUDA: copied once into a reused pinned buffer, then one non-blocking upload;
        the next call waits for that upload's event before refilling the buffer (done long
        before: this call's host reads come after it in the stream)."""
        torch = _torch()
        if self.device.type != "cuda":
            if len(frames) == 1:
                return torch.from_numpy(frames[0])[None]
            return torch.from_numpy(np.stack(frames))
        n, (h, w, _) = len(frames), frames[0].shape
        need = n * h * w * 3
        if self._staging is None or self._staging.numel() < need:
            self._staging = torch.empty(need, dtype=torch.uint8, pin_memory=True)
        if self._staged is not None:
            self._staged.synchronize()
        host = self._staging[:need].view(n, h, w, 3)
        view = host.numpy()
        for i, f in enumerate(frames):
            view[i] = f
        out = host.to(self.device, non_blocking=True)
        self._staged = torch.cuda.Event()
        self._staged.record()
        return out

    def _table(self, images):  # type: ignore[no-untyped-def]
        """``(N, H+1, W+1, 3)`` summed-area table of the frames (int32, exact below 2**31 / 255
        pixels; int64 above). The pyramid and the R-Net/O-Net crops read it, never the frames
        again. On the CPU OpenCV's ``integral`` (~10x torch's two ``cumsum`` there)."""
        torch = _torch()
        n, h, w, _ = images.shape
        sdt = torch.int32 if h * w * 255 < 2**31 else torch.int64
        if images.device.type == "cpu":
            frames = images.numpy()
            table = torch.empty((n, h + 1, w + 1, 3), dtype=sdt)
            view = table.numpy()
            for i in range(n):
                view[i] = bx.integral(frames[i]) if sdt == torch.int32 else \
                    bx.integral(frames[i]).astype(np.int64)
            return table
        table = torch.zeros((n, h + 1, w + 1, 3), dtype=sdt, device=images.device)
        table[:, 1:, 1:] = images.to(sdt).cumsum(1).cumsum(2)
        return table

    def _level(self, table, hs: int, ws: int):  # type: ignore[no-untyped-def]
        """One pyramid level ``(N, hs, ws, 3)`` float32 from the summed-area table: exact
        integer sums over torch's ``adaptive_avg_pool2d`` bins, one float32 division, as the
        ONNX engine's ``boxes.area_resize``; reads ``hs`` rows of the table, not the frame."""
        torch = _torch()
        key = ("level", table.shape[1] - 1, table.shape[2] - 1, hs, ws)
        if key not in self._grids:
            ys, ye = bx.area_bins(table.shape[1] - 1, hs)
            xs, xe = bx.area_bins(table.shape[2] - 1, ws)
            area = np.outer(ye - ys, xe - xs).astype(np.float32)[:, :, None]
            self._grids[key] = tuple(torch.from_numpy(a).to(self.device) for a in (ys, ye, xs, xe, area))
        ys, ye, xs, xe, area = self._grids[key]
        band = table[:, ye] - table[:, ys]
        sums = band[:, :, xe] - band[:, :, xs]
        return sums.to(torch.float32) / area

    def _grid(self, h: int, w: int, shapes: list[tuple[int, int]], scales: list[float]):  # type: ignore[no-untyped-def]
        """Per P-Net output cell of every level, concatenated: level, x, y (float32) and the
        level's scale (float32); built on the device once per frame size."""
        torch = _torch()
        key = (h, w)
        if key not in self._grids:
            dev = self.device
            lv, xs, ys, sc = [], [], [], []
            for li, ((oh, ow), scale) in enumerate(zip(shapes, scales)):
                cell = torch.arange(oh * ow, device=dev)
                lv.append(torch.full((oh * ow,), li, dtype=torch.int64, device=dev))
                xs.append((cell % ow).to(torch.float32))
                ys.append(torch.div(cell, ow, rounding_mode="floor").to(torch.float32))
                sc.append(torch.full((oh * ow,), scale, dtype=torch.float32, device=dev))
            self._grids[key] = (torch.cat(lv), torch.cat(xs), torch.cat(ys), torch.cat(sc))
        return self._grids[key]

    # -- the cascade on one same-size device batch ------------------------------------------
    def _cascade(self, images, exact: bool = False) -> list[Faces]:  # type: ignore[no-untyped-def]
        torch = _torch()
        dev = self.device
        n, h, w, _ = images.shape
        flags: list = []

        def read(*tensors):  # type: ignore[no-untyped-def]
            got = _read(*tensors, _flag(flags, dev))
            if got[-1][0]:
                raise _NotConverged
            return got[:-1]

        table = self._table(images)

        # stage 1: P-Net over the pyramid, every level's cells side by side
        scales = bx.pyramid_scales(h, w, self.min_face_size, self.factor)
        if not scales:
            return [Faces.empty() for _ in range(n)]
        probs, regs, shapes = [], [], []
        for scale in scales:
            prob, reg = self._nets["pnet"](self._level(table, *bx.scaled_size(h, w, scale)))
            shapes.append((prob.shape[1], prob.shape[2]))
            probs.append(prob.reshape(n, -1))
            regs.append(reg.reshape(n, 4, -1))
        prob = torch.cat(probs, 1)
        reg = torch.cat(regs, 2)
        lv, gx, gy, gs = self._grid(h, w, shapes, scales)
        img, cell = torch.nonzero(prob >= self.thresholds[0], as_tuple=True)  # wait 1
        if img.numel() == 0:
            return [Faces.empty() for _ in range(n)]
        s, xf, yf = gs[cell], gx[cell], gy[cell]
        r = reg[img, :, cell]
        c = torch.stack([torch.floor((2 * xf + 1) / s), torch.floor((2 * yf + 1) / s),
                         torch.floor((2 * xf + 12) / s), torch.floor((2 * yf + 12) / s),
                         prob[img, cell], *r.unbind(1)], dim=1)
        n_lv = len(scales)
        grp = img * n_lv + lv[cell]
        (counts,) = read(_per_group(grp, torch.ones_like(grp), n * n_lv))  # wait 2
        keep, rank = _nms_keep(c[:, :4], c[:, 4], grp, counts, 0.5, exact=exact, flags=flags)
        (per_img,) = read(_per_group(img, keep, n))  # wait 3
        pick = _compact(keep, rank, int(per_img.sum()))
        c, g = c[pick], img[pick]
        keep, rank = _nms_keep(c[:, :4], c[:, 4], g, per_img, 0.7, exact=exact, flags=flags)
        (per_img,) = read(_per_group(g, keep, n))  # wait 4
        pick = _compact(keep, rank, int(per_img.sum()))
        c, g = c[pick], g[pick]
        if c.shape[0] == 0:
            return [Faces.empty() for _ in range(n)]
        bw, bh = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
        boxes = torch.stack([c[:, 0] + c[:, 5] * bw, c[:, 1] + c[:, 6] * bh,
                             c[:, 2] + c[:, 7] * bw, c[:, 3] + c[:, 8] * bh, c[:, 4]], dim=1)
        boxes = _square(boxes)

        # stage 2: R-Net
        prob, reg, _, ok = self._refine(table, boxes, g, "rnet", 24, w, h)
        ok &= prob > self.thresholds[1]
        boxes = torch.cat([boxes[:, :4], prob[:, None]], dim=1)
        keep, rank = _nms_keep(boxes[:, :4], prob, g, per_img, 0.7, valid=ok, exact=exact,
                               flags=flags)
        (per_img,) = read(_per_group(g, keep, n))  # wait 5
        pick = _compact(keep, rank, int(per_img.sum()))
        if pick.shape[0] == 0:
            return [Faces.empty() for _ in range(n)]
        boxes, g = _square(_regress(boxes[pick], reg[pick])), g[pick]

        # stage 3: O-Net
        prob, reg, pts, ok = self._refine(table, boxes, g, "onet", 48, w, h)
        ok &= prob > self.thresholds[2]
        boxes = torch.cat([boxes[:, :4], prob[:, None]], dim=1)
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        marks = torch.stack([bw * pts[:, :5] + boxes[:, 0:1] - 1,
                             bh * pts[:, 5:] + boxes[:, 1:2] - 1], dim=2)
        boxes = _regress(boxes, reg)
        keep, rank = _nms_keep(boxes[:, :4], boxes[:, 4], g, per_img, 0.7, mode="min", valid=ok,
                               exact=exact, flags=flags)
        packed = torch.cat([boxes, marks.reshape(-1, 10)], dim=1)
        # wait 6: the results (float32 bits through the int64 read) with the kept mask and ranks
        bits, keep_h, rank_h, g_h = read(packed.contiguous().view(torch.int32), keep, rank, g)
        res = bits.astype(np.int32).view(np.float32).reshape(-1, 15)
        sel = np.nonzero(keep_h)[0]
        sel = sel[np.argsort(rank_h[sel], kind="stable")]
        out = []
        for i in range(n):
            mine = sel[g_h[sel] == i]
            if len(mine) == 0:
                out.append(Faces.empty())
                continue
            mine = mine[np.argsort(-res[mine, 4], kind="stable")]
            out.append(Faces(np.ascontiguousarray(res[mine, :4], np.float32),
                             np.ascontiguousarray(res[mine, 4], np.float32),
                             np.ascontiguousarray(res[mine, 5:].reshape(-1, 5, 2), np.float32)))
        return out

    def _refine(self, table, boxes, g, net: str, size: int, w: int, h: int):  # type: ignore[no-untyped-def]
        """Crop every box (facenet-pytorch's ``pad``: truncate, clamp, no padding), resize to
        ``size`` by exact area averaging, run ``net``: ``(prob, reg, points or None, ok)``,
        ``ok`` False for empty windows (their crops are placeholders, never kept)."""
        torch = _torch()
        dev = self.device
        b = torch.trunc(boxes[:, :4]).to(torch.int64)
        x0 = b[:, 0].clamp(min=1) - 1
        y0 = b[:, 1].clamp(min=1) - 1
        x1 = b[:, 2].clamp(max=w)
        y1 = b[:, 3].clamp(max=h)
        ok = (x1 > x0) & (y1 > y0)
        zero, one = torch.zeros_like(x0), torch.ones_like(x0)
        x0, y0 = torch.where(ok, x0, zero), torch.where(ok, y0, zero)
        x1, y1 = torch.where(ok, x1, one), torch.where(ok, y1, one)
        i = torch.arange(size, device=dev)
        bw, bh = (x1 - x0)[:, None], (y1 - y0)[:, None]
        xs = x0[:, None] + torch.div(i * bw, size, rounding_mode="floor")
        xe = x0[:, None] - torch.div(-(i + 1) * bw, size, rounding_mode="floor")
        ys = y0[:, None] + torch.div(i * bh, size, rounding_mode="floor")
        ye = y0[:, None] - torch.div(-(i + 1) * bh, size, rounding_mode="floor")
        gi = g[:, None, None]
        ys_, ye_, xs_, xe_ = ys[:, :, None], ye[:, :, None], xs[:, None, :], xe[:, None, :]
        sums = table[gi, ye_, xe_] - table[gi, ys_, xe_] - table[gi, ye_, xs_] + table[gi, ys_, xs_]
        area = ((ye - ys)[:, :, None] * (xe - xs)[:, None, :]).to(torch.float32)
        crops = sums.to(torch.float32) / area[..., None]
        outs = [self._nets[net](crops[k:k + 4096]) for k in range(0, crops.shape[0], 4096)]
        if not outs:
            empty = torch.zeros((0,), dtype=torch.float32, device=dev)
            return empty, torch.zeros((0, 4), device=dev), torch.zeros((0, 10), device=dev), ok
        prob = torch.cat([o[0] for o in outs])
        reg = torch.cat([o[1] for o in outs])
        pts = torch.cat([o[2] for o in outs]) if net == "onet" else None
        return prob, reg, pts, ok


def _square(boxes):  # type: ignore[no-untyped-def]
    """facenet-pytorch's ``rerec`` (out of place)."""
    torch = _torch()
    bh = boxes[:, 3] - boxes[:, 1]
    bw = boxes[:, 2] - boxes[:, 0]
    side = torch.maximum(bw, bh)
    x1 = boxes[:, 0] + bw * 0.5 - side * 0.5
    y1 = boxes[:, 1] + bh * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side, *boxes[:, 4:].unbind(1)], dim=1)


def _regress(boxes, reg):  # type: ignore[no-untyped-def]
    """facenet-pytorch's ``bbreg`` (width with ``+1``), out of place."""
    torch = _torch()
    bw = boxes[:, 2] - boxes[:, 0] + 1
    bh = boxes[:, 3] - boxes[:, 1] + 1
    return torch.stack([boxes[:, 0] + reg[:, 0] * bw, boxes[:, 1] + reg[:, 1] * bh,
                        boxes[:, 2] + reg[:, 2] * bw, boxes[:, 3] + reg[:, 3] * bh,
                        *boxes[:, 4:].unbind(1)], dim=1)
