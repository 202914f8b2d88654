#!/usr/bin/env python3
"""Detector speed: livefaces vs facenet-pytorch's MTCNN.detect, same frames, same process.

    python scripts/bench_detect.py [--video PATH | --meeting] [--frames 12] [--rounds 3]
                                   [--threads 2] [--sizes 1920x1080,1280x720,640x480] [--profile]

Frames come from a real video with faces (default: facenet-pytorch's example video in
../shared/media) or, with ``--meeting``, from the video-meeting gallery of
scripts/bench_gating.py (6 portraits in a 3x2 grid, JPEG round trip), resized to each size
(default 1920×1080, 1280×720 and 640×480). For every frame the two
detectors run alternately (peer, livefaces, peer, …) with the same settings (the defaults of
livefaces/detect/options.py: min face 20, factor 0.709, thresholds 0.6/0.7/0.7) and the same
number of threads. Prints the CPU model and its caches, then a Markdown table of median
milliseconds per frame and the speed ratio. ``--profile`` adds where livefaces' time goes per
size: milliseconds per frame in each step, summed over both lanes (pyramid resizes, P-Net,
R-Net/O-Net crops, R-Net, O-Net, the rest). The peer is the genuine facenet-pytorch package
code; on machines without torchvision it runs through ../shared/peer/shim.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from benchlib import cpu_model  # noqa: E402

from livefaces.detect.options import FACTOR, MIN_FACE_SIZE, THRESHOLDS  # noqa: E402


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


def cache_sizes() -> str:
    """``L1d 48K, L2 2048K, L3 ...`` of CPU 0, from /sys (empty where it is not readable)."""
    out = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind != "Instruction":
            out.append(f"L{level}{'d' if kind == 'Data' else ''} {size}")
    return ", ".join(out)


def meeting(n: int) -> list[np.ndarray]:
    """``n`` frames of scripts/bench_gating.py's meeting gallery (1280x720), JPEG round trip."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_gating as bg

    step = max(1, bg.N_FRAMES // n)
    out = []
    for img in bg.meeting_frames(bg.portraits(), indices=range(0, step * n, step)):
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        out.append(cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return out


class Profile:
    """Seconds spent in each step of livefaces' detector, summed over its lanes (threads).

    Wraps the functions the cascade calls (module attributes and ``Session.run``); a
    measurement aid for this script only."""

    STEPS = (("resize", "area_resize"), ("crops", "area_crops"), ("integral", "integral"),
             ("nms", "nms"), ("boxes", "generate_boxes"))

    def __init__(self) -> None:
        import threading

        from livefaces.detect import boxes, runtime

        self.lock = threading.Lock()
        self.total: dict[str, float] = {}
        for key, name in self.STEPS:
            setattr(boxes, name, self._wrap(key, getattr(boxes, name)))
        run = runtime.Session.run

        def timed_run(session, image):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return run(session, image)
            finally:
                self._add(session.name, time.perf_counter() - t0)

        runtime.Session.run = timed_run  # type: ignore[method-assign]

    def _add(self, key: str, seconds: float) -> None:
        with self.lock:
            self.total[key] = self.total.get(key, 0.0) + seconds

    def _wrap(self, key: str, fn):  # type: ignore[no-untyped-def]
        def timed(*a, **k):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self._add(key, time.perf_counter() - t0)
        return timed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path,
                    default=SHARED / "media" / "timesler__facenet-pytorch" / "examples" / "video.mp4")
    ap.add_argument("--meeting", action="store_true",
                    help="frames of the video-meeting gallery (scripts/bench_gating.py) instead of --video")
    ap.add_argument("--sizes", default="1920x1080,1280x720,640x480", help="WxH,WxH,...")
    ap.add_argument("--profile", action="store_true", help="also print where livefaces' time goes")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from livefaces import Detector

    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    profile = Profile() if args.profile else None
    cv2.setNumThreads(args.threads)
    ours = Detector(min_face_size=MIN_FACE_SIZE, factor=FACTOR, thresholds=THRESHOLDS, providers="cpu",
                    threads=args.threads)
    peer = load_peer(args.threads)
    frames = meeting(args.frames) if args.meeting else load_frames(args.video, args.frames)
    source = "meeting gallery (bench_gating.py)" if args.meeting else args.video.name
    print(f"# {cpu_model()} ({cache_sizes()}), {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at start; {args.threads} threads each; {source}, "
          f"{len(frames)} frames x {args.rounds} rounds")
    print("| size | facenet-pytorch ms | livefaces ms | speed-up | CPU ms peer / ours | faces peer / ours |")
    print("|---|---:|---:|---:|---:|---|")
    split: list[str] = []
    for w, h in sizes:
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
        if profile is not None:
            profile.total.clear()
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
        if profile is not None:
            n = len(runs["ours"])
            t = {k: v / n * 1000 for k, v in profile.total.items()}
            steps = ["resize", "pnet", "crops", "rnet", "onet"]
            cpu = med("ours", 1)
            split.append(f"| {w}x{h} | " + " | ".join(f"{t.get(k, 0):.1f}" for k in steps)
                         + f" | {sum(t.get(k, 0) for k in t if k not in steps):.1f} | {cpu:.0f} |")
    if split:
        print("\nlivefaces, ms per frame in each step summed over both lanes (rest: integral "
              "image, NMS, box generation; CPU: process time, median):\n")
        print("| size | pyramid resizes | P-Net | crops | R-Net | O-Net | rest | CPU ms |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(split))
    print(f"# load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
