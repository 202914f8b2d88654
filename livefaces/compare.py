"""Compare two sets of detections (e.g. livefaces against facenet-pytorch's MTCNN).

Used by the fidelity tests and ``scripts/fidelity.py``; pure numpy. ``iou_matrix`` lives in
:mod:`livefaces.geometry` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import iou_matrix

__all__ = ["Agreement", "iou_matrix"]


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
