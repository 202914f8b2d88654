"""The MTCNN cascade in PyTorch, the whole batch on one device (CPU or CUDA).

For machines with torch + CUDA but no ``onnxruntime-gpu``. Every stage stays on the device:
pyramid (``adaptive_avg_pool2d``, i.e. ``interpolate(mode="area")``), P-Net, thresholding,
box generation, grouped NMS (no torchvision), square/pad, R-Net/O-Net crops (exact area
averaging from an integer summed-area table, the same arithmetic as the ONNX engine's
``boxes.area_crops``) and the final NMS. The host sees data twice: the uint8 frames going in
and the final boxes/landmarks coming out (plus the candidate *counts* that data-dependent
shapes need, which are synchronisations, not copies).

Weights come from ``models/mtcnn_weights.npz`` (facenet-pytorch's state dicts, shipped and
checksummed beside the ONNX files), so facenet-pytorch is not needed at run time. torch is imported here and
nowhere else at run time; ``import livefaces`` never needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, ProviderError
from ..types import Faces
from . import boxes as bx
from .mtcnn import ImageInput, as_rgb
from .options import FACTOR, MIN_FACE_SIZE, THRESHOLDS, check_settings

log = logging.getLogger(__name__)

#: Upper bound on elements of the IoU blocks built by :func:`nms_grouped` (bounds memory).
NMS_BLOCK_ELEMENTS = 1 << 24


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ProviderError(
            "the torch engine needs PyTorch: install torch (a CUDA build for GPUs, see "
            "https://pytorch.org/get-started/locally/), or use --engine onnx"
        ) from e
    return torch


def load_torch_nets(directory: Path | None = None):  # type: ignore[no-untyped-def]
    """The three wrapped nets of :mod:`torch_nets` (NHWC 0-255 in, face probability out),
    with facenet-pytorch's weights from ``models/mtcnn_weights.npz``, eval mode, on CPU."""
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
    return {"pnet": tn.PNetWrapped(pnet).eval(), "rnet": tn.RNetWrapped(rnet).eval(),
            "onet": tn.ONetWrapped(onet).eval()}


def nms_grouped(boxes, scores, groups, threshold: float, mode: str = "union"):  # type: ignore[no-untyped-def]
    """Exact greedy NMS within each group, on the tensors' device, without torchvision.

    Args:
        boxes: ``(K, 4)`` float ``x1 y1 x2 y2``; scores ``(K,)``; groups ``(K,)`` int64.
        mode: ``"union"`` = torchvision ``batched_nms`` (IoU, areas without ``+1``, suppress
            ``> threshold``); ``"min"`` = facenet-pytorch ``nms_numpy(..., 'Min')``.
    Returns:
        int64 indices into ``boxes`` of the kept boxes, in score order (desc) across groups.

    Boxes are laid out per group in score order, padded to ``(G, M)``; blocks of ``B`` columns
    are resolved in order: first against the boxes already kept in earlier blocks, then inside
    the block by fixed-point iteration (``keep = not any(suppressor kept)``), whose unique fixed
    point is exactly the greedy result because suppression only points forward in score order.
    """
    torch = _torch()
    dev = boxes.device
    k = boxes.shape[0]
    if k == 0:
        return torch.zeros((0,), dtype=torch.int64, device=dev)
    # Score order: "union" sorts as torchvision/facenet-pytorch do (torch's default, unstable
    # sort over the whole array), so boxes with *equal* scores (P-Net's softmax saturates to
    # 1.0) are taken in the peer's order; "min" keeps the numpy engine's stable order.
    ranked = torch.argsort(scores, descending=True, stable=(mode != "union"))
    rank = torch.empty_like(ranked)
    rank[ranked] = torch.arange(k, device=dev)
    order = ranked[torch.argsort(groups[ranked], stable=True)]
    g_sorted = groups[order]
    uniq, counts = torch.unique_consecutive(g_sorted, return_counts=True)
    n_groups = uniq.shape[0]
    m = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    gi = torch.repeat_interleave(torch.arange(n_groups, device=dev), counts)
    pos = torch.arange(k, device=dev) - starts[gi]
    b = boxes[order].to(torch.float64)
    padded = torch.zeros((n_groups, m, 4), dtype=torch.float64, device=dev)
    padded[gi, pos] = b
    valid = torch.zeros((n_groups, m), dtype=torch.bool, device=dev)
    valid[gi, pos] = True
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
    block = max(1, min(m, int((NMS_BLOCK_ELEMENTS // max(1, n_groups)) ** 0.5), 1024))
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
            alive = kb.clone()
            cur = kb
            for _ in range(n + 1):
                nxt = alive & ~(s & cur[:, :, None]).any(dim=1)
                if torch.equal(nxt, cur):
                    break
                cur = nxt
            keep[gs, cs] = cur
    kept = order[keep[gi, pos]]
    return kept[torch.argsort(rank[kept])]  # in score order across groups, as batched_nms


class TorchDetector:
    """The MTCNN cascade in PyTorch, same results as :class:`~livefaces.detect.Detector`.

    Args:
        min_face_size, thresholds, factor: as for :class:`~livefaces.detect.Detector`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...; ``None`` takes CUDA when
            ``torch.cuda.is_available()``, else CPU.
        threads: torch CPU threads (``torch.set_num_threads``; ``None`` leaves torch's default).

    ``detect_batch`` takes frames of mixed sizes; each distinct size is one device batch.
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
        with torch.inference_mode():
            for members in by_size.values():
                batch = torch.from_numpy(np.stack([pixels[i] for i in members]))
                if self.device.type == "cuda":
                    batch = batch.pin_memory().to(self.device, non_blocking=True)
                for j, faces in enumerate(self._cascade(batch)):
                    out[members[j]] = faces
        return out

    # -- the cascade on one same-size device batch ------------------------------------------
    def _cascade(self, images) -> list[Faces]:  # type: ignore[no-untyped-def]
        torch = _torch()
        dev = self.device
        n, h, w, _ = images.shape
        # (N, H+1, W+1, 3) summed-area table; int32 is exact below 2**31 / 255 pixels
        sdt = torch.int32 if h * w * 255 < 2**31 else torch.int64
        table = torch.zeros((n, h + 1, w + 1, 3), dtype=sdt, device=dev)
        table[:, 1:, 1:] = images.to(sdt).cumsum(1).cumsum(2)
        nchw = images.permute(0, 3, 1, 2).to(torch.float32)

        # stage 1: P-Net over the pyramid
        cands, groups = [], []  # per level: candidates kept by the level's NMS, image index
        scales = bx.pyramid_scales(h, w, self.min_face_size, self.factor)
        for scale in scales:
            hs, ws = bx.scaled_size(h, w, scale)
            lvl = torch.nn.functional.adaptive_avg_pool2d(nchw, (hs, ws))
            prob, reg = self._nets["pnet"](lvl.permute(0, 2, 3, 1))
            img, ys, xs = torch.nonzero(prob >= self.thresholds[0], as_tuple=True)
            if img.numel() == 0:
                continue
            s = torch.tensor(scale, dtype=torch.float32, device=dev)
            xf, yf = xs.to(torch.float32), ys.to(torch.float32)
            c = torch.stack([torch.floor((2 * xf + 1) / s), torch.floor((2 * yf + 1) / s),
                             torch.floor((2 * xf + 12) / s), torch.floor((2 * yf + 12) / s),
                             prob[img, ys, xs], *reg[img, :, ys, xs].unbind(1)], dim=1)
            pick = nms_grouped(c[:, :4], c[:, 4], img, 0.5)  # per image, one call per level
            cands.append(c[pick])
            groups.append(img[pick])
        if not cands:
            return [Faces.empty() for _ in range(n)]
        c = torch.cat(cands)
        g = torch.cat(groups)
        pick = nms_grouped(c[:, :4], c[:, 4], g, 0.7)
        c, g = c[pick], g[pick]
        bw, bh = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
        boxes = torch.stack([c[:, 0] + c[:, 5] * bw, c[:, 1] + c[:, 6] * bh,
                             c[:, 2] + c[:, 7] * bw, c[:, 3] + c[:, 8] * bh, c[:, 4]], dim=1)
        boxes = _square(boxes)

        # stage 2: R-Net
        boxes, g, prob, reg, _ = self._refine(table, boxes, g, "rnet", 24, w, h)
        keep = prob > self.thresholds[1]
        boxes = torch.cat([boxes[keep, :4], prob[keep, None]], dim=1)
        g, reg = g[keep], reg[keep]
        pick = nms_grouped(boxes[:, :4], boxes[:, 4], g, 0.7)
        boxes, g = _square(_regress(boxes[pick], reg[pick])), g[pick]

        # stage 3: O-Net
        boxes, g, prob, reg, pts = self._refine(table, boxes, g, "onet", 48, w, h)
        keep = prob > self.thresholds[2]
        boxes = torch.cat([boxes[keep, :4], prob[keep, None]], dim=1)
        g, reg, pts = g[keep], reg[keep], pts[keep]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        marks = torch.stack([bw * pts[:, :5] + boxes[:, 0:1] - 1,
                             bh * pts[:, 5:] + boxes[:, 1:2] - 1], dim=2)
        boxes = _regress(boxes, reg)
        pick = nms_grouped(boxes[:, :4], boxes[:, 4], g, 0.7, mode="min")
        boxes, g, marks = boxes[pick].cpu().numpy(), g[pick].cpu().numpy(), marks[pick].cpu().numpy()

        out = []
        for i in range(n):
            sel = np.nonzero(g == i)[0]
            if len(sel) == 0:
                out.append(Faces.empty())
                continue
            sel = sel[np.argsort(-boxes[sel, 4], kind="stable")]
            out.append(Faces(np.ascontiguousarray(boxes[sel, :4], np.float32),
                             np.ascontiguousarray(boxes[sel, 4], np.float32),
                             np.ascontiguousarray(marks[sel], np.float32)))
        return out

    def _refine(self, table, boxes, g, net: str, size: int, w: int, h: int):  # type: ignore[no-untyped-def]
        """Crop every box (facenet-pytorch's ``pad``: truncate, clamp, no padding), resize to
        ``size`` by exact area averaging, run ``net``. Invalid (empty) windows are dropped."""
        torch = _torch()
        dev = self.device
        empty = torch.zeros((0,), dtype=torch.float32, device=dev)
        if boxes.shape[0] == 0:
            return boxes, g, empty, torch.zeros((0, 4), device=dev), torch.zeros((0, 10), device=dev)
        b = torch.trunc(boxes[:, :4]).to(torch.int64)
        x0 = b[:, 0].clamp(min=1) - 1
        y0 = b[:, 1].clamp(min=1) - 1
        x1 = b[:, 2].clamp(max=w)
        y1 = b[:, 3].clamp(max=h)
        valid = (x1 > x0) & (y1 > y0)
        boxes, g, x0, y0, x1, y1 = boxes[valid], g[valid], x0[valid], y0[valid], x1[valid], y1[valid]
        if boxes.shape[0] == 0:
            return boxes, g, empty, torch.zeros((0, 4), device=dev), torch.zeros((0, 10), device=dev)
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
        prob = torch.cat([o[0] for o in outs])
        reg = torch.cat([o[1] for o in outs])
        pts = torch.cat([o[2] for o in outs]) if net == "onet" else None
        return boxes, g, prob, reg, pts


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
