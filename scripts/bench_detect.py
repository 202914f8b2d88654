#!/usr/bin/env python3
"""Detector speed: livefaces vs facenet-pytorch's MTCNN.detect, same frames, same process.

    python scripts/bench_detect.py [--video PATH] [--frames 12] [--rounds 3] [--threads 2]

Frames come from a real video with faces (default: facenet-pytorch's example video in
../shared/media), resized to 1920×1080, 1280×720 and 640×480. For every frame the two
detectors run alternately (peer, livefaces, peer, …) with the same settings (the defaults of
livefaces/detect/options.py: min face 20, factor 0.709, thresholds 0.6/0.7/0.7) and the same
number of threads. Prints a Markdown table of median milliseconds per frame and the speed
ratio. The peer is the genuine facenet-pytorch package code; on machines without torchvision
it runs through ../shared/peer/shim.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from livefaces.detect.options import FACTOR, MIN_FACE_SIZE, THRESHOLDS  # noqa: E402

SIZES = [(1920, 1080), (1280, 720), (640, 480)]


def load_frames(video: Path, n: int) -> list[np.ndarray]:
    import av

    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        total = stream.frames or 100
        step = max(1, total // n)
        frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(stream)) if i % step == 0]
    return frames[:n]


def load_peer(threads: int):  # type: ignore[no-untyped-def]
    try:
        import torch
    except ImportError:
        return None
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - no usable torchvision here: use the shim
        sys.modules.pop("torchvision", None)
        sys.path.insert(0, str(SHARED / "peer" / "shim"))
    try:
        from facenet_pytorch import MTCNN
    except Exception as e:  # noqa: BLE001
        print(f"peer not importable: {e}", file=sys.stderr)
        return None
    torch.set_num_threads(threads)
    return MTCNN(keep_all=True, min_face_size=MIN_FACE_SIZE, factor=FACTOR, thresholds=list(THRESHOLDS),
                 device="cpu")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path,
                    default=SHARED / "media" / "timesler__facenet-pytorch" / "examples" / "video.mp4")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from livefaces import Detector

    cv2.setNumThreads(args.threads)
    ours = Detector(min_face_size=MIN_FACE_SIZE, factor=FACTOR, thresholds=THRESHOLDS, providers="cpu",
                    threads=args.threads)
    peer = load_peer(args.threads)
    frames = load_frames(args.video, args.frames)
    print(f"# {cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
          f"{args.threads} threads each; {args.video.name}, {len(frames)} frames x {args.rounds} rounds")
    print("| size | facenet-pytorch ms | livefaces ms | speed-up | CPU ms peer / ours | faces peer / ours |")
    print("|---|---:|---:|---:|---:|---|")
    for w, h in SIZES:
        imgs = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]
        runs: dict[str, list[tuple[float, float, int]]] = {"peer": [], "ours": []}

        def timed(name: str, fn, img, runs=runs) -> None:  # type: ignore[no-untyped-def]
            t0, c0 = time.perf_counter(), time.process_time()
            n = fn(img)
            runs[name].append((time.perf_counter() - t0, time.process_time() - c0, n))

        def run_peer(img) -> int:  # type: ignore[no-untyped-def]
            boxes, _ = peer.detect(img)
            return 0 if boxes is None else len(boxes)

        ours.detect(imgs[0])
        if peer is not None:
            peer.detect(imgs[0])
        for _ in range(args.rounds):
            for img in imgs:  # alternate, so both see the same machine state
                if peer is not None:
                    timed("peer", run_peer, img)
                timed("ours", lambda im: len(ours.detect(im)), img)

        def med(name: str, k: int, runs=runs) -> float:
            return statistics.median(r[k] for r in runs[name]) * 1000

        faces = {k: sum(r[2] for r in v) // args.rounds for k, v in runs.items()}
        if peer is None:
            print(f"| {w}x{h} | (peer not importable) | {med('ours', 0):.1f} | - | - / {med('ours', 1):.0f} "
                  f"| - / {faces['ours']} |")
        else:
            print(f"| {w}x{h} | {med('peer', 0):.1f} | {med('ours', 0):.1f} | "
                  f"**{med('peer', 0) / med('ours', 0):.2f}x** | {med('peer', 1):.0f} / {med('ours', 1):.0f} "
                  f"| {faces['peer']} / {faces['ours']} |")
        sys.stdout.flush()
    print(f"# load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
