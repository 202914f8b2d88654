#!/usr/bin/env python
"""Who is it (issue 12): verification accuracy and embedding time of livefaces.identify.

Faces: the labelled photos of ../shared (face_recognition's knn examples and example photos,
facenet-pytorch's test portraits, the astronaut, Grace Hopper, ivan), each face labelled by
hand (photo + position; a duplicate file and a false detection are left out). Every pair of
faces is one verification trial: same person or not. Reported at the default threshold (and
dlib's usual 0.6): pairs, TPR (same-person pairs at or below the threshold), FPR
(different-person pairs at or below it), the largest same-person and the smallest
different-person distance.

Note: the default threshold was chosen by looking at these same distances, so the figures at
it are not an independent test; the margin between the two groups is what they show.

Time: ``Recognizer.embed`` per face (chip alignment + dlib's ResNet), one face per call and
4 faces per call, median of ``--repeats``; run it through /work/cpu-x (exclusive) for quiet
figures.

    python scripts/bench_identify.py [--repeats 30] [--calibrate] [--write docs/bench/identify.json]

``--calibrate`` also prints where our 5 landmarks fall in the chip dlib's own 5-point shape
predictor cuts (the source of ``recognizer.CHIP_TEMPLATE``).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import cpu_model  # noqa: E402

from livefaces import Detector  # noqa: E402
from livefaces.align import similarity_matrix  # noqa: E402
from livefaces.identify import DEFAULT_THRESHOLD, Recognizer  # noqa: E402
from livefaces.imageio import read_image  # noqa: E402
from livefaces.types import Faces  # noqa: E402

SHARED = Path(os.environ.get("LIVEFACES_SHARED", ROOT.parent / "shared"))
M = "media/"
EX = M + "ageitgey__face_recognition/examples/"
KNN = EX + "knn_examples/"
FN = M + "timesler__facenet-pytorch/data/test_images/"
#: photo -> [(x of the face's centre, who)], hand-labelled; ``None``: the widest face
LABELS: dict[str, list[tuple[float | None, str]]] = {
    KNN + "train/alex_lacamoire/img1.jpg": [(None, "alex_lacamoire")],
    KNN + "train/biden/biden.jpg": [(None, "biden")],
    KNN + "train/biden/biden2.jpg": [(None, "biden")],
    KNN + "train/kit_harington/john1.jpeg": [(None, "kit_harington")],
    KNN + "train/kit_harington/john2.jpeg": [(None, "kit_harington")],
    KNN + "train/obama/obama.jpg": [(490, "obama")],  # + a false detection at the bottom
    KNN + "train/obama/obama2.jpg": [(None, "obama")],
    KNN + "train/rose_leslie/img1.jpg": [(None, "rose_leslie")],
    KNN + "train/rose_leslie/img2.jpg": [(None, "rose_leslie")],
    KNN + "test/alex_lacamoire1.jpg": [(None, "alex_lacamoire")],
    KNN + "test/johnsnow_test1.jpg": [(None, "kit_harington")],
    KNN + "test/kit_with_rose.jpg": [(303, "kit_harington"), (118, "rose_leslie")],
    KNN + "test/obama1.jpg": [(None, "obama")],
    KNN + "test/obama_and_biden.jpg": [(842, "biden"), (1237, "obama"), (1706, "girl_in_obama_and_biden")],
    EX + "obama-1080p.jpg": [(None, "obama")],
    EX + "obama-240p.jpg": [(None, "obama")],
    EX + "two_people.jpg": [(865, "biden"), (310, "obama")],
    # examples/biden.jpg is the same file as train/biden/biden.jpg: left out
    FN + "angelina_jolie/1.jpg": [(None, "angelina_jolie")],
    FN + "kate_siegel/1.jpg": [(None, "kate_siegel")],
    FN + "paul_rudd/1.jpg": [(None, "paul_rudd")],
    FN + "shea_whigham/1.jpg": [(None, "shea_whigham")],
    M + "pypi__scikit-image/skimage/data/astronaut.png": [(None, "eileen_collins")],
    M + "pypi__matplotlib/matplotlib/mpl-data/sample_data/grace_hopper.jpg": [(None, "grace_hopper")],
    M + "ipazc__mtcnn/tests/images/ivan.jpg": [(None, "ivan")],
}
#: the same shot at two resolutions: not a trial
SAME_SHOT = {frozenset({EX + "obama-1080p.jpg", EX + "obama-240p.jpg"})}


def labelled_faces(detector: Detector) -> list[tuple[str, str, np.ndarray, Faces]]:
    """``(photo, who, rgb, one face)`` for every labelled face."""
    out = []
    seen: dict[str, str] = {}
    for rel, people in LABELS.items():
        path = SHARED / rel
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest not in seen, f"{rel} is the same file as {seen[digest]}"
        seen[digest] = rel
        rgb = read_image(path)
        faces = detector.detect(rgb)
        centres = (faces.boxes[:, 0] + faces.boxes[:, 2]) / 2
        for x, who in people:
            if x is None:  # the photo's subject: its widest face
                assert len(faces), f"{rel}: no face"
                i = int(np.argmax(faces.boxes[:, 2] - faces.boxes[:, 0]))
            else:
                i = int(np.argmin(np.abs(centres - x)))
                assert abs(centres[i] - x) < 40, f"{rel}: no face near x={x}"
            out.append((rel, who, rgb, faces.select(np.array([i]))))
    return out


def rates(same: np.ndarray, diff: np.ndarray, t: float) -> dict[str, float]:
    return {"threshold": t, "tpr": float((same <= t).mean()), "fpr": float((diff <= t).mean()),
            "false_rejects": int((same > t).sum()), "false_accepts": int((diff <= t).sum())}


def pair_distances(items: list[tuple[str, str, np.ndarray, Faces]], emb: np.ndarray,
                   keep: list[bool] | None = None) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    """Same-person and different-person distances over all trial pairs (``keep``: faces to use)."""
    same, diff = [], []
    worst_same, closest_diff = ("", "", 0.0), ("", "", 9.0)
    for i, j in itertools.combinations(range(len(items)), 2):
        if keep is not None and not (keep[i] and keep[j]):
            continue
        if items[i][0] == items[j][0] and items[i][1] == items[j][1]:
            continue
        if frozenset({items[i][0], items[j][0]}) in SAME_SHOT:
            continue
        d = Recognizer.distance(emb[i], emb[j])
        pair = ("/".join(items[i][0].rsplit("/", 2)[-2:]), "/".join(items[j][0].rsplit("/", 2)[-2:]), d)
        if items[i][1] == items[j][1]:
            same.append(d)
            if d > worst_same[2]:
                worst_same = pair
        else:
            diff.append(d)
            if d < closest_diff[2]:
                closest_diff = pair
    return np.array(same), np.array(diff), worst_same, closest_diff


def dlib_path(items: list[tuple[str, str, np.ndarray, Faces]]) -> tuple[np.ndarray, list[bool]]:
    """dlib's own path on each labelled face that its HOG detector also finds: HOG box ->
    5-point shape predictor -> the same ResNet (zeros and False where HOG misses it)."""
    from livefaces.identify.dlib_model import DlibReference

    ref = DlibReference()
    out, found = [], []
    for _rel, _who, rgb, face in items:
        c = (face.boxes[0, :2] + face.boxes[0, 2:]) / 2
        boxes = ref.hog_boxes(rgb)
        off = np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - c, axis=1)
        j = int(np.argmin(off)) if len(boxes) else -1
        ok = j >= 0 and off[j] < 0.3 * (boxes[j, 2] - boxes[j, 0])
        out.append(ref.embed(rgb, boxes[j]) if ok else np.zeros(128, np.float32))
        found.append(bool(ok))
    return np.array(out), found


def calibrate(items: list[tuple[str, str, np.ndarray, Faces]]) -> None:
    from livefaces.identify.dlib_model import DLIB_TEMPLATE, DlibReference

    ref = DlibReference()
    pts = []
    for _rel, _who, rgb, face in items:
        c = (face.boxes[0, :2] + face.boxes[0, 2:]) / 2
        boxes = ref.hog_boxes(rgb)
        if not len(boxes):
            continue
        j = int(np.argmin(np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - c, axis=1)))
        if np.linalg.norm((boxes[j, :2] + boxes[j, 2:]) / 2 - c) > 0.3 * (boxes[j, 2] - boxes[j, 0]):
            continue
        m = similarity_matrix(ref.shape5(rgb, boxes[j]), DLIB_TEMPLATE)
        lm = face.landmarks[0].astype(np.float64)
        pts.append(lm @ m[:, :2].T + m[:, 2])
    arr = np.array(pts)
    print(f"calibration: our landmarks in dlib's chip, {len(arr)} faces (dlib's HOG found them)")
    for name, mean, sd in zip(("left_eye", "right_eye", "nose", "mouth_left", "mouth_right"),
                              arr.mean(0), arr.std(0)):
        print(f"  {name:12s} {mean[0]:6.2f} {mean[1]:6.2f}   sd {sd[0]:.2f} {sd[1]:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--write", type=Path, help="also write the figures as JSON")
    args = ap.parse_args()
    if not (SHARED / "media").is_dir():
        print(f"{SHARED}/media is missing (the labelled photos)", file=sys.stderr)
        return 2
    detector = Detector()
    rec = Recognizer()
    items = labelled_faces(detector)
    if args.calibrate:
        calibrate(items)
    emb = np.concatenate([rec.embed(rgb, face) for _r, _w, rgb, face in items])
    s, f, worst_same, closest_diff = pair_distances(items, emb)
    people = sorted({w for _r, w, _i, _f in items})
    print(f"{len(items)} faces of {len(people)} people, {len(s) + len(f)} pairs "
          f"({len(s)} same person, {len(f)} different)")
    print(f"same person: distance max {s.max():.3f}, mean {s.mean():.3f}  "
          f"({worst_same[0]} vs {worst_same[1]})")
    print(f"different:   distance min {f.min():.3f}, mean {f.mean():.3f}  "
          f"({closest_diff[0]} vs {closest_diff[1]})")
    table = [rates(s, f, t) for t in (0.45, 0.5, DEFAULT_THRESHOLD, 0.6, 0.65)]
    for r in table:
        mark = "  <- default" if r["threshold"] == DEFAULT_THRESHOLD else ""
        print(f"threshold {r['threshold']:.2f}: TPR {r['tpr']:.3f} ({r['false_rejects']} missed), "
              f"FPR {r['fpr']:.3f} ({r['false_accepts']} false){mark}")

    # dlib's own path on the faces its HOG detector finds, ours on the same faces
    ref_emb, found = dlib_path(items)
    gaps = [Recognizer.distance(a, b) for a, b, k in zip(emb, ref_emb, found) if k]
    rs, rf, _, _ = pair_distances(items, ref_emb, found)
    os_, of, _, _ = pair_distances(items, emb, found)
    print(f"dlib's own path (HOG + shape predictor) finds {sum(found)} of {len(items)} faces; "
          f"ours vs dlib's embedding of the same face: {min(gaps):.3f}-{max(gaps):.3f} "
          f"(median {np.median(gaps):.3f})")
    for label, a, b in (("dlib's path", rs, rf), ("ours, same faces", os_, of)):
        r = rates(a, b, DEFAULT_THRESHOLD)
        print(f"  {label:17s}: {len(a) + len(b)} pairs, same max {a.max():.3f}, different min {b.min():.3f}; "
              f"at {DEFAULT_THRESHOLD}: TPR {r['tpr']:.3f} FPR {r['fpr']:.3f}")
    dlib_cmp = {"faces_found": sum(found), "gap_min": min(gaps), "gap_max": max(gaps),
                "gap_median": float(np.median(gaps)),
                "dlib_same_max": float(rs.max()), "dlib_different_min": float(rf.min()),
                "ours_same_max": float(os_.max()), "ours_different_min": float(of.min())}

    # time: one face per call and 4 faces per call (the same face repeated)
    rgb, face = items[0][2], items[0][3]
    four = Faces(np.repeat(face.boxes, 4, 0), np.repeat(face.scores, 4, 0), np.repeat(face.landmarks, 4, 0))
    rec.embed(rgb, face)
    times = {}
    for label, faces in (("1 face per call", face), ("4 faces per call", four)):
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            rec.embed(rgb, faces)
            ts.append((time.perf_counter() - t0) * 1000 / len(faces))
        times[label] = float(np.median(ts))
        print(f"embed, {label}: {times[label]:.1f} ms per face (median of {args.repeats})")
    machine = f"{cpu_model()}, {os.cpu_count()} cores visible"
    print(f"machine: {machine}")
    if args.write:
        args.write.write_text(json.dumps({
            "faces": len(items), "people": len(people), "pairs": len(s) + len(f),
            "same_pairs": len(s), "different_pairs": len(f),
            "same_max": float(s.max()), "different_min": float(f.min()),
            "rates": table, "ms_per_face": times, "machine": machine, "vs_dlib_path": dlib_cmp,
        }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
