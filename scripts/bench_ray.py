#!/usr/bin/env python3
"""Benchmark ``extract`` on Ray (``--ray local``) against the single-machine run, and measure
the per-worker figures that docs/extract.md's cluster estimates start from.

    python scripts/bench_ray.py [--copies 3] [--stride 1] [--resize 0.5]

Workload: ``--copies`` copies each of the bundled demo clip (640x360, 10 s, 25 fps) and of
facenet-pytorch's sample video (1920x1080, 4.2 s; from ../shared). Each run writes into a new
folder; times are wall clock of the whole call, Ray's start and stop included. Also timed:
starting and stopping a local Ray cluster alone; one detector thread on 1080p video (the
FastMTCNN settings) and on photos, i.e. one CPU worker. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchlib import cpu_model  # noqa: E402

from livefaces.detect.options import DetectorOptions  # noqa: E402
from livefaces.extract import ClusterOptions, ExtractOptions, extract  # noqa: E402

DEMO = ROOT / "livefaces/data/demo.mp4"
HD = ROOT.parent / "shared/media/timesler__facenet-pytorch/examples/video.mp4"
PHOTOS = ROOT.parent / "shared/media"


def timed(inputs: list[Path], options: ExtractOptions, cluster: ClusterOptions | None):
    out = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        t = time.monotonic()
        report = extract(inputs, out / "faces", options, cluster=cluster)
        return time.monotonic() - t, report
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--resize", type=float, default=0.5)
    ap.add_argument("--segment-seconds", type=float, default=5.0)
    args = ap.parse_args()
    os.environ.setdefault("RAY_LOGGER_LEVEL", "error")
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")

    work = Path(tempfile.mkdtemp(prefix="bench_ray_in_"))
    inputs = []
    for k in range(args.copies):
        for src in (DEMO, HD):
            if src.exists():
                dst = work / f"{src.stem}_{k}{src.suffix}"
                shutil.copy(src, dst)
                inputs.append(dst)
    opts = ExtractOptions(stride=args.stride, resize=args.resize)
    rows = []
    t, r = timed(inputs, opts, None)
    rows.append(("single machine (threads: all cores)", t, r))
    single = t
    for workers in (1, 2):
        t, r = timed(inputs, opts, ClusterOptions("local", workers=workers,
                                                  segment_seconds=args.segment_seconds))
        rows.append((f"`--ray local`, {workers} worker{'s' if workers > 1 else ''}", t, r))

    import ray  # only here, to time the cluster's start and stop alone

    t0 = time.monotonic()
    ray.init(address="local", num_cpus=(os.cpu_count() or 1) + 1, include_dashboard=False,
             log_to_driver=False)
    t1 = time.monotonic()
    ray.shutdown()
    t2 = time.monotonic()

    # one CPU worker: one detector thread
    one = ExtractOptions(stride=4, resize=0.5, detector=DetectorOptions(threads=1))
    hd_t, hd_r = timed([HD], one, None) if HD.exists() else (0.0, None)
    photos = sorted(PHOTOS.rglob("*.jpg")) if PHOTOS.is_dir() else []
    ph_t, ph_r = timed(photos, ExtractOptions(detector=DetectorOptions(threads=1)), None)

    # decoding alone (what feeds a GPU): 1080p, every 4th frame converted to RGB
    from livefaces.extract.decode import iter_video

    dec_n, t0 = 0, time.monotonic()
    for _ in range(3):
        for _item in iter_video(HD, 4):
            dec_n += 1
    dec_t = time.monotonic() - t0

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; inputs: {len(inputs)} videos "
          f"({args.copies}x demo 640x360 10 s, {args.copies}x 1080p 4.2 s), stride {args.stride}, "
          f"resize {args.resize}, segments {args.segment_seconds:g} s\n")
    print("| run | wall s | frames | faces | vs single machine |")
    print("|---|---|---|---|---|")
    for name, t, r in rows:
        print(f"| {name} | {t:.1f} | {r.frames} | {r.faces} | {t / single:.2f}x the time |")
    print(f"\nRay local cluster alone: start {t1 - t0:.1f} s, stop {t2 - t1:.1f} s")
    w1 = next(t for n, t, _ in rows if "1 worker" in n)
    w2 = next(t for n, t, _ in rows if "2 workers" in n)
    print(f"2 workers vs 1: {w1 / w2:.2f}x faster")
    if hd_r is not None:
        n_video = 105  # frames of the 1080p sample
        print(f"\nOne CPU worker (1 detector thread), 1080p, stride 4, resize 0.5: {hd_r.frames} "
              f"detected frames in {hd_t:.1f} s = {n_video / hd_t:.1f} video frames/s "
              f"(model load included)")
    print(f"Decoding alone, 1080p H.264, stride 4 (FFmpeg threads on all cores): "
          f"{3 * 105 / dec_t:.0f} video frames/s")
    if ph_r is not None and photos:
        print(f"One CPU worker, {len(photos)} photos ({ph_r.faces} faces, up to 1920x1080): "
              f"{len(photos) / ph_t:.1f} photos/s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
