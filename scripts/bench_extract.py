#!/usr/bin/env python3
"""Benchmark ``livefaces extract`` against facenet-pytorch's MTCNN run the FastMTCNN way.

    PYTHONPATH=../shared/peer/shim python scripts/bench_extract.py [VIDEO] [--copies 4]

The peer is facenet-pytorch's FastMTCNN recipe (its ``examples/face_detection.ipynb``): a
reader thread decodes with OpenCV (as imutils' ``FileVideoStream``), frames are converted to
RGB, gathered ``--batch`` at a time, *all* resized by ``--resize``, every ``--stride``-th one
goes to ``MTCNN.detect`` in one call, and the faces are sliced out of the resized frames (kept
in memory, not written). livefaces runs ``extract()`` on the same files with the same stride,
resize, min face size, factor and detector batch (``--batch / --stride`` frames per call), and
*does* write every crop (``--crop-size`` with ``--margin``) and ``index.jsonl`` to disk.

Both are timed in the same process after their models are loaded; "video frames/s" counts
every frame of the video covered (as the recipe reports it), "detected frames/s" the frames
actually run through the detector. ``--copies N`` processes N copies of the video (the sample
is 4 s long). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchlib import cpu_model  # noqa: E402

from livefaces.detect.options import MIN_FACE_SIZE  # noqa: E402

DEFAULT_VIDEO = ROOT.parent / "shared/media/timesler__facenet-pytorch/examples/video.mp4"


def run_peer(videos: list[Path], args: argparse.Namespace) -> tuple[int, int, int, float]:
    """FastMTCNN recipe; returns (video frames, detected frames, faces, seconds)."""
    import cv2
    import torch
    from facenet_pytorch import MTCNN

    device = args.peer_device
    mtcnn = MTCNN(margin=args.margin, min_face_size=args.min_face, factor=args.factor,
                  keep_all=True, device=device)
    mtcnn.detect([cv2.imread(str(ROOT / "livefaces/data/grace_hopper.jpg"))[..., ::-1].copy()])

    def reader(path: Path, q: queue.Queue) -> None:  # imutils' FileVideoStream
        cap = cv2.VideoCapture(str(path))
        while True:
            ok, frame = cap.read()
            q.put(frame if ok else None)
            if not ok:
                break
        cap.release()

    frames_total = detected = faces = 0
    t0 = time.perf_counter()
    for path in videos:
        q: queue.Queue = queue.Queue(maxsize=128)
        th = threading.Thread(target=reader, args=(path, q), daemon=True)
        th.start()
        frames: list = []
        done = False
        while not done:
            frame = q.get()
            if frame is None:
                done = True
            else:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if frames and (len(frames) >= args.batch or done):
                if args.resize != 1:
                    frames = [cv2.resize(f, (int(f.shape[1] * args.resize), int(f.shape[0] * args.resize)))
                              for f in frames]
                picked = frames[::args.stride]
                boxes, _ = mtcnn.detect(picked)
                for i, frame_ in enumerate(frames):
                    b = boxes[i // args.stride]
                    if b is None:
                        continue
                    for box in b:
                        x1, y1, x2, y2 = (int(v) for v in box)
                        crop = frame_[y1:y2, x1:x2]  # the recipe's faces (all frames)
                        faces += i % args.stride == 0 and crop.size > 0  # count detections once
                frames_total += len(frames)
                detected += len(picked)
                frames = []
        th.join()
    if device and str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return frames_total, detected, faces, time.perf_counter() - t0


def run_livefaces(videos: list[Path], args: argparse.Namespace, engine: str, device: str,
                  out: Path) -> tuple[int, int, int, float, str]:
    from livefaces.avio import count_frames
    from livefaces.detect.engine import make_engine
    from livefaces.detect.options import DetectorOptions
    from livefaces.extract import ExtractOptions, extract

    per_call = max(1, args.batch // args.stride)
    detector = DetectorOptions(engine, device, min_face_size=args.min_face, factor=args.factor,
                               threads=args.threads)
    det = make_engine(detector)
    opts = ExtractOptions(stride=args.stride, resize=args.resize, detector=detector,
                          batch_size=per_call, margin=args.margin, crop_size=args.crop_size)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    report = extract(videos, out, opts, detector=det)
    seconds = time.perf_counter() - t0
    frames_total = sum(count_frames(v) or 0 for v in videos)
    return frames_total, report.frames, report.faces, seconds, str(getattr(det, "provider", engine))


def detect_only(args: argparse.Namespace) -> int:
    """Detector throughput on decoded frames held in memory (no decode, no writing)."""
    import cv2
    import torch

    from livefaces.detect.engine import make_engine
    from livefaces.detect.options import DetectorOptions
    from livefaces.extract.decode import iter_video

    frames = [f for _, _, f in iter_video(args.video, 1)][: args.frames]
    if args.resize != 1:
        frames = [cv2.resize(f, (int(f.shape[1] * args.resize), int(f.shape[0] * args.resize)),
                             interpolation=cv2.INTER_AREA) for f in frames]
    batches = [frames[i:i + args.batch] for i in range(0, len(frames), args.batch)]
    runs = {}
    for spec in args.engines.split(","):
        engine, device = spec.split(":")
        det = make_engine(DetectorOptions(engine, device, min_face_size=args.min_face,
                                          factor=args.factor, threads=args.threads))
        runs[f"livefaces {engine} engine ({getattr(det, 'provider', device)})"] = det.detect_batch
    if not args.no_peer:
        from facenet_pytorch import MTCNN

        mtcnn = MTCNN(min_face_size=args.min_face, factor=args.factor, keep_all=True,
                      device=args.peer_device)
        runs[f"facenet-pytorch MTCNN ({args.peer_device})"] = lambda b: mtcnn.detect(b)
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            fn(batches[0])  # warm-up (cudnn autotune, allocations)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for b in batches:
                fn(b)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best[name] = min(best.get(name, 1e9), time.perf_counter() - t0)
    h, w = frames[0].shape[:2]
    print(f"detection only: {len(frames)} frames of {w}x{h} from {args.video.name}, batch {args.batch}, "
          f"min face {args.min_face:g}, factor {args.factor:g}; best of {args.repeat}; "
          f"{cpu_model()}, {os.cpu_count()} cores")
    peer = best.get(f"facenet-pytorch MTCNN ({args.peer_device})")
    print()
    print("| detector | frames/s | vs facenet-pytorch | all 72,000 frames of the seed's movie |")
    print("|---|---:|---:|---:|")
    for name, sec in best.items():
        fps = len(frames) / sec
        ratio = f"{peer / sec:.2f}×" if peer else "-"
        print(f"| {name} | {fps:.1f} | {ratio} | {72000 / fps / 60:.1f} min |")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    p.add_argument("--copies", type=int, default=4, help="process N copies of the video (default 4)")
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--resize", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=60, help="video frames per batch (recipe: 60)")
    p.add_argument("--min-face", type=float, default=MIN_FACE_SIZE)
    p.add_argument("--factor", type=float, default=0.6, help="recipe: 0.6")
    p.add_argument("--margin", type=float, default=14, help="recipe: 14")
    p.add_argument("--crop-size", type=int, default=160)
    p.add_argument("--threads", type=int, default=2, help="CPU threads for both (torch and ORT)")
    p.add_argument("--engines", default="onnx:cpu,torch:cpu",
                   help="livefaces ENGINE:DEVICE list (default onnx:cpu,torch:cpu)")
    p.add_argument("--peer-device", default="cpu")
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--repeat", type=int, default=3,
                   help="alternate the runs N times and keep each one's fastest (default 3): "
                        "the machine may be shared")
    p.add_argument("--detect-only", action="store_true",
                   help="time only the detectors on decoded frames in memory (GPU figure: use "
                        "--resize 1 --batch 64 --engines torch:cuda --peer-device cuda)")
    p.add_argument("--frames", type=int, default=256, help="--detect-only: frames to use")
    args = p.parse_args()
    if args.detect_only:
        return detect_only(args)

    import torch

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    try:
        videos = []
        for i in range(args.copies):
            v = tmp / f"copy{i}{args.video.suffix}"
            shutil.copyfile(args.video, v)
            videos.append(v)
        load_before = os.getloadavg()
        best: dict[str, tuple] = {}
        times: dict[str, list[float]] = {}

        def keep(name: str, row: tuple) -> None:
            times.setdefault(name, []).append(row[3])
            if name not in best or row[3] < best[name][3]:
                best[name] = row

        for _ in range(args.repeat):
            for spec in args.engines.split(","):
                engine, device = spec.split(":")
                keep(f"livefaces extract, {engine} engine",
                     run_livefaces(videos, args, engine, device, tmp / f"out_{engine}"))
            if not args.no_peer:
                keep("facenet-pytorch MTCNN, FastMTCNN recipe",
                     run_peer(videos, args) + (f"torch {torch.__version__} {args.peer_device}",))
        rows = [(name,) + row for name, row in best.items()]
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    peer = rows[-1] if not args.no_peer else None
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"video: {args.video.name} × {args.copies}; stride {args.stride}, resize {args.resize}, "
          f"batch {args.batch} video frames ({max(1, args.batch // args.stride)} detected per call), "
          f"min face {args.min_face:g}, factor {args.factor:g}, margin {args.margin:g}, "
          f"{args.threads} threads")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; "
          f"load avg before {load_before[0]:.2f}, after {load_after[0]:.2f}; {uptime}")
    print()
    print(f"best of {args.repeat} alternated runs; all run times (s): "
          + "; ".join(f"{k}: {', '.join(f'{t:.1f}' for t in v)}" for k, v in times.items()))
    print()
    print("| run | runs on | video frames/s | detected frames/s | faces | seconds | vs facenet-pytorch |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, frames, detected, faces, seconds, where in rows:
        ratio = f"{(frames / seconds) / (peer[1] / peer[4]):.2f}×" if peer else "-"
        print(f"| {name} | {where} | {frames / seconds:.1f} | {detected / seconds:.1f} | {faces} | "
              f"{seconds:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
