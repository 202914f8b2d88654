"""Detections agree with facenet-pytorch's MTCNN (the peer) on the same images and settings.

Targets (issue #2): recall ≥ 0.98, precision ≥ 0.98 at IoU ≥ 0.5, mean IoU ≥ 0.95, mean
landmark error ≤ 2 % of the face size.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from livefaces.compare import Agreement
from livefaces.imageio import read_image

# The peer's output (facenet-pytorch 2.6.0, min_face_size=20, factor=0.709, thresholds
# 0.6/0.7/0.7), copied from ../shared/reference so a bare clone still checks real faces.
PEER = {
    "astronaut": {
        "box": [181.05140686035156, 62.156131744384766, 267.747314453125, 172.05015563964844],
        "confidence": 0.9999977350234985,
        "landmarks": [[205.0109100341797, 101.72745513916016], [246.7625732421875, 103.71408081054688],
                      [224.67137145996094, 128.96499633789062], [201.7161102294922, 139.24615478515625],
                      [245.26548767089844, 141.8570098876953]],
    },
    "grace_hopper": {
        "box": [174.4022216796875, 119.555419921875, 355.6483154296875, 340.45697021484375],
        "confidence": 0.9998244643211365,
        "landmarks": [[221.6661376953125, 192.20590209960938], [309.8289489746094, 186.13040161132812],
                      [269.35687255859375, 239.17361450195312], [232.65196228027344, 279.6486511230469],
                      [306.63848876953125, 275.9274597167969]],
    },
}


def _check(agreement: Agreement) -> None:
    assert agreement.recall >= 0.98, agreement.summary()
    assert agreement.precision >= 0.98, agreement.summary()
    assert agreement.mean_iou >= 0.95, agreement.summary()
    assert agreement.mean_landmark_error <= 0.02, agreement.summary()


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_registry_photos_match_peer(request, detector, name):
    image = request.getfixturevalue(name)
    faces = detector.detect(image)
    peer = PEER[name]
    assert len(faces) == 1
    a = Agreement()
    a.add(faces.boxes, faces.landmarks, np.array([peer["box"]]), np.array([peer["landmarks"]]))
    _check(a)
    # Same arithmetic as the peer: agreement to well under a pixel, not just IoU ≥ 0.95.
    np.testing.assert_allclose(faces.boxes[0], peer["box"], atol=0.05)
    np.testing.assert_allclose(faces.landmarks[0], peer["landmarks"], atol=0.05)
    assert abs(float(faces.scores[0]) - peer["confidence"]) < 1e-4


def test_all_shared_media_match_peer(detector, shared):
    total = Agreement()
    lines = (shared / "reference" / "facenet_pytorch_minface20.jsonl").read_text().splitlines()
    assert len(lines) >= 15
    for line in lines:
        ref = json.loads(line)
        faces = detector.detect(read_image(shared / ref["source"]))
        rb = np.array([f["box"] for f in ref["faces"]], np.float32).reshape(-1, 4)
        rl = np.array([f["landmarks"] for f in ref["faces"]], np.float32).reshape(-1, 5, 2)
        total.add(faces.boxes, faces.landmarks, rb, rl)
    assert total.n_ref >= 80  # the class photo alone has ~50 faces the peer finds
    _check(total)


def test_detect_batch_mixed_sizes_equals_single(detector, astronaut, grace_hopper):
    """Batching across different sizes changes nothing about the results."""
    small = astronaut[::2, ::2].copy()
    singles = [detector.detect(im) for im in (astronaut, grace_hopper, small, astronaut)]
    batch = detector.detect_batch([astronaut, grace_hopper, small, astronaut])
    for one, many in zip(singles, batch):
        assert len(one) == len(many)
        np.testing.assert_allclose(one.boxes, many.boxes, atol=1e-3)
        np.testing.assert_allclose(one.landmarks, many.landmarks, atol=1e-3)
