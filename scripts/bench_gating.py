#!/usr/bin/env python
"""Motion gating and refinement on a real 720p25 RTSP stream (issue 11's figures).

Three runs, each against tests/rtsp_server.py (GStreamer, H.264 over RTSP, loopback), the
pipeline in this process with its defaults (adaptive schedule, motion gating, refinement):

1. **meeting**: a video-meeting gallery, 6 people in a 3x2 grid (portraits from ../shared, or
   the two registry photos twice each without it), each drifting and zooming a little like a
   seated person; ``--minutes`` long. Per 30 s window: frames by how their faces were obtained,
   verified share (detected + refined), dropped, capture → result latency p50/p95/max, CPU.
   Every ``--every``-th result frame is kept; after the run, the full detector runs on each
   kept frame (the offline reference: detection on every frame) and the live faces are
   compared: recall, precision, mean IoU, landmark error (% of face size), id switches.
2. **meeting, no gating or refinement** (``--no-motion-gating --no-refine``, as before this
   change), ``--baseline-minutes`` long, for the same comparison.
3. **empty**: the same gallery's backdrop without people, still; CPU per frame against the
   meeting's.

The peer (facenet-pytorch, ../shared/peer) detecting one meeting frame, timed in the same run,
says what verifying every frame would cost it.

    python scripts/bench_gating.py --minutes 5 [--write docs/bench/FILE.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchlib import cpu_model  # noqa: E402
from live_helpers import RtspServer  # noqa: E402

from livefaces import Detector  # noqa: E402
from livefaces.compare import Agreement  # noqa: E402
from livefaces.geometry import iou_matrix  # noqa: E402
from livefaces.imageio import read_image  # noqa: E402
from livefaces.pipeline import Pipeline  # noqa: E402
from livefaces.publish import BaseSink  # noqa: E402
from livefaces.schedule import GateOptions  # noqa: E402

SHARED = Path(os.environ.get("LIVEFACES_SHARED", ROOT.parent / "shared"))
W, H, N_FRAMES = 1280, 720, 250  # 10 s loop at 25 fps


def portraits() -> list[np.ndarray]:
    """Six head-and-shoulders crops (the face about 1/3 of the crop's height)."""
    paths = sorted((SHARED / "media" / "ageitgey__face_recognition" / "examples" / "knn_examples"
                    / "train").glob("*/*.jp*g"))
    paths += sorted((SHARED / "media" / "timesler__facenet-pytorch" / "data" / "test_images")
                    .glob("*/1.jpg"))
    det = Detector()
    out = []
    for p in paths:
        img = read_image(p)
        f = det.detect(img)
        if len(f) != 1:
            continue
        x1, y1, x2, y2 = f.boxes[0]
        s = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + 0.4 * s
        a, b = int(max(0, cx - 1.4 * s)), int(max(0, cy - 1.5 * s))
        c, d = int(min(img.shape[1], cx + 1.4 * s)), int(min(img.shape[0], cy + 1.5 * s))
        out.append(img[b:d, a:c])
        if len(out) == 6:
            break
    if len(out) < 6:  # a clean clone: the registry's photos
        from skimage import data

        hopper = read_image(ROOT / "livefaces" / "data" / "grace_hopper.jpg")
        out = (out + [hopper, np.ascontiguousarray(data.astronaut())] * 3)[:6]
    return out


def meeting_frames(people: list[np.ndarray], empty: bool = False,
                   indices: range | list[int] = range(N_FRAMES)):  # type: ignore[no-untyped-def]
    """Frames of a 3x2 gallery at 1280x720 (RGB); each tile's person drifts and zooms slightly
    (periods that divide the loop, so it loops without a jump)."""
    tw, th = W // 3, H // 2
    rng = np.random.default_rng(1)
    phases = rng.uniform(0, 2 * np.pi, (6, 3))
    periods = [N_FRAMES / k for k in (1, 2, 1, 2, 1, 2)]
    backdrop = np.zeros((H, W, 3), np.uint8)
    for k in range(6):
        r, c = divmod(k, 3)
        backdrop[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = (40 + 25 * k, 60 + 10 * k, 70)
    for i in indices:
        img = backdrop.copy()
        for k, p in enumerate(people):
            if empty:
                continue
            r, c = divmod(k, 3)
            ph = 2 * np.pi * i / periods[k]
            zoom = 1.0 + 0.05 * np.sin(ph + phases[k, 2])
            hh = int(th * 0.95 * zoom)
            ww = int(p.shape[1] * hh / p.shape[0])
            small = cv2.resize(p, (ww, hh), interpolation=cv2.INTER_AREA)
            dx = int(12 * np.sin(ph + phases[k, 0]))
            dy = int(6 * np.sin(ph + phases[k, 1]))
            x0 = c * tw + (tw - ww) // 2 + dx
            y0 = r * th + (th - hh) + dy + 10
            # paste clipped to the tile
            ax, ay = max(x0, c * tw), max(y0, r * th)
            bx, by = min(x0 + ww, (c + 1) * tw), min(y0 + hh, (r + 1) * th)
            if bx > ax and by > ay:
                img[ay:by, ax:bx] = small[ay - y0:by - y0, ax - x0:bx - x0]
        yield img


def write_meeting(folder: Path, people: list[np.ndarray], empty: bool = False) -> Path:
    """:func:`meeting_frames` as numbered JPEGs in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(meeting_frames(people, empty)):
        cv2.imwrite(str(folder / f"frame{i:05d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
    return folder


class Collector(BaseSink):
    """Latency and mode of every result; every ``every``-th frame kept with its faces."""

    result_queue = 256

    def __init__(self, every: int) -> None:
        self.lock = threading.Lock()
        self.every = every
        self.window: list[tuple[float, str, int]] = []
        self.kept: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.n = 0

    def on_result(self, r) -> None:  # noqa: ANN001
        lat = time.monotonic() - r.frame.captured
        with self.lock:
            self.window.append((lat, r.mode, len(r.faces)))
            self.n += 1
            if self.n % self.every == 0:
                self.kept.append((r.frame.image, r.faces.boxes.copy(), r.faces.landmarks.copy(),
                                  r.track_ids.copy()))

    def take(self) -> list[tuple[float, str, int]]:
        with self.lock:
            w, self.window = self.window, []
            return w


def run(url: str, seconds: float, gate: GateOptions, every: int, window: float) -> dict:
    col = Collector(every)
    det = Detector()
    p = Pipeline([url], det, sinks=[col], gate=gate)
    rows = []
    all_lat: list[float] = []
    t0 = time.monotonic()
    p.start()
    try:
        end = t0 + seconds
        prev = None
        c_prev = time.process_time()
        while time.monotonic() < end:
            time.sleep(min(window, max(0.0, end - time.monotonic())))
            s = p.stats().source()
            w = col.take()
            lat = np.array([x for x, _, _ in w]) * 1000 if w else np.array([math.nan])
            all_lat += lat.tolist()
            modes = [m for _, m, _ in w]
            with_faces = [m for _, m, n in w if n]
            c_now = time.process_time()
            dropped = s.dropped - (prev or 0)
            prev = s.dropped
            rows.append({
                "t_s": round(time.monotonic() - t0), "frames": len(w),
                "detected": modes.count("detected"), "refined": modes.count("refined"),
                "tracked": modes.count("tracked"), "skipped": modes.count("skipped"),
                "verified_share_of_frames_with_faces":
                    round(sum(m in ("detected", "refined") for m in with_faces) / max(1, len(with_faces)), 4),
                "dropped": dropped, "p50_ms": round(float(np.percentile(lat, 50)), 1),
                "p95_ms": round(float(np.percentile(lat, 95)), 1), "max_ms": round(float(lat.max()), 1),
                "cpu_ms_per_frame": round(1000 * (c_now - c_prev) / max(1, len(w)), 2)})
            c_prev = c_now
            print(json.dumps(rows[-1]), flush=True)
    finally:
        p.stop(5)
    st = p.stats()
    s = st.source()
    a = np.array(all_lat)
    a = a[np.isfinite(a)]
    return {"rows": rows, "kept": col.kept, "detector": det,
            "totals": {"frames": s.frames_processed, "captured": s.frames_captured, "dropped": s.dropped,
                       "detected": s.frames_detected, "refined": s.frames_refined,
                       "tracked": s.frames_tracked, "skipped_no_motion": s.frames_skipped,
                       "latency_ms": {"p50": round(float(np.percentile(a, 50)), 1),
                                      "p95": round(float(np.percentile(a, 95)), 1),
                                      "max": round(float(a.max()), 1)},
                       "cpu_seconds": round(st.cpu_seconds, 2),
                       "cpu_ms_per_frame": round(1000 * st.cpu_seconds / max(1, s.frames_processed), 2)}}


def quality(kept: list, det: Detector) -> dict:
    """Live faces on the kept frames against the full detector on the same frames."""
    agree = Agreement()
    switches, prev = 0, None  # id switches: a reference face followed over consecutive samples
    for img, boxes, lms, ids in kept:
        ref = det.detect(img)
        agree.add(boxes, lms, ref.boxes, ref.landmarks)
        # the live id of each reference face (best IoU >= 0.5)
        iou = iou_matrix(ref.boxes, boxes)
        live_id = [int(ids[int(np.argmax(iou[j]))]) if iou.shape[1] and iou[j].max() >= 0.5 else None
                   for j in range(len(ref))]
        if prev is not None:
            pb, pid = prev
            m = iou_matrix(ref.boxes, pb)
            for j in range(len(ref)):
                if m.shape[1] and m[j].max() >= 0.5:
                    k = int(np.argmax(m[j]))
                    if live_id[j] is not None and pid[k] is not None and live_id[j] != pid[k]:
                        switches += 1
        prev = (ref.boxes, live_id)
    return {"samples": len(kept), "ref_faces": agree.n_ref, "live_faces": agree.n_pred,
            "recall": round(agree.recall, 4), "precision": round(agree.precision, 4),
            "mean_iou": round(agree.mean_iou, 4),
            "landmark_error_pct": round(100 * agree.mean_landmark_error, 2), "id_switches": switches}


def peer_ms(frame: np.ndarray) -> float | None:
    """facenet-pytorch's MTCNN on one meeting frame (../shared/peer), ms; None without it."""
    shim = SHARED / "peer" / "shim"
    if not shim.is_dir():
        return None
    sys.path.insert(0, str(shim))
    try:
        import torch
        from facenet_pytorch import MTCNN
    except Exception:  # noqa: BLE001
        return None
    torch.set_num_threads(2)
    m = MTCNN(keep_all=True, device="cpu")
    m.detect(frame)
    t = time.perf_counter()
    for _ in range(5):
        m.detect(frame)
    return 1000 * (time.perf_counter() - t) / 5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="meeting run (default: 5)")
    ap.add_argument("--baseline-minutes", type=float, default=1.0,
                    help="meeting without gating/refinement (default: 1; 0 skips it)")
    ap.add_argument("--empty-minutes", type=float, default=1.0, help="empty still scene (default: 1)")
    ap.add_argument("--every", type=int, default=10, help="keep every N-th result for the quality check")
    ap.add_argument("--window", type=float, default=30.0, help="seconds per row")
    ap.add_argument("--write", type=Path, help="write everything as JSON here")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gating-"))
    people = portraits()
    meeting = write_meeting(tmp / "meeting", people)
    empty = write_meeting(tmp / "empty", people, empty=True)
    out: dict = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                 "load_before": os.getloadavg()[0], "stream": f"{W}x{H} @ 25 fps, H.264 over RTSP",
                 "command": "python scripts/bench_gating.py " + " ".join(sys.argv[1:])}
    first = cv2.cvtColor(cv2.imread(str(meeting / "frame00000.jpg")), cv2.COLOR_BGR2RGB)
    d = Detector()
    d.detect(first)
    t = time.perf_counter()
    for _ in range(5):
        nfaces = len(d.detect(first))
    out["livefaces_full_detect_ms"] = round(1000 * (time.perf_counter() - t) / 5, 1)
    out["faces_in_meeting_frame"] = nfaces
    pm = peer_ms(first)
    out["peer_full_detect_ms"] = None if pm is None else round(pm, 1)
    print(json.dumps({k: v for k, v in out.items()}), flush=True)
    runs = [("meeting", meeting, a.minutes, GateOptions()),
            ("meeting_no_gating_no_refine", meeting, a.baseline_minutes,
             GateOptions(motion=False, refine=False)),
            ("empty", empty, a.empty_minutes, GateOptions())]
    for name, frames, minutes, gate in runs:
        if minutes <= 0:
            continue
        srv = RtspServer(frames, None, "--fps", "25", "--bitrate", "4000").start()
        try:
            print(f"== {name}", flush=True)
            r = run(srv.url, minutes * 60, gate, a.every, a.window)
        finally:
            srv.kill()
        res = {"rows": r["rows"], "totals": r["totals"]}
        if name.startswith("meeting"):
            res["quality"] = quality(r["kept"], r["detector"])
            print(json.dumps(res["quality"]), flush=True)
        out[name] = res
        print(json.dumps(res["totals"]), flush=True)
    if "meeting" in out and "empty" in out:
        out["empty_cpu_share_of_meeting"] = round(out["empty"]["totals"]["cpu_ms_per_frame"]
                                                  / out["meeting"]["totals"]["cpu_ms_per_frame"], 3)
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}), flush=True)
    if a.write:
        a.write.parent.mkdir(parents=True, exist_ok=True)
        a.write.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
