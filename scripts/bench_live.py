"""Live pipeline benchmark: a real RTSP stream with faces for N minutes.

Starts tests/rtsp_server.py (GStreamer, Debian's /usr/bin/python3) on a free loopback port,
serving WIDTHxHEIGHT @ FPS H.264 of two public-domain portraits moving over a backdrop, runs
the pipeline in this process with the default adaptive schedule and a JSON Lines publisher,
and every 30 s samples: capture fps, detection fps, frames detected vs tracked, dropped
frames, glass-to-event latency (frame capture time → event line written and flushed; and
capture → result delivered to a sink, for every frame) p50/p95/max, and process RSS.

    python scripts/bench_live.py --minutes 5 [--width 1280 --height 720 --fps 25]
        [--write docs/benchmarks.md]

"Capture time" is when the frame left the decoder (Frame.captured); the camera's own
encode/network delay is outside the process and not included.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from live_helpers import RtspServer, write_face_frames  # noqa: E402

from livefaces import Detector  # noqa: E402
from livefaces.capture import CaptureOptions  # noqa: E402
from livefaces.imageio import read_image  # noqa: E402
from livefaces.pipeline import Pipeline  # noqa: E402
from livefaces.publish import BaseSink  # noqa: E402
from livefaces.publish.jsonl import JsonlPublisher  # noqa: E402


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Lat(BaseSink):
    """Capture → result latency of every frame, sampled into windows."""

    result_queue = 64

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.window: list[float] = []
        self.count = 0
        self.indices: list[int] = []

    def on_result(self, r) -> None:  # noqa: ANN001
        with self.lock:
            self.window.append(time.monotonic() - r.frame.captured)
            self.count += 1
            self.indices.append(r.frame.index)

    def take(self) -> list[float]:
        with self.lock:
            w, self.window = self.window, []
            return w


def pct(v: list[float]) -> tuple[float, float, float]:
    if not v:
        return (math.nan, math.nan, math.nan)
    a = np.array(v) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95)), float(a.max())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--sample", type=float, default=30.0, help="seconds per table row")
    ap.add_argument("--write", type=Path, help="replace the '## Live pipeline' section of this file")
    a = ap.parse_args()
    from skimage import data

    tmp = Path(tempfile.mkdtemp(prefix="livefaces-bench-"))
    hopper = read_image(ROOT / "livefaces" / "data" / "grace_hopper.jpg")
    frames = write_face_frames(tmp / "frames", [hopper, np.ascontiguousarray(data.astronaut())],
                               n=100, size=(a.width, a.height))
    srv = RtspServer(frames, None, "--fps", str(a.fps), "--bitrate", "4000").start()
    ev_lat: list[float] = []
    ev_lock = threading.Lock()

    def written(e: dict) -> None:
        cap = datetime.fromisoformat(e["captured"].replace("Z", "+00:00")).timestamp() \
            if "captured" in e else None
        if cap is not None and e["type"] != "face.lost":
            with ev_lock:
                ev_lat.append(time.time() - cap)

    lat = Lat()
    jsonl = JsonlPublisher(tmp / "events.jsonl", on_written=written)
    uptime0 = os.getloadavg()
    p = Pipeline([srv.url], Detector(), sinks=[jsonl, lat], capture=CaptureOptions())
    rows = []
    t0 = time.monotonic()
    p.start()
    prev = None
    try:
        end = t0 + a.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(a.sample, max(0.0, end - time.monotonic())))
            st = p.stats()
            s = st.source()
            cur = (s.frames_captured, s.frames_processed, s.frames_detected, s.frames_tracked, s.dropped)
            d = [c - (prev[i] if prev else 0) for i, c in enumerate(cur)]
            prev = cur
            span = a.sample
            with ev_lock:
                evw, ev_lat[:] = list(ev_lat), []
            r50, r95, rmax = pct(lat.take())
            e50, e95, emax = pct(evw)
            rows.append({
                "t_s": round(time.monotonic() - t0), "capture_fps": d[0] / span,
                "detect_fps": d[2] / span, "detected_share": d[2] / max(1, d[1]),
                "tracked_share": d[3] / max(1, d[1]), "dropped": d[4], "events": len(evw),
                "event_p50": e50, "event_p95": e95, "event_max": emax,
                "result_p50": r50, "result_p95": r95, "result_max": rmax, "rss_mib": rss_mib(),
                "scale": st.detect_scale, "status": s.status})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        p.stop()
        srv.kill()
    st = p.stats().source()
    load = os.getloadavg()
    idx = lat.indices
    gaps = sum(1 for x, y in zip(idx, idx[1:], strict=False) if y != x + 1)
    summary = {"frames_captured": st.frames_captured, "frames_processed": st.frames_processed,
               "frames_detected": st.frames_detected, "frames_tracked": st.frames_tracked,
               "dropped": st.dropped, "reconnects": st.reconnects, "index_gaps": gaps,
               "loadavg_start": uptime0, "loadavg_end": load}
    print(json.dumps(summary), flush=True)
    if a.write:
        write_section(a, rows, summary)
    return 0


def write_section(a: argparse.Namespace, rows: list[dict], s: dict) -> None:
    cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    lines = [
        "## Live pipeline", "",
        f"`python scripts/bench_live.py --minutes {a.minutes:g} --width {a.width} --height "
        f"{a.height} --fps {a.fps} --write docs/benchmarks.md` — {datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"Hardware: {os.cpu_count()} cores ({cpu or 'unknown CPU'}), no GPU, CPU provider. "
        f"Source: a real RTSP server (GStreamer gst-rtsp-server on loopback, TCP) streaming "
        f"{a.width}×{a.height} @ {a.fps} fps H.264 with two faces (~{a.height // 2} px tall "
        f"portraits, faces ~{a.height // 8} px). Default settings: adaptive schedule (budget "
        f"100 ms, detector ≤ 50 % duty), min face 20 px, JSON Lines events to a file.",
        "",
        f"Machine load (1/5/15-min load average) at start {tuple(round(x, 2) for x in s['loadavg_start'])}, "
        f"at end {tuple(round(x, 2) for x in s['loadavg_end'])}: the pipeline's own work plus "
        f"the RTSP server's x264 encoder, which shares the same 2 cores (a real camera would "
        f"encode on its own hardware); anything else running shows in these numbers.",
        "",
        "| t (s) | capture fps | detect fps | detected / tracked | dropped | event p50 / p95 / max (ms) "
        "| result p50 / p95 / max (ms) | RSS (MiB) | detector scale |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['t_s']} | {r['capture_fps']:.1f} | {r['detect_fps']:.1f} | "
            f"{r['detected_share'] * 100:.0f} % / {r['tracked_share'] * 100:.0f} % | {r['dropped']} | "
            f"{r['event_p50']:.0f} / {r['event_p95']:.0f} / {r['event_max']:.0f} | "
            f"{r['result_p50']:.0f} / {r['result_p95']:.0f} / {r['result_max']:.0f} | "
            f"{r['rss_mib']:.0f} | {r['scale']:.2f} |")
    lines += [
        "",
        f"Totals: {s['frames_captured']} frames captured, {s['frames_processed']} delivered as "
        f"results ({s['frames_detected']} detected, {s['frames_tracked']} tracked), "
        f"{s['dropped']} dropped in the ring buffer, {s['index_gaps']} gaps in the delivered "
        f"frame indices, {s['reconnects']} reconnects.",
        "",
        "Event latency covers face.appeared/face.updated (capture → line written and flushed); "
        "result latency covers every frame (capture → result handed to a sink).",
        "",
    ]
    text = a.write.read_text() if a.write.exists() else "# Benchmarks\n\n"
    start = text.find("## Live pipeline")
    if start >= 0:
        nxt = text.find("\n## ", start + 5)
        text = text[:start] + text[nxt + 1:] if nxt >= 0 else text[:start]
    a.write.write_text(text.rstrip() + "\n\n" + "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
