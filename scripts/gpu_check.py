#!/usr/bin/env python3
"""One device call: livefaces' torch engine on CUDA — fidelity, speed against facenet-pytorch,
extraction at the FastMTCNN settings — within a time budget. Run by scripts/gpu_check.sh
(which installs the carried wheels); prints a Markdown table last and writes gpu_check.json
to --out. docs/benchmarks.md ("GPU (CUDA)") has the exact command for the device machine.

    python3 scripts/gpu_check.py --out $OUT [--media DIR] [--video FILE] [--budget 360]
    python3 scripts/gpu_check.py --device cpu --tiny --no-peer   # CPU dry run (in the tests)

Sections, in order (each is skipped, and listed as skipped, once the budget is spent):
env (versions, engine choice, doctor) -> fidelity (torch engine on the device, TF32 on and off,
and the peer, each against the ONNX engine on the CPU; batch invariance) -> detection speed
(livefaces torch engine vs facenet-pytorch MTCNN, both on the device, 1080p and 720p, batches
1/16/64/256, warm-up, synchronised timing, median; plus livefaces' cascade alone on a tensor
already on the device) -> extraction (a 1080p clip, stride 4, resize 0.5, 60 video frames per
batch = 15 detected per call, factor 0.6, margin 14; OpenCV decoding, and PyAV if present;
the peer's FastMTCNN recipe from scripts/bench_extract.py; projected to the seed's 2-hour
film, 72,000 detected frames) -> diagnostics (host waits per call counted by the profiler on
any device and by CUDA's sync debug mode per source line, profiler top ops, A/B of TF32 allowed
and cudnn.benchmark, CUDA graph of the P-Net pyramid) -> live, if time is left (N streams of
the first size at 25 fps decoded on the CPUs, every frame detected: the largest N with p95
capture->result < 100 ms and nothing dropped). Not measured: ONNX Runtime on CUDA
(onnxruntime-gpu cannot travel), listed as such in the JSON and the table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

T0 = time.monotonic()
RESULTS: dict = {"sections": {}, "errors": [], "skipped": []}
ROWS: list[tuple[str, str, str, str, str]] = []  # summary: what, livefaces, peer, ratio, notes
DEADLINE = [T0 + 360.0]


def log(*parts: object) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s]", *parts, flush=True)


def left() -> float:
    return DEADLINE[0] - time.monotonic()


def row(what: str, ours: str = "", peer: str = "", ratio: str = "", notes: str = "") -> None:
    ROWS.append((what, ours, peer, ratio, notes))


def section(name: str, fn, need: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    if left() < need:
        RESULTS["skipped"].append(name)
        log(f"SKIP {name}: {left():.0f} s of budget left, needs ~{need:.0f}")
        return
    t = time.monotonic()
    log(f"== {name}")
    try:
        RESULTS["sections"][name] = fn()
    except Exception as e:  # noqa: BLE001 - one broken section must not lose the others
        traceback.print_exc()
        RESULTS["errors"].append(f"{name}: {type(e).__name__}: {e}")
        row(f"{name}: ERROR", notes=f"{type(e).__name__}: {str(e)[:90]}")
    log(f"== {name}: {time.monotonic() - t:.1f} s")


# -- PyAV: optional here; without it extract() decodes with OpenCV (below) ------------------------
def av_state(force_missing: bool) -> str:
    """``PyAV x.y`` or ``missing`` (livefaces imports without it; its video paths say so)."""
    if force_missing:
        sys.modules["av"] = None  # type: ignore[assignment]
        return "missing (--no-av)"
    try:
        import av

        return f"PyAV {av.__version__}"
    except ImportError:
        return "missing: OpenCV decoding only"


def cv2_iter_video(path, stride=1, stop=None, max_pixels=None):  # type: ignore[no-untyped-def]
    """``livefaces.extract.decode.iter_video`` on OpenCV: (index, pts, rgb) of every stride-th
    frame; the others are grabbed (decoded) but not converted, as PyAV's path does."""
    import cv2

    from livefaces.errors import SourceError

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"{path}: OpenCV cannot open it")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    k = 0
    try:
        while stop is None or not stop.is_set():
            if k % stride:
                if not cap.grab():
                    return
            else:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield k, (k / fps if fps else None), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            k += 1
    finally:
        cap.release()


def cv2_count_frames(path) -> int | None:  # type: ignore[no-untyped-def]
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    return n or None


@contextlib.contextmanager
def decoding(decoder: str):  # type: ignore[no-untyped-def]
    """``extract()`` decodes with ``decoder`` ("cv2" or "pyav") inside the block."""
    import livefaces.extract.job as job

    saved = job.iter_video, job.count_frames
    if decoder == "cv2":
        job.iter_video, job.count_frames = cv2_iter_video, cv2_count_frames
    try:
        yield
    finally:
        job.iter_video, job.count_frames = saved


# -- torch helpers -----------------------------------------------------------------------------
def torch_mod():  # type: ignore[no-untyped-def]
    import torch

    return torch


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def sync(device: str) -> None:
    if is_cuda(device):
        torch_mod().cuda.synchronize()


def tf32_allowed(on: bool) -> None:
    """A/B only: let the engine run with torch's TF32 defaults (it forces full fp32 itself)."""
    import contextlib as _cl

    from livefaces.detect import torch_engine as te

    if on:
        tf32_allowed.saved = te._full_fp32  # type: ignore[attr-defined]
        te._full_fp32 = lambda _dev: _cl.nullcontext()  # type: ignore[assignment]
    elif hasattr(tf32_allowed, "saved"):
        te._full_fp32 = tf32_allowed.saved  # type: ignore[attr-defined]


def mem_reset(device: str) -> None:
    if is_cuda(device):
        torch = torch_mod()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def mem_peak_gb(device: str) -> float | None:
    if not is_cuda(device):
        return None
    return torch_mod().cuda.max_memory_allocated() / 2**30


# -- inputs ------------------------------------------------------------------------------------
def read_video(path: Path, limit: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise RuntimeError(f"{path}: OpenCV decoded no frame")
    return frames


def fit(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    if rgb.shape[1] == w and rgb.shape[0] == h:
        return rgb
    shrink = rgb.shape[1] > w
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def frames_at(source: list[np.ndarray], w: int, h: int, n: int) -> list[np.ndarray]:
    """``n`` distinct frames of ``w``×``h``: the source cycled, every second cycle mirrored."""
    out = []
    for i in range(n):
        f = fit(source[i % len(source)], w, h)
        if (i // len(source)) % 2:
            f = np.ascontiguousarray(f[:, ::-1])
        out.append(f)
    return out


def write_clip(path: Path, source: list[np.ndarray], w: int, h: int, n: int, fps: float = 25.0) -> None:
    import cv2

    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not vw.isOpened():
        raise RuntimeError("cv2.VideoWriter (mp4v) cannot open; no clip")
    for f in frames_at(source, w, h, n):
        vw.write(np.ascontiguousarray(f[:, :, ::-1]))
    vw.release()


# -- engines -----------------------------------------------------------------------------------
def livefaces_engine(engine: str, device: str, **kw):  # type: ignore[no-untyped-def]
    from livefaces.detect import DetectorOptions, make_engine

    return make_engine(DetectorOptions(engine=engine, device=device, **kw))


def peer_engine(device: str, min_face: float = 20.0, factor: float = 0.709):  # type: ignore[no-untyped-def]
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, min_face_size=min_face, factor=factor, device=device)


def peer_faces(mtcnn, images: list[np.ndarray]):  # type: ignore[no-untyped-def]
    """facenet-pytorch's detections of a same-size batch, as livefaces ``Faces``."""
    from livefaces.types import Faces

    boxes, probs, points = mtcnn.detect(images, landmarks=True)
    out = []
    for b, p, pt in zip(boxes, probs, points):
        if b is None:
            out.append(Faces.empty())
            continue
        out.append(Faces(np.asarray(b, np.float32).reshape(-1, 4), np.asarray(p, np.float32).reshape(-1),
                         np.asarray(pt, np.float32).reshape(-1, 5, 2)))
    return out


def agree(ref, got) -> dict:  # type: ignore[no-untyped-def]
    """tests/test_engines.py's assert_same as numbers: same count, IoU >= 0.99, landmarks
    < 0.5 px, scores < 1e-3 (``ref`` the ONNX engine on the CPU)."""
    from livefaces.compare import iou_matrix

    d: dict = {"n_ref": len(ref), "n": len(got)}
    if len(ref) == 0 or len(got) == 0:
        d["same"] = len(ref) == len(got)
        return d
    iou = iou_matrix(ref.boxes, got.boxes)
    best = iou.argmax(axis=1)
    d["min_iou"] = float(iou.max(axis=1).min())
    d["max_box_px"] = float(np.abs(ref.boxes - got.boxes[best]).max())
    d["max_landmark_px"] = float(np.abs(ref.landmarks - got.landmarks[best]).max())
    d["max_score_diff"] = float(np.abs(ref.scores - got.scores[best]).max())
    d["same"] = bool(len(ref) == len(got) and d["min_iou"] >= 0.99 and d["max_landmark_px"] < 0.5
                     and d["max_score_diff"] < 1e-3)
    return d


# -- sections ----------------------------------------------------------------------------------
def sec_env(args: argparse.Namespace) -> dict:
    import cv2

    env: dict = {"python": platform.python_version(), "cv2": cv2.__version__, "numpy": np.__version__,
                 "av": args.av_state, "cpus": os.cpu_count()}
    torch = torch_mod()
    env["torch"] = torch.__version__
    env["torch_cuda"] = torch.version.cuda
    env["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                      "memory_gib": round(p.total_memory / 2**30, 1)}
        env["cudnn"] = torch.backends.cudnn.version()
    try:
        conv = torch.backends.cudnn.conv.fp32_precision
    except AttributeError:
        conv = f"allow_tf32={torch.backends.cudnn.allow_tf32}"
    env["tf32_default"] = {"cudnn.conv": conv, "cudnn.benchmark": torch.backends.cudnn.benchmark,
                           "engine": "full fp32 while it runs (torch_engine._full_fp32)"}
    for mod in ("torchvision", "facenet_pytorch", "onnxruntime"):
        try:
            m = __import__(mod)
            env[mod] = getattr(m, "__version__", "?")
        except Exception as e:  # noqa: BLE001
            env[mod] = f"not available ({type(e).__name__}: {e})"
    try:
        import onnxruntime as ort

        env["ort_providers"] = ort.get_available_providers()
    except Exception:  # noqa: BLE001
        pass
    from livefaces.detect.engine import engine_report, resolve

    env["resolve_auto_auto"] = list(resolve("auto", "auto"))
    env["engine_report"] = engine_report()
    env["nvidia_proc"] = os.path.exists("/proc/driver/nvidia/version")
    log(json.dumps(env, default=str))
    if args.doctor:  # the CLI imports every command module, extract's (PyAV) too
        from livefaces.cli import main as cli_main

        try:
            env["doctor_rc"] = cli_main(["doctor"])
        except SystemExit as e:
            env["doctor_rc"] = e.code
    gpu = env.get("gpu", {}).get("name", "no GPU")
    row("machine", f"{gpu}, torch {env['torch']}", f"torchvision {env['torchvision']}", "",
        f"auto engine -> {'/'.join(env['resolve_auto_auto'])}; av: {args.av_state}")
    return env


def fidelity_images(args: argparse.Namespace, source: list[np.ndarray]) -> list[tuple[str, np.ndarray]]:
    from livefaces.imageio import IMAGE_SUFFIXES, read_image

    root = Path(args.root)
    imgs = [("grace_hopper", read_image(root / "livefaces/data/grace_hopper.jpg"))]
    try:
        from skimage import data as skdata

        imgs.append(("astronaut", np.ascontiguousarray(skdata.astronaut()[:, :, :3])))
    except Exception:  # noqa: BLE001 - scikit-image is on the device, maybe not here
        pass
    picks = [0, len(source) // 4, len(source) // 2, (3 * len(source)) // 4]
    for i in picks:
        imgs.append((f"clip{i}", source[i]))
    for (w, h) in args.sizes[:2]:
        if source[0].shape[:2] != (h, w):  # the clip at the timed sizes too
            imgs += [(f"clip{i}@{w}x{h}", fit(source[i], w, h)) for i in picks[:2]]
    if args.media:
        files = sorted(p for p in Path(args.media).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for p in files[: args.media_limit]:
            img = read_image(p)
            if img.shape[0] * img.shape[1] <= 2.2e6:
                imgs.append((p.name, img))
    return imgs


def sec_fidelity(args: argparse.Namespace, source: list[np.ndarray]) -> dict:
    images = fidelity_images(args, source)[: args.fidelity_limit]
    onnx = livefaces_engine("onnx", "cpu")
    lf = livefaces_engine("torch", args.device)
    refs = [onnx.detect(img) for _, img in images]
    runs: dict = {}
    label = "fp32"  # the engine turns TF32 off while it runs (torch_engine._full_fp32)
    runs[f"torch:{args.device}:{label}"] = [lf.detect(img) for _, img in images]
    if is_cuda(args.device):
        small = [i for i, (_, img) in enumerate(images) if img.shape[0] * img.shape[1] <= 0.6e6]
        cpu_eng = livefaces_engine("torch", "cpu")
        runs["torch:cpu"] = {i: cpu_eng.detect(images[i][1]) for i in small}
        del cpu_eng
    if args.peer:
        try:
            mtcnn = peer_engine(args.device)
            runs[f"peer:{args.device}"] = [peer_faces(mtcnn, [img])[0] for _, img in images]
            del mtcnn
        except Exception as e:  # noqa: BLE001 - the peer is context, livefaces' rows still count
            traceback.print_exc()
            RESULTS["errors"].append(f"fidelity peer: {type(e).__name__}: {e}")
    per_image = []
    summary: dict = {}
    for name, got in runs.items():
        idx = got.keys() if isinstance(got, dict) else range(len(images))
        checks = {images[i][0]: agree(refs[i], got[i]) for i in idx}
        per_image.append({name: checks})
        same = sum(c["same"] for c in checks.values())
        worst = {k: max((c.get(k, 0.0) for c in checks.values()), default=0.0)
                 for k in ("max_box_px", "max_landmark_px", "max_score_diff")}
        counts = sum(c["n"] != c["n_ref"] for c in checks.values())
        summary[name] = {"same": same, "of": len(checks), "count_mismatch": counts, **worst}
        log(f"fidelity {name}: {same}/{len(checks)} same as onnx:cpu; {worst}; count mismatches {counts}")
        bad = [k for k, c in checks.items() if not c["same"]]
        if bad:
            log(f"  differing: {bad[:8]}")
        row(f"fidelity vs onnx:cpu, {name}", f"{same}/{len(checks)} same", "", "",
            f"max d score {worst['max_score_diff']:.1e}, lm {worst['max_landmark_px']:.2f} px, "
            f"box {worst['max_box_px']:.2f} px, count diff {counts}")
    # batch invariance on the device: a same-size batch and a mixed-size batch against the single
    # images, in each precision (cuDNN may pick other algorithms for other batch sizes)
    clip_shape = source[0].shape
    same_size = [i for i, (_, img) in enumerate(images) if img.shape == clip_shape]
    inv: dict = {}
    single = runs[f"torch:{args.device}:{label}"]
    batched = lf.detect_batch([images[i][1] for i in same_size])
    mixed = lf.detect_batch([img for _, img in images])
    inv[label] = {"same_size": sum(agree(single[i], b)["same"] for i, b in zip(same_size, batched)),
                  "of_same_size": len(same_size),
                  "mixed_sizes": sum(agree(single[i], m)["same"] for i, m in enumerate(mixed)),
                  "of_mixed": len(images)}
    log(f"batch invariance on {args.device}: {inv}")
    for label, v in inv.items():
        ok = v["same_size"] == v["of_same_size"] and v["mixed_sizes"] == v["of_mixed"]
        row(f"batch == single images ({label})", "yes" if ok else "NO", "", "",
            f"same-size {v['same_size']}/{v['of_same_size']}, mixed {v['mixed_sizes']}/{v['of_mixed']}")
    return {"images": [(n, list(img.shape)) for n, img in images], "summary": summary,
            "per_image": per_image, "batch_invariance": inv}


def timed(fn, batches, device: str, min_s: float, max_reps: int) -> dict:  # type: ignore[no-untyped-def]
    """Warm-up call, then synchronised calls rotating over ``batches`` until ``min_s`` seconds
    and 3 calls (or ``max_reps``; one call if a call takes longer than min_s)."""
    t = time.perf_counter()
    out = fn(batches[0])
    sync(device)
    warm = time.perf_counter() - t
    times: list[float] = []
    while len(times) < max_reps:
        b = batches[(len(times) + 1) % len(batches)]
        sync(device)
        t = time.perf_counter()
        fn(b)
        sync(device)
        times.append(time.perf_counter() - t)
        if sum(times) >= min_s and (len(times) >= 3 or times[-1] > min_s) or left() < 10:
            break
    faces = sum(len(f) for f in out)
    return {"median_s": statistics.median(times), "min_s": min(times), "reps": len(times),
            "warmup_s": warm, "faces_first_batch": int(faces)}


def sec_speed(args: argparse.Namespace, source: list[np.ndarray]) -> dict:
    torch = torch_mod()
    dev = args.device
    lf = livefaces_engine("torch", dev)
    mtcnn = None
    if args.peer:
        try:
            mtcnn = peer_engine(dev)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            RESULTS["errors"].append(f"speed peer: {type(e).__name__}: {e}")
    res: dict = {}
    for (w, h) in args.sizes:
        frames = frames_at(source, w, h, max(args.batches))
        per_frame = {"livefaces": None, "peer": None}  # seconds per frame at the last batch size
        for bsz in args.batches:
            batches = [frames[i:i + bsz] for i in range(0, len(frames) - bsz + 1, bsz)][:4]
            key = f"{w}x{h}/b{bsz}"
            entry: dict = {}
            for impl in ("livefaces", "peer", "livefaces_cascade"):
                if impl == "peer" and mtcnn is None:
                    continue
                base = per_frame["livefaces" if impl == "livefaces_cascade" else impl]
                guess = (base or 0.0) * bsz
                if guess > args.call_cap or left() < guess * 3 + 10:
                    entry[impl] = {"skipped": f"predicted {guess:.1f} s per call"}
                    continue
                mem_reset(dev)
                if impl == "livefaces":
                    fn = lf.detect_batch
                    use = batches
                elif impl == "peer":
                    def fn(b, m=mtcnn):  # type: ignore[no-untyped-def]
                        return [() if x is None else x for x in m.detect(b)[0]]
                    use = batches
                else:  # the cascade on a uint8 batch already on the device: no host copies
                    use = [torch.from_numpy(np.stack(b)).to(dev) for b in batches[:2]]

                    def fn(t):  # type: ignore[no-untyped-def]
                        from livefaces.detect.torch_engine import _full_fp32

                        with torch.inference_mode(), _full_fp32(lf.device):
                            return lf._cascade(t)
                try:
                    r = timed(fn, use, dev, args.min_time, args.max_reps)
                except Exception as e:  # noqa: BLE001 - OOM or a peer failure: the next config
                    traceback.print_exc()
                    entry[impl] = {"error": f"{type(e).__name__}: {str(e)[:160]}"}
                    RESULTS["errors"].append(f"speed {key} {impl}: {type(e).__name__}: {str(e)[:160]}")
                    del use
                    mem_reset(dev)
                    continue
                r["fps"] = bsz / r["median_s"]
                r["peak_mem_gib"] = mem_peak_gb(dev)
                entry[impl] = r
                del use
                if impl != "livefaces_cascade":
                    per_frame[impl] = r["median_s"] / bsz
                peak = f"{r['peak_mem_gib']:.1f} GiB" if r["peak_mem_gib"] is not None else "-"
                log(f"{key} {impl}: {r['fps']:.1f} frames/s (median {1000 * r['median_s']:.1f} ms, "
                    f"{r['reps']} reps, warm-up {r['warmup_s']:.2f} s, peak {peak}, "
                    f"faces in 1st batch {r['faces_first_batch']})")
            res[key] = entry
            lf_r, peer_r = entry.get("livefaces", {}), entry.get("peer", {})
            lfp, pp = lf_r.get("fps"), peer_r.get("fps")
            cas = entry.get("livefaces_cascade", {}).get("fps")
            notes = [f"cascade alone {cas:.1f}" if cas else "",
                     f"peak {lf_r['peak_mem_gib']:.1f} GiB" if lf_r.get("peak_mem_gib") is not None else "",
                     f"faces {lf_r.get('faces_first_batch', '-')}/{peer_r.get('faces_first_batch', '-')}",
                     str(lf_r.get("skipped") or lf_r.get("error") or peer_r.get("skipped")
                         or peer_r.get("error") or "")]
            row(f"detect {w}x{h}, batch {bsz}, frames/s", f"{lfp:.1f}" if lfp else "-",
                f"{pp:.1f}" if pp else "-", f"{lfp / pp:.2f}x" if lfp and pp else "-",
                "; ".join(n for n in notes if n))
        del frames
    mem_reset(dev)
    return res


#: facenet-pytorch's FastMTCNN notebook: every 4th frame, frames halved, batches of 60 video frames
FAST_MTCNN = {"stride": 4, "resize": 0.5, "batch": 60, "min_face": 20.0, "factor": 0.6, "margin": 14}


#: the seed's job: a 2-hour 24 fps film, 10 frames detected per second (the promise: 12 minutes at
#: 100 frames/s instead of 20 hours)
FILM_DETECTED = 72_000


def sec_extract(args: argparse.Namespace, source: list[np.ndarray], work: Path) -> dict:
    from livefaces.detect import DetectorOptions, make_engine
    from livefaces.extract import ExtractOptions

    dev, fm = args.device, FAST_MTCNN
    w, h = args.sizes[0]
    clips = work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    if args.video and source[0].shape[:2] == (h, w):
        base, what = Path(args.video), Path(args.video).name  # a real clip of the first size
    else:
        base, what = clips / "synthetic.mp4", f"synthetic {w}x{h} mp4v, {args.clip_frames} frames"
        write_clip(base, source, w, h, args.clip_frames)
    videos = []
    for i in range(args.copies):
        videos.append(clips / f"copy{i}{base.suffix}")
        shutil.copyfile(base, videos[-1])
    n_frames = sum(cv2_count_frames(v) or 0 for v in videos)
    detector = DetectorOptions("torch", dev, min_face_size=fm["min_face"], factor=fm["factor"])
    opts = ExtractOptions(stride=fm["stride"], resize=fm["resize"], detector=detector,
                          batch_size=fm["batch"] // fm["stride"], margin=fm["margin"], crop_size=160)
    det = make_engine(detector)
    decoders = ["cv2"] + ([] if args.av_state.startswith("missing") else ["pyav"])
    runs = []
    for _ in range(args.extract_reps):  # alternated; the first round also warms both up
        runs += [(f"livefaces torch:{dev}, {d} decoding", d) for d in decoders]
        if args.peer:
            runs.append(("facenet-pytorch FastMTCNN recipe (cv2)", "peer"))
    if args.extract_onnx:
        runs.append(("livefaces onnx:cpu, cv2 decoding", "onnx"))
    best: dict = {}
    for name, kind in runs:
        if left() < 25:
            RESULTS["skipped"].append(f"extract: {name}")
            continue
        out = work / f"out_{kind}"
        shutil.rmtree(out, ignore_errors=True)
        try:
            r = extract_run(args, kind, videos, out, opts, det)
        except Exception as e:  # noqa: BLE001 - one failing run must not lose the others
            traceback.print_exc()
            RESULTS["errors"].append(f"extract {name}: {type(e).__name__}: {str(e)[:160]}")
            continue
        finally:
            shutil.rmtree(out, ignore_errors=True)
        r["video_fps"] = n_frames / r["seconds"]
        r["detected_fps"] = r["detected"] / r["seconds"]
        log(f"extract {name}: {r['video_fps']:.1f} video frames/s, {r['detected_fps']:.1f} detected/s, "
            f"{r['faces']} faces, {r['seconds']:.1f} s")
        if name not in best or r["seconds"] < best[name]["seconds"]:
            best[name] = r
    peer = best.get("facenet-pytorch FastMTCNN recipe (cv2)")
    for name, r in best.items():
        if name.startswith("facenet"):
            continue
        r["film_minutes"] = FILM_DETECTED / r["detected_fps"] / 60 if r["detected_fps"] else None
        film = f"{r['film_minutes']:.1f} min" if r["film_minutes"] else "-"
        row(f"extract {what} x{args.copies}, video frames/s ({name})", f"{r['video_fps']:.1f}",
            f"{peer['video_fps']:.1f}" if peer else "-",
            f"{r['video_fps'] / peer['video_fps']:.2f}x" if peer else "-",
            f"faces {r['faces']}/{peer['faces'] if peer else '-'}; detected/s {r['detected_fps']:.1f}; "
            f"2-hour film (72,000 detected): {film} (seed: 12 min)")
    return {"clip": what, "copies": args.copies, "video_frames": n_frames, "settings": fm, "runs": best}


def extract_run(args, kind, videos, out, opts, det) -> dict:  # type: ignore[no-untyped-def]
    """One timed extraction: ``extract()`` decoding with OpenCV ("cv2") or PyAV ("pyav"), the
    ONNX engine on the CPU ("onnx"), or the peer's recipe from scripts/bench_extract.py ("peer")."""
    from livefaces.detect import make_engine
    from livefaces.extract import extract

    fm = FAST_MTCNN
    if kind == "peer":
        sys.path.insert(0, str(Path(args.root) / "scripts"))
        import bench_extract

        ns = argparse.Namespace(margin=fm["margin"], min_face=fm["min_face"], factor=fm["factor"],
                                peer_device=args.device, batch=fm["batch"], resize=fm["resize"],
                                stride=fm["stride"])
        _, detected, faces, secs = bench_extract.run_peer(videos, ns)
        return {"seconds": secs, "detected": int(detected), "faces": int(faces)}
    engine = det
    if kind == "onnx":
        opts = dataclasses.replace(opts, detector=dataclasses.replace(opts.detector, engine="onnx",
                                                                      device="cpu"))
        engine = make_engine(opts.detector)
    with decoding("pyav" if kind == "pyav" else "cv2"):
        t = time.perf_counter()
        report = extract(videos, out, opts, detector=engine)
        secs = time.perf_counter() - t
    if report.failed:
        log(f"extract failures: {report.failed}")
    return {"seconds": secs, "detected": int(report.frames), "faces": int(report.faces),
            "failed": len(report.failed)}


def sec_live(args: argparse.Namespace, source: list[np.ndarray], work: Path) -> dict:
    """N streams of the first size at 25 fps, decoded on the CPUs (OpenCV, one thread each,
    paced like a camera), every frame detected by one torch engine, batched across streams
    (all frames waiting): the largest N (doubling) with p95 capture->result < 100 ms, nothing
    dropped (at most 2 frames per stream wait) and the streams at >= 95 % of 25 fps."""
    w, h = args.sizes[0]
    if args.video and source[0].shape[:2] == (h, w):
        clip = Path(args.video)
    else:
        clip = work / "live.mp4"
        write_clip(clip, source, w, h, args.clip_frames)
    lf = livefaces_engine("torch", args.device)
    runs: dict = {}
    best, n = 0, 1
    while n <= args.live_max and left() > args.live_seconds + 15:
        r = live_run(lf, clip, n, args.live_seconds, args.device)
        runs[n] = r
        r["ok"] = r["p95_ms"] is not None and r["p95_ms"] < 100 and r["dropped"] == 0 \
            and r["stream_fps"] >= 0.95 * 25
        log(f"live {n} x {w}x{h}@25: p95 {r['p95_ms']} ms, dropped {r['dropped']}, "
            f"{r['stream_fps']:.1f} frames/s per stream, batch mean {r['batch_mean']:.1f}")
        if not r["ok"]:
            break
        best, n = n, n * 2
    last = runs.get(n) or {}
    row(f"live {w}x{h}@25 streams, every frame detected (p95 < 100 ms, no drops)", str(best), "", "",
        f"at {n}: p95 {last.get('p95_ms')} ms, dropped {last.get('dropped')}" if last else "")
    return {"max_streams": best, "runs": runs}


def live_run(lf, clip: Path, n: int, seconds: float, device: str, fps: float = 25.0) -> dict:  # type: ignore[no-untyped-def]
    import threading

    import cv2

    cond = threading.Condition()
    pending: list[tuple[float, np.ndarray]] = []
    stop = threading.Event()
    t_start = time.perf_counter()
    warm = t_start + 1.0  # the first second warms up; not counted
    counts = {"captured": 0, "dropped": 0}

    def reader() -> None:
        cap = cv2.VideoCapture(str(clip))
        t0, i = time.perf_counter(), 0
        while not stop.is_set():
            ok, bgr = cap.read()
            if not ok:
                cap.release()
                cap = cv2.VideoCapture(str(clip))
                continue
            delay = t0 + i / fps - time.perf_counter()
            i += 1
            if delay > 0:
                time.sleep(delay)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            now = time.perf_counter()
            with cond:
                if now > warm:
                    counts["captured"] += 1
                if len(pending) >= 2 * n:
                    pending.pop(0)
                    if now > warm:
                        counts["dropped"] += 1
                pending.append((now, rgb))
                cond.notify()
        cap.release()

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    lat: list[float] = []
    sizes: list[int] = []
    end = t_start + 1.0 + seconds
    while time.perf_counter() < end:
        with cond:
            while not pending and time.perf_counter() < end:
                cond.wait(0.05)
            batch = list(pending)
            pending.clear()
        if not batch:
            continue
        lf.detect_batch([f for _, f in batch])
        sync(device)
        done = time.perf_counter()
        if done > warm:
            lat += [done - c for c, _ in batch if c > warm]
            sizes.append(len(batch))
    stop.set()
    for t in threads:
        t.join(timeout=5)
    p95 = round(1000 * float(np.percentile(lat, 95)), 1) if lat else None
    return {"streams": n, "frames": len(lat), "p95_ms": p95, "dropped": counts["dropped"],
            "stream_fps": counts["captured"] / n / seconds,
            "batch_mean": float(np.mean(sizes)) if sizes else 0.0}


def sec_diag(args: argparse.Namespace, source: list[np.ndarray], out_dir: Path) -> dict:
    torch = torch_mod()
    dev = args.device
    w, h = args.sizes[0]
    lf = livefaces_engine("torch", dev)
    res: dict = {}
    b_small = frames_at(source, w, h, 1)
    b_big = frames_at(source, w, h, args.diag_batch)
    # 0. host waits per call, counted by the profiler (any device; the tests assert the CPU count)
    from torch.profiler import ProfilerActivity, profile

    from livefaces.detect.torch_engine import SYNC_OPS

    res["syncs_per_call"], res["sync_ops"] = {}, {}
    for label, batch in (("b1", b_small), (f"b{args.diag_batch}", b_big)):
        lf.detect_batch(batch)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            lf.detect_batch(batch)
        ops = {e.key: e.count for e in prof.key_averages() if e.key in SYNC_OPS}
        res["syncs_per_call"][label] = sum(ops.values())
        res["sync_ops"][label] = ops
        log(f"host waits per call, {w}x{h} {label}: {sum(ops.values())} {ops}")
        row(f"host waits per detect_batch (profiler), {w}x{h} {label}", str(sum(ops.values())), "", "",
            ", ".join(f"{k} x{v}" for k, v in ops.items()))
    res["exact_nms_reruns"] = lf.exact_reruns
    # 1. synchronising CUDA calls per source line (torch's sync debug mode)
    if is_cuda(dev):
        for label, batch in (("b1", b_small), (f"b{args.diag_batch}", b_big)):
            lf.detect_batch(batch)
            torch.cuda.set_sync_debug_mode("warn")
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    lf.detect_batch(batch)
            finally:
                torch.cuda.set_sync_debug_mode("default")
            where = Counter(f"{Path(x.filename).name}:{x.lineno}" for x in caught
                            if "synchroniz" in str(x.message))
            res[f"syncs_{label}"] = {"total": sum(where.values()), "by_line": dict(where.most_common(25))}
            log(f"synchronising calls, {w}x{h} {label}: {sum(where.values())}; top {where.most_common(8)}")
            row(f"host syncs per detect_batch, {w}x{h} {label}", str(sum(where.values())), "", "",
                ", ".join(f"{k} x{v}" for k, v in where.most_common(3)))
    # 2. profiler: top ops of one batch, and the runtime calls that stall the host
    if left() > 30:
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if is_cuda(dev) else [])
        lf.detect_batch(b_big)
        with profile(activities=acts) as prof:
            lf.detect_batch(b_big)
            sync(dev)
        ka = prof.key_averages()
        tables = []
        for key in ("self_device_time_total", "self_cuda_time_total") if is_cuda(dev) else ():
            try:  # the device-time key's name changed across torch versions
                tables.append(f"sorted by {key}\n" + ka.table(sort_by=key, row_limit=30))
                break
            except Exception:  # noqa: BLE001
                continue
        tables.append("sorted by self_cpu_time_total (host overhead)\n"
                      + ka.table(sort_by="self_cpu_time_total", row_limit=30))
        (out_dir / f"profile_{w}x{h}_b{args.diag_batch}.txt").write_text("\n\n".join(tables))
        stalls = ("cuda", "aten::nonzero", "aten::item", "aten::_local_scalar_dense", "aten::equal")
        calls = {e.key: e.count for e in ka if e.key.startswith(stalls)}
        res["profile_calls"] = dict(sorted(calls.items(), key=lambda kv: -kv[1])[:20])
        log(f"profiler call counts: {res['profile_calls']}")
    # 3. A/B: TF32 off, cudnn.benchmark on (same frames every rep: autotuning hidden in warm-up)
    if is_cuda(dev):
        batches = [b_big]
        for label, setup, undo in (
                ("default (tf32, benchmark off)", lambda: None, lambda: None),
                ("TF32 allowed", lambda: tf32_allowed(True), lambda: tf32_allowed(False)),
                ("cudnn.benchmark", lambda: setattr(torch.backends.cudnn, "benchmark", True),
                 lambda: setattr(torch.backends.cudnn, "benchmark", False))):
            if left() < 30:
                RESULTS["skipped"].append(f"diag A/B {label}")
                continue
            setup()
            try:
                r = timed(lf.detect_batch, batches, dev, args.min_time, args.max_reps)
            finally:
                undo()
            r["fps"] = len(b_big) / r["median_s"]
            res[f"ab_{label}"] = r
            log(f"A/B {label}: {r['fps']:.1f} frames/s (warm-up {r['warmup_s']:.2f} s)")
            row(f"A/B {w}x{h} b{len(b_big)}: {label}", f"{r['fps']:.1f}", "", "",
                f"warm-up {r['warmup_s']:.1f} s")
    # 4. CUDA graph of the P-Net pyramid (pool + P-Net + threshold per level), batch 1
    if is_cuda(dev) and left() > 20:
        res["pnet_graph"] = pnet_graph(lf, b_small, dev)
        g = res["pnet_graph"]
        note = (f"graph replay {g['graph_ms']:.2f} ms ({g['levels']} levels, same masks: "
                f"{g.get('graph_matches_eager')})" if "graph_ms" in g else g.get("error", ""))
        row(f"P-Net pyramid {w}x{h} b1, ms", f"eager {g.get('eager_ms', 0):.2f}", "", "", note)
    return res


def pnet_graph(lf, batch: list[np.ndarray], dev: str) -> dict:  # type: ignore[no-untyped-def]
    torch = torch_mod()
    from livefaces.detect import boxes as bx

    pnet = lf._nets["pnet"]
    x = torch.from_numpy(np.stack(batch)).to(dev).permute(0, 3, 1, 2).to(torch.float32)
    n, _, h, w = x.shape
    sizes = [bx.scaled_size(h, w, s) for s in bx.pyramid_scales(h, w, lf.min_face_size, lf.factor)]
    thr = lf.thresholds[0]

    def pyramid():  # type: ignore[no-untyped-def]
        return [pnet(torch.nn.functional.adaptive_avg_pool2d(x, hw).permute(0, 2, 3, 1))[0] >= thr
                for hw in sizes]

    def bench(fn, reps: int = 50) -> float:  # type: ignore[no-untyped-def]
        for _ in range(3):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / reps

    out: dict = {"levels": len(sizes)}
    with torch.no_grad():
        out["eager_ms"] = bench(pyramid)
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    pyramid()
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static = pyramid()
            graph.replay()
            torch.cuda.synchronize()
            same = all(bool(torch.equal(a, b)) for a, b in zip(static, pyramid()))
            out["graph_ms"] = bench(graph.replay)
            out["graph_matches_eager"] = same
        except Exception as e:  # noqa: BLE001
            out["error"] = f"{type(e).__name__}: {str(e)[:160]}"
    log(f"P-Net pyramid graph: {out}")
    return out


# -- main --------------------------------------------------------------------------------------
def print_table() -> None:
    print()
    stopped = f"; STOPPED by {RESULTS['stopped']}" if "stopped" in RESULTS else ""
    print(f"gpu_check, {time.monotonic() - T0:.0f} s; skipped: {RESULTS['skipped'] or 'none'}; "
          f"errors: {len(RESULTS['errors'])}{stopped}")
    print("| what | livefaces | facenet-pytorch | ratio | notes |")
    print("|---|---:|---:|---:|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    for e in RESULTS["errors"]:
        print(f"ERROR {e}")
    sys.stdout.flush()


def _stop(signum: int, _frame: object) -> None:
    RESULTS["stopped"] = f"signal {signum} at {time.monotonic() - T0:.0f} s"
    raise SystemExit(f"gpu_check: stopped by signal {signum}")  # main's finally writes the JSON


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in s.split("x")) for s in text.split(",")]  # type: ignore[misc]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check_out")))
    p.add_argument("--root", default=os.getcwd(), help="the livefaces checkout (default: .)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--budget", type=float, default=360, help="seconds for all sections (default 360)")
    p.add_argument("--media", help="folder of extra test images (e.g. carried .gpu/media)")
    p.add_argument("--media-limit", type=int, default=12)
    p.add_argument("--video", help="a clip to use instead of livefaces/data/demo.mp4 (e.g. 1080p video.mp4)")
    p.add_argument("--sizes", default="1920x1080,1280x720")
    p.add_argument("--batches", default="1,16,64,256")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timed calls per config")
    p.add_argument("--max-reps", type=int, default=50)
    p.add_argument("--call-cap", type=float, default=30.0, help="skip a config predicted slower per call")
    p.add_argument("--clip-frames", type=int, default=240)
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--extract-reps", type=int, default=2)
    p.add_argument("--extract-onnx", action="store_true", help="also extract with onnx:cpu")
    p.add_argument("--diag-batch", type=int, default=64)
    p.add_argument("--no-peer", dest="peer", action="store_false")
    p.add_argument("--no-av", action="store_true", help="act as if PyAV were missing")
    p.add_argument("--no-doctor", dest="doctor", action="store_false")
    p.add_argument("--only", default="env,fidelity,speed,extract,diag,live")
    p.add_argument("--live-seconds", type=float, default=6.0, help="seconds per live run (after 1 s warm-up)")
    p.add_argument("--live-max", type=int, default=32, help="most streams tried (doubling from 1)")
    p.add_argument("--fidelity-limit", type=int, default=None, help="at most this many fidelity images")
    p.add_argument("--tiny", action="store_true", help="CPU dry run: small sizes and batches")
    args = p.parse_args()
    if args.tiny:
        args.sizes, args.batches = "320x180,256x144", "1,2"
        args.min_time, args.max_reps, args.clip_frames, args.copies = 0.0, 1, 24, 2
        args.fidelity_limit = 3
        args.live_seconds, args.live_max = 1.5, 2
        args.extract_reps, args.diag_batch = 1, 4
    args.sizes = parse_sizes(args.sizes)
    args.batches = [int(b) for b in args.batches.split(",")]
    DEADLINE[0] = T0 + args.budget
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(args.root)))
    args.av_state = av_state(args.no_av)
    signal.signal(signal.SIGTERM, _stop)
    warnings.filterwarnings("ignore", message=".*TF32.*")
    only = set(args.only.split(","))
    RESULTS["not_measured"] = [
        "ONNX Runtime on CUDA: onnxruntime-gpu (>= 210 MiB) cannot travel to the device machine",
    ]

    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    try:
        source = read_video(Path(args.video or Path(args.root) / "livefaces/data/demo.mp4"), 256)
        log(f"source frames: {len(source)} of {source[0].shape[1]}x{source[0].shape[0]}")
        if "env" in only:
            section("env", lambda: sec_env(args), need=0)
        if "fidelity" in only:
            section("fidelity", lambda: sec_fidelity(args, source), need=20)
        if "speed" in only:
            section("speed", lambda: sec_speed(args, source), need=40)
        if "extract" in only:
            section("extract", lambda: sec_extract(args, source, work), need=40)
        if "diag" in only:
            section("diag", lambda: sec_diag(args, source, args.out), need=20)
        if "live" in only:
            section("live", lambda: sec_live(args, source, work), need=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for what in RESULTS["not_measured"]:
            row(f"not measured: {what.split(':')[0]}", "-", "-", "-", what.split(": ", 1)[1])
        RESULTS["rows"] = ROWS
        RESULTS["seconds"] = time.monotonic() - T0
        (args.out / "gpu_check.json").write_text(json.dumps(RESULTS, indent=1, default=str))
        print_table()
    return 1 if RESULTS["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
