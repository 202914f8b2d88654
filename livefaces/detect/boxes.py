"""Pure-numpy geometry of the MTCNN cascade (no model calls, no I/O).

Boxes are float32 arrays whose first 4 columns are ``x1, y1, x2, y2`` in original-image pixels.
Each function documents where it follows facenet-pytorch's ``detect_face`` to the letter
(including its ``+1`` conventions), because the detections must agree with it.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

PNET_STRIDE = 2
PNET_CELL = 12


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """Scales so that a ``min_face`` face becomes P-Net's 12 px window, shrinking by ``factor``."""
    m = 12.0 / min_face
    minl = min(height, width) * m
    scales = []
    scale = m
    while minl >= 12:
        scales.append(scale)
        scale *= factor
        minl *= factor
    return scales


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(h, w) of the pyramid level, as facenet-pytorch computes it."""
    return int(height * scale + 1), int(width * scale + 1)


def pnet_out_size(height: int, width: int) -> tuple[int, int]:
    """Size of P-Net's output map for an input of ``height × width`` (conv3, pool2 ceil, conv3, conv3)."""
    return max(0, (height - 1) // 2 - 4), max(0, (width - 1) // 2 - 4)


def pnet_band_rows(out_row0: int, out_row1: int, height: int) -> tuple[int, int]:
    """Input rows ``[a, b)`` that P-Net needs for output rows ``[out_row0, out_row1)`` of an
    image ``height`` rows high.

    Output row ``r`` sees input rows ``2r … 2r+11``. A band that stops inside the image has
    an even height, so the ceil-mode pooling has no partial window there, and its output rows
    equal those of the whole image exactly; the last band runs to the image's end, partial
    window included, as the whole image does.
    """
    a, b = 2 * out_row0, 2 * out_row1 + 10
    return a, min(b, height)


def generate_boxes(prob: np.ndarray, reg: np.ndarray, scale: float, threshold: float,
                   row_offset: int = 0, col_offset: int = 0) -> np.ndarray:
    """Candidate windows from one P-Net map (or a part of it starting at output row
    ``row_offset`` and column ``col_offset``).

    Args:
        prob: ``(H', W')`` face probability.
        reg: ``(4, H', W')`` box regression.
    Returns:
        ``(K, 9)`` float32: ``x1, y1, x2, y2, score, dx1, dy1, dx2, dy2`` (window in image px).
    """
    ys, xs = np.nonzero(prob >= threshold)
    if len(ys) == 0:
        return np.zeros((0, 9), np.float32)
    out = np.empty((len(ys), 9), np.float32)
    # float32 division on purpose: torch divides float32 tensors by float32(scale), and
    # e.g. 3 / 0.6 floors to 5 in float64 but to 4 in float32.
    s = np.float32(scale)
    xf, yf = (xs + col_offset).astype(np.float32), (ys + row_offset).astype(np.float32)
    out[:, 0] = np.floor((PNET_STRIDE * xf + 1) / s)
    out[:, 1] = np.floor((PNET_STRIDE * yf + 1) / s)
    out[:, 2] = np.floor((PNET_STRIDE * xf + PNET_CELL) / s)
    out[:, 3] = np.floor((PNET_STRIDE * yf + PNET_CELL) / s)
    out[:, 4] = prob[ys, xs]
    out[:, 5:9] = reg[:, ys, xs].T
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best first.

    ``mode="union"`` is torchvision's ``nms`` (area ``(x2-x1)*(y2-y1)``, suppress IoU > t).
    ``mode="min"`` is facenet-pytorch's ``nms_numpy(..., 'Min')`` (areas with ``+1``,
    overlap divided by the smaller area, suppress > t).
    """
    n = len(scores)
    if n == 0:
        return np.zeros((0,), np.int64)
    if mode == "union":
        # OpenCV's C++ NMS: same greedy rule (IoU > t suppressed, areas without +1), and its
        # stable descending sort breaks ties by index like the numpy loop below.
        xywh = np.empty((n, 4), np.float64)
        xywh[:, :2] = boxes[:, :2]
        xywh[:, 2:] = boxes[:, 2:4] - boxes[:, :2]
        keep = cv2.dnn.NMSBoxes(xywh, scores.astype(np.float32), 0.0, threshold)  # type: ignore[arg-type]
        return np.asarray(keep, np.int64).reshape(-1)
    if mode != "min":
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    x1, y1, x2, y2 = (boxes[:, i].astype(np.float64) for i in range(4))
    area = (x2 - x1 + 1.0) * (y2 - y1 + 1.0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1.0)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1.0)
        overlap = w * h / np.minimum(area[i], area[rest])
        order = rest[overlap <= threshold]
    return np.asarray(keep, np.int64)


def regress_pnet(boxes: np.ndarray) -> np.ndarray:
    """Apply P-Net regression (facenet-pytorch: width without ``+1``); keeps the score column."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    out = np.empty((len(boxes), 5), np.float32)
    out[:, 0] = boxes[:, 0] + boxes[:, 5] * w
    out[:, 1] = boxes[:, 1] + boxes[:, 6] * h
    out[:, 2] = boxes[:, 2] + boxes[:, 7] * w
    out[:, 3] = boxes[:, 3] + boxes[:, 8] * h
    out[:, 4] = boxes[:, 4]
    return out


def regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """facenet-pytorch's ``bbreg`` (width with ``+1``), in place on ``boxes[:, :4]``."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, 0] += reg[:, 0] * w
    boxes[:, 1] += reg[:, 1] * h
    boxes[:, 2] += reg[:, 2] * w
    boxes[:, 3] += reg[:, 3] * h
    return boxes


def square(boxes: np.ndarray) -> np.ndarray:
    """facenet-pytorch's ``rerec``: grow the shorter side to a square around the centre, in place."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    boxes[:, 0] += w * 0.5 - side * 0.5
    boxes[:, 1] += h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def crop_windows(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Integer crop windows ``(x0, y0, x1, y1)`` (half-open) for each box.

    As facenet-pytorch's ``pad``: truncate, clamp to the image, and crop
    ``[y1-1 : y2, x1-1 : x2]`` — the part of the box outside the image is cut off, not padded.
    """
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x0 = np.maximum(b[:, 0], 1) - 1
    y0 = np.maximum(b[:, 1], 1) - 1
    x1 = np.minimum(b[:, 2], width)
    y1 = np.minimum(b[:, 3], height)
    return np.stack([x0, y0, x1, y1], axis=1)


def area_bins(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Start/end (half-open) of each output cell's input span, as torch's adaptive average
    pooling (``interpolate(mode="area")``) computes them: ``floor(i*n/m)``, ``ceil((i+1)*n/m)``."""
    i = np.arange(n_out, dtype=np.int64)
    return (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)


def integral(image: np.ndarray) -> np.ndarray:
    """Summed-area table ``(H+1, W+1, 3)`` of a uint8 image: exact int32, or float64 when the
    image is too large for int32 sums."""
    if image.shape[0] * image.shape[1] * 255 < 2**31:
        return cv2.integral(image)
    return cv2.integral(image, sdepth=cv2.CV_64F)


def area_crops(table: np.ndarray, windows: np.ndarray, size: int, out: np.ndarray) -> None:
    """Resize every window to ``size × size`` by exact area averaging, vectorised over windows.

    Args:
        table: :func:`integral` of the image.
        windows: ``(K, 4)`` int ``x0, y0, x1, y1`` half-open, non-empty, inside the image.
        out: ``(K, size, size, 3)`` float32, filled with pixel values (0-255) equal (to float
            rounding) to ``torch.nn.functional.interpolate(crop, (size, size), mode="area")``.
    """
    stride = table.shape[1]
    pixels = table.reshape(-1, 3)  # one row per summed-area entry
    i = np.arange(size, dtype=np.int64)
    x0, y0, x1, y1 = (windows[:, j : j + 1].astype(np.int64) for j in range(4))
    w, h = x1 - x0, y1 - y0
    xs, xe = x0 + (i * w) // size, x0 - ((-(i + 1) * w) // size)
    ys, ye = y0 + (i * h) // size, y0 - ((-(i + 1) * h) // size)
    top, bottom = (ys * stride)[:, :, None], (ye * stride)[:, :, None]
    left, right = xs[:, None, :], xe[:, None, :]
    # np.take is several times faster than fancy indexing for row gathers
    sums = np.take(pixels, bottom + right, axis=0)
    sums -= np.take(pixels, top + right, axis=0)
    sums -= np.take(pixels, bottom + left, axis=0)
    sums += np.take(pixels, top + left, axis=0)
    out[...] = sums
    out /= ((ye - ys)[:, :, None] * (xe - xs)[:, None, :]).astype(np.float32)[..., None]


@functools.lru_cache(maxsize=64)
def _resize_plan(rows_in: int, cols_in: int, height: int, width: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`area_resize` needs for one (input size, output size), computed once: the
    row bins, the column bins and the bin areas as float32 ``(height, width, 3)`` (repeated
    per channel: a division whose divisor is broadcast over the 3 channels runs numpy's inner
    loop 3 elements at a time). A video's frames share one plan per pyramid level (1080p
    pyramid on an Intel Xeon: ~40 -> ~30 ms)."""
    ys, ye = area_bins(rows_in, height)
    xs, xe = area_bins(cols_in, width)
    area = np.repeat(np.outer(ye - ys, xe - xs).astype(np.float32)[:, :, None], 3, axis=2)
    for a in (ys, ye, xs, xe, area):
        a.setflags(write=False)
    return ys, ye, xs, xe, area


def area_resize(table: np.ndarray, height: int, out: np.ndarray, rows: tuple[int, int] | None = None,
                cols: tuple[int, int, int] | None = None) -> None:
    """Rows of the whole image resized to ``height × width`` by exact area averaging.

    Args:
        table: :func:`integral` of the image, ``(H+1, W+1, 3)``.
        height: height of the resized image.
        out: ``(b - a, width, 3)`` float32, filled with rows ``[a, b)`` of the resized image,
            equal to torch's ``interpolate(mode="area")`` (the sums are exact integers; one
            division per pixel, as torch does).
        rows: ``(a, b)``; default all rows.
        cols: ``(c, d, width)``: only columns ``[c, d)`` of a resized image ``width`` wide
            (``out`` is then ``(b - a, d - c, 3)``); default all ``out.shape[1]`` columns.
    """
    c, d, width = cols if cols is not None else (0, out.shape[1], out.shape[1])
    a, b = rows or (0, height)
    rows_in, cols_in = table.shape[0] - 1, table.shape[1] - 1
    ys, ye, xs, xe, area = _resize_plan(rows_in, cols_in, height, width)
    if cols is None:
        flat = table.reshape(rows_in + 1, -1)
    else:  # only the table columns these output columns read (a window of a large frame)
        lo, hi = int(xs[c]), int(xe[d - 1]) + 1
        xs, xe, area = xs[c:d] - lo, xe[c:d] - lo, area[:, c:d]
        width = d - c
        flat = table[:, lo:hi]
    band = np.take(flat, ye[a:b], axis=0)  # sums over each output row's input rows
    band -= np.take(flat, ys[a:b], axis=0)
    band = band.reshape(b - a, -1)
    # Column edges gathered as whole pixels (the 3 channels as one opaque item): a third of
    # the indices of a per-channel gather (1080p pyramid, one core, Intel Xeon: 27.6 ->
    # 23.3 ms together with the divisor above).
    pixel = band.view(np.dtype((np.void, 3 * band.itemsize)))
    sums = np.take(pixel, xe, axis=1).view(band.dtype)
    sums -= np.take(pixel, xs, axis=1).view(band.dtype)
    # one pass: cast the exact sums to float32 and divide in float32, as torch does
    np.divide(sums.reshape(b - a, width, 3), area[a:b], out=out, dtype=np.float32, casting="unsafe")
