#!/usr/bin/env python3
"""Agreement of livefaces with facenet-pytorch's MTCNN on ../shared/media (peer output in
../shared/reference). Prints per-image rows for disagreements and the totals.

    python scripts/fidelity.py [--shared ../shared] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livefaces import Detector  # noqa: E402
from livefaces.compare import Agreement  # noqa: E402
from livefaces.detect.options import FACTOR, MIN_FACE_SIZE, THRESHOLDS  # noqa: E402
from livefaces.imageio import read_image  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    det = Detector(min_face_size=MIN_FACE_SIZE, factor=FACTOR, thresholds=THRESHOLDS)
    total = Agreement()
    for line in (args.shared / "reference" / "facenet_pytorch_minface20.jsonl").read_text().splitlines():
        ref = json.loads(line)
        faces = det.detect(read_image(args.shared / ref["source"]))
        rb = np.array([f["box"] for f in ref["faces"]], np.float32).reshape(-1, 4)
        rl = np.array([f["landmarks"] for f in ref["faces"]], np.float32).reshape(-1, 5, 2)
        one = Agreement()
        one.add(faces.boxes, faces.landmarks, rb, rl)
        total.add(faces.boxes, faces.landmarks, rb, rl)
        if args.verbose or one.matched != one.n_ref or one.matched != one.n_pred:
            print(f"{ref['source']}: {one.summary()}")
    print("TOTAL", total.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
