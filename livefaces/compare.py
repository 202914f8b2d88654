"""Compare two sets of detections (e.g. livefaces against facenet-pytorch's MTCNN).

Used by the fidelity tests and ``scripts/fidelity.py``; pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), xyxy → (N, M) float32
    (0 where both boxes are empty)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return (inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-6)).astype(np.float32)


@dataclass
class Agreement:
    """How well ``pred`` agrees with ``ref`` (counts summed over images)."""

    matched: int = 0
    n_pred: int = 0
    n_ref: int = 0
    iou_sum: float = 0.0
    landmark_err_sum: float = 0.0  # mean point distance / face size, summed over matches

    def add(self, pred_boxes: np.ndarray, pred_lms: np.ndarray, ref_boxes: np.ndarray,
            ref_lms: np.ndarray, min_iou: float = 0.5) -> None:
        """Greedy one-to-one matching by IoU (best pairs first) at ``min_iou``."""
        self.n_pred += len(pred_boxes)
        self.n_ref += len(ref_boxes)
        iou = iou_matrix(pred_boxes, ref_boxes)
        while iou.size and iou.max() >= min_iou:
            i, j = np.unravel_index(np.argmax(iou), iou.shape)
            self.matched += 1
            self.iou_sum += float(iou[i, j])
            rb = ref_boxes[j]
            size = float(np.sqrt((rb[2] - rb[0]) * (rb[3] - rb[1])))
            err = np.linalg.norm(pred_lms[i] - ref_lms[j], axis=1).mean()
            self.landmark_err_sum += float(err) / size
            iou[i, :] = -1
            iou[:, j] = -1

    @property
    def recall(self) -> float:
        return self.matched / self.n_ref if self.n_ref else 1.0

    @property
    def precision(self) -> float:
        return self.matched / self.n_pred if self.n_pred else 1.0

    @property
    def mean_iou(self) -> float:
        return self.iou_sum / self.matched if self.matched else 1.0

    @property
    def mean_landmark_error(self) -> float:
        """Mean landmark distance as a fraction of the face size (sqrt of box area)."""
        return self.landmark_err_sum / self.matched if self.matched else 0.0

    def summary(self) -> str:
        return (f"faces ref={self.n_ref} ours={self.n_pred} matched={self.matched}  "
                f"recall={self.recall:.4f} precision={self.precision:.4f} "
                f"mean IoU={self.mean_iou:.4f} landmark err={100 * self.mean_landmark_error:.2f}%")
