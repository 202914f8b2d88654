#!/usr/bin/env python
"""The live pipeline's quality on real footage: every clip of ../shared/media, live over RTSP.

Per clip (every ``*.mp4`` under ../shared/media; ``--clips`` filters by substring), the clip is
decoded once into JPEGs, served by tests/rtsp_server.py (GStreamer, H.264 over RTSP, loopback,
looped forever at the clip's frame rate rounded to an integer) and watched by the pipeline in
this process. Modes (``--modes``):

* ``default``: the library's defaults (adaptive schedule, motion gating, refinement), for
  ``max(clip duration, --min-seconds)`` seconds from the first result.
* ``no_gating_no_refine``: the same with ``GateOptions(motion=False, refine=False)``.
* ``full``: the full detector on every frame of the FILE (``EveryN(1)``, no gating or
  refinement, not paced), once to its end. Its CPU per frame is the denominator of
  ``CPU vs full``.

Every ``--every``-th result is kept. Afterwards a separate ``Detector()`` (default settings)
detects each kept frame offline: the reference. Metrics per clip and mode, against it:

* recall: of the reference faces with min(box w, h) >= 40 px and score >= 0.9 (the "recall
  set"), the share matched by a live face (IoU >= 0.5, one-to-one, greedy best pair first;
  one matching over all reference faces serves recall and precision).
* precision: of the live faces, the share matched to a reference face of any size or score
  (an unmatched live face is a false positive).
* IoU, landmark err %: means over the matched pairs; the landmark error is the mean distance
  of the five points over the reference face's size (sqrt of its box area), as
  livefaces.compare.Agreement computes it.
* max gap s (gaps>0.5s): reference faces are chained across consecutive kept frames (IoU >=
  0.3, greedy) into reference tracks. A run of consecutive unmatched samples of a track that
  holds at least one recall-set sample is a gap: from the last matched sample before it (or
  the run's first sample) to the first matched sample after it (or the run's last sample +
  one sample interval). The longest over all tracks, and how many exceed 0.5 s. Times are
  capture times for live runs, stream time for ``full``.
* id switches: along each reference track, changes of the matched live face's track id
  between consecutive matched samples; "(N at cuts)": N of them where the pipeline reported
  a scene cut (FrameResult.cut) in between, i.e. it ended every track on purpose (the
  reference chain, knowing nothing of cuts, links the same spot across a hard cut).
* CPU ms/frame: process CPU time (all threads: decoding, detection, tracking; not the RTSP
  server, a separate process) over the run / results delivered. The detector is warmed on
  the clip's first frame before the run.
* CPU vs full: a live mode's CPU ms/frame over the ``full`` run's on the same clip.
  Overall: the mean over clips of that ratio, and the pooled ratio (total CPU / total frames
  of the mode over the same of ``full``).
* dropped: frames lost in the capture ring buffer; p95 ms: capture -> result latency (live
  modes; indicative on a shared machine).

The JSON (``--write``) also has, per run: ``recall_all_ref`` (over every reference face),
``precision_verified`` (leaving out faces the tracker merely carried, ``how == tracked``),
``recall_by_size`` (the recall set by min(w, h): 40-80, 80-160, 160+ px), faces by ``how``,
frames by mode, wall time and latency p50.

The overall row pools the counts over clips (recall, precision, IoU, landmark error), takes
the max gap over clips, sums gaps, id switches and drops, and divides total CPU by total
frames. ``--synthetic`` adds bench_gating.py's meeting gallery (quality as above) and its
empty scene (CPU ms/frame and its share of the meeting's), default mode only, to the default
table (not pooled into its overall row).

    python scripts/bench_live_quality.py [--clips hamilton,carphone] [--modes default,full]
        [--synthetic] [--write FILE.json] [--markdown FILE.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_gating import SHARED, Collector, portraits, write_meeting  # noqa: E402
from benchlib import cpu_model  # noqa: E402
from live_helpers import RtspServer  # noqa: E402

from livefaces import Detector  # noqa: E402
from livefaces.avio import AVInput  # noqa: E402
from livefaces.errors import EndOfStream  # noqa: E402
from livefaces.geometry import iou_matrix  # noqa: E402
from livefaces.pipeline import Pipeline  # noqa: E402
from livefaces.schedule import EveryN, GateOptions  # noqa: E402

MEDIA = SHARED / "media"
MODES = ("default", "no_gating_no_refine", "full")
LIVE_MODES = ("default", "no_gating_no_refine")
MIN_SIZE, MIN_SCORE = 40.0, 0.9  # the recall set
MATCH_IOU, CHAIN_IOU, LONG_GAP = 0.5, 0.3, 0.5


# ----------------------------------------------------------------------------- collecting
@dataclass
class Sample:
    """One kept result: the image, the live faces and when."""

    image: np.ndarray | None
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    ids: np.ndarray
    how: list[str]
    mode: str
    t: float
    cut_before: bool = False  # the pipeline saw a scene cut since the previous kept sample


class Keeper(Collector):
    """bench_gating's Collector, keeping more of each ``every``-th result (scores, ``how``,
    mode, time) and counting every result's mode and latency until :meth:`freeze`."""

    def __init__(self, every: int, live: bool) -> None:
        super().__init__(every)
        self.live = live
        self.samples: list[Sample] = []
        self.latencies: list[float] = []
        self.modes: dict[str, int] = {}
        self.first = threading.Event()
        self.first_at: float | None = None
        self.frozen = False
        self._cut = False

    def on_result(self, r) -> None:  # noqa: ANN001
        now = time.monotonic()
        with self.lock:
            if self.frozen:
                return
            if self.first_at is None:
                self.first_at = now
                self.first.set()
            self.n += 1
            self.latencies.append(now - r.frame.captured)
            self.modes[r.mode] = self.modes.get(r.mode, 0) + 1
            self._cut |= bool(getattr(r, "cut", False))
            if self.n % self.every:
                return
            f = r.faces
            how = getattr(r, "how", None)
            t = r.frame.captured if self.live or r.frame.pts is None else r.frame.pts
            self.samples.append(Sample(
                r.frame.image, f.boxes.copy(), f.scores.copy(), f.landmarks.copy(),
                r.track_ids.copy(), [] if how is None else [str(h) for h in how], r.mode, float(t),
                self._cut))
            self._cut = False

    def freeze(self) -> int:
        """Stop counting; the number of results delivered."""
        with self.lock:
            self.frozen = True
            return self.n


@dataclass
class Clip:
    name: str
    path: Path
    frames_dir: Path
    fps: float
    frames: int
    width: int
    height: int
    first: np.ndarray = field(repr=False)

    @property
    def duration(self) -> float:
        return self.frames / self.fps

    @property
    def served_fps(self) -> int:
        return max(1, round(self.fps))

    @property
    def bitrate(self) -> int:
        """kbit/s for the RTSP server: 0.1 bit per pixel, at least 2000."""
        return int(max(2000, self.width * self.height * self.served_fps * 0.1 / 1000))


def decode(path: Path, folder: Path) -> Clip:
    """The clip's frames as ``frame00000.jpg``... (RGB decoded, JPEG quality 95)."""
    folder.mkdir(parents=True, exist_ok=True)
    src = AVInput(str(path), live=False)
    n, first = 0, None
    try:
        for img, _pts in src.frames():
            if first is None:
                first = img
            cv2.imwrite(str(folder / f"frame{n:05d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            n += 1
    except EndOfStream:
        pass
    finally:
        src.close()
    if first is None:
        raise RuntimeError(f"{path}: no frame decoded")
    return Clip(path.stem, path, folder, src.fps or 25.0, n, first.shape[1], first.shape[0], first)


# ----------------------------------------------------------------------------- running
def run_pipeline(source: str, *, live: bool, gate: GateOptions | None, policy, seconds: float | None,  # noqa: ANN001
                 every: int, warm: np.ndarray, first_timeout: float) -> dict:
    """One pipeline run; ``seconds`` None: until the source ends (files)."""
    col = Keeper(every, live)
    det = Detector()
    det.detect(warm)
    p = Pipeline([source], det, sinks=[col], gate=gate, policy=policy)
    t0, c0 = time.monotonic(), time.process_time()
    p.start()
    try:
        if seconds is None:
            p.wait()
        else:
            if not col.first.wait(first_timeout):
                st = p.stats().source()
                raise RuntimeError(f"no result within {first_timeout:g} s "
                                   f"(status {st.status}, error {st.error})")
            assert col.first_at is not None
            end = col.first_at + seconds
            while not p.done and time.monotonic() < end:
                time.sleep(min(0.05, max(0.0, end - time.monotonic())))
            early = p.done
            n = col.freeze()
            c1 = time.process_time()
            st = p.stats().source()
    finally:
        p.stop(5)
    if seconds is None:  # the sink is drained by stop()
        n = col.freeze()
        c1 = time.process_time()
        st = p.stats().source()
    problem = st.error
    if seconds is not None and early:
        problem = f"the pipeline ended early (status {st.status}): {st.error}"
    lat = np.array(col.latencies) * 1000
    return {"problem": problem, "samples": col.samples, "frames": n, "cpu_s": c1 - c0,
            "wall_s": time.monotonic() - t0,
            "modes": dict(col.modes), "dropped": int(st.dropped), "status": str(st.status),
            "error": st.error, "latencies_ms": lat,
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if live and len(lat) else None,
            "p95_ms": round(float(np.percentile(lat, 95)), 1) if live and len(lat) else None}


def run_live(frames_dir: Path, fps: int, bitrate: int, gate: GateOptions | None, seconds: float,
             every: int, warm: np.ndarray, first_timeout: float) -> dict:
    srv = RtspServer(frames_dir, None, "--fps", str(fps), "--bitrate", str(bitrate))
    try:
        srv.start()
        return run_pipeline(srv.url, live=True, gate=gate, policy=None, seconds=seconds,
                            every=every, warm=warm, first_timeout=first_timeout)
    finally:
        srv.kill()


# ----------------------------------------------------------------------------- metrics
def greedy(iou: np.ndarray, thr: float) -> list[tuple[int, int, float]]:
    """One-to-one pairs (row, col, iou) with iou >= thr, best pair first."""
    iou = iou.copy()
    out = []
    while iou.size and iou.max() >= thr:
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        out.append((int(i), int(j), float(iou[i, j])))
        iou[i, :] = -1
        iou[:, j] = -1
    return out


SIZE_BINS = ("40-80", "80-160", "160+")


def size_bin(px: float) -> str:
    return SIZE_BINS[0] if px < 80 else SIZE_BINS[1] if px < 160 else SIZE_BINS[2]


def evaluate(samples: list[Sample], ref_det: Detector) -> dict:
    """The live faces of ``samples`` against ``ref_det`` on the same images (images are
    released as they are used)."""
    c = {"samples": len(samples), "ref_faces": 0, "recall_set": 0, "recall_matched": 0,
         "ref_matched": 0, "live_faces": 0, "live_matched": 0, "iou_sum": 0.0, "lm_sum": 0.0,
         "live_by_how": {}, "unmatched_live_by_how": {},
         "recall_set_by_size": {b: 0 for b in SIZE_BINS}, "recall_matched_by_size": {b: 0 for b in SIZE_BINS}}
    # per sample: ref boxes, and per ref face (in recall set, matched live index or -1)
    per: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for s in samples:
        assert s.image is not None
        ref = ref_det.detect(s.image)
        s.image = None
        rb = ref.boxes
        wh = np.minimum(rb[:, 2] - rb[:, 0], rb[:, 3] - rb[:, 1]) if len(rb) else np.zeros(0)
        in_set = (wh >= MIN_SIZE) & (ref.scores >= MIN_SCORE)
        live_of = np.full(len(rb), -1, np.int64)
        for i, j, v in greedy(iou_matrix(s.boxes, rb), MATCH_IOU):
            live_of[j] = i
            c["iou_sum"] += v
            size = float(np.sqrt((rb[j, 2] - rb[j, 0]) * (rb[j, 3] - rb[j, 1])))
            c["lm_sum"] += float(np.linalg.norm(s.landmarks[i] - ref.landmarks[j], axis=1).mean()) / size
        for j in np.flatnonzero(in_set):
            b = size_bin(float(wh[j]))
            c["recall_set_by_size"][b] += 1
            c["recall_matched_by_size"][b] += int(live_of[j] >= 0)
        c["ref_faces"] += len(rb)
        c["recall_set"] += int(in_set.sum())
        c["recall_matched"] += int((in_set & (live_of >= 0)).sum())
        c["ref_matched"] += int((live_of >= 0).sum())
        c["live_faces"] += len(s.boxes)
        c["live_matched"] += int((live_of >= 0).sum())
        hit = {int(i) for i in live_of if i >= 0}
        for i in range(len(s.boxes)):
            how = s.how[i] if i < len(s.how) else "?"
            c["live_by_how"][how] = c["live_by_how"].get(how, 0) + 1
            if i not in hit:
                c["unmatched_live_by_how"][how] = c["unmatched_live_by_how"].get(how, 0) + 1
        per.append((rb, in_set, live_of))
    c.update(tracks_metrics(samples, per))
    return c


def tracks_metrics(samples: list[Sample], per: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
                   ) -> dict:
    """Max gap, long gaps and id switches along reference tracks."""
    times = np.array([s.t for s in samples], float)
    interval = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    tracks: list[list[tuple[int, int]]] = []  # (sample index, ref index)
    open_: dict[int, int] = {}  # ref index in the previous sample -> track
    for k, (rb, _, _) in enumerate(per):
        now: dict[int, int] = {}
        if k and open_:
            prev_rb = per[k - 1][0]
            for j_prev, j, _ in greedy(iou_matrix(prev_rb, rb), CHAIN_IOU):
                if j_prev in open_:
                    tr = open_[j_prev]
                    tracks[tr].append((k, j))
                    now[j] = tr
        for j in range(len(rb)):
            if j not in now:
                tracks.append([(k, j)])
                now[j] = len(tracks) - 1
        open_ = now
    max_gap, long_gaps, switches, gaps, at_cuts = 0.0, 0, 0, 0, 0
    for tr in tracks:
        matched = [int(per[k][2][j]) >= 0 for k, j in tr]
        in_set = [bool(per[k][1][j]) for k, j in tr]
        t = [samples[k].t for k, _ in tr]
        a = 0
        while a < len(tr):
            if matched[a]:
                a += 1
                continue
            b = a
            while b + 1 < len(tr) and not matched[b + 1]:
                b += 1
            if any(in_set[a:b + 1]):
                start = t[a - 1] if a > 0 else t[a]
                end = t[b + 1] if b + 1 < len(tr) else t[b] + interval
                gap = end - start
                gaps += 1
                max_gap = max(max_gap, gap)
                long_gaps += gap > LONG_GAP
            a = b + 1
        last_id, last_k = None, -1
        for k, j in tr:
            i = int(per[k][2][j])
            ids = samples[k].ids
            if i < 0 or len(ids) != len(samples[k].boxes):
                continue
            tid = int(ids[i])
            if last_id is not None and tid != last_id:
                switches += 1
                at_cuts += any(samples[x].cut_before for x in range(last_k + 1, k + 1))
            last_id, last_k = tid, k
    return {"ref_tracks": len(tracks), "gaps": gaps, "max_gap_s": round(max_gap, 3),
            "gaps_over_0_5s": int(long_gaps), "id_switches": switches,
            "id_switches_at_cuts": int(at_cuts), "cuts_seen": int(sum(s.cut_before for s in samples)),
            "sample_interval_s": round(interval, 4)}


def finish(c: dict) -> dict:
    """Ratios from the counts of :func:`evaluate` (summed or not). ``precision_verified``:
    precision over the live faces the networks checked on that frame (``how`` not
    ``tracked``), i.e. without faces the tracker carried."""
    c["recall"] = round(c["recall_matched"] / c["recall_set"], 4) if c["recall_set"] else None
    c["recall_all_ref"] = round(c["ref_matched"] / c["ref_faces"], 4) if c["ref_faces"] else None
    c["precision"] = round(c["live_matched"] / c["live_faces"], 4) if c["live_faces"] else None
    live_v = c["live_faces"] - c["live_by_how"].get("tracked", 0)
    matched_v = live_v - sum(n for h, n in c["unmatched_live_by_how"].items() if h != "tracked")
    c["precision_verified"] = round(matched_v / live_v, 4) if live_v else None
    c["recall_by_size"] = {b: (round(c["recall_matched_by_size"][b] / n, 4) if n else None)
                           for b, n in c["recall_set_by_size"].items()}
    c["mean_iou"] = round(c["iou_sum"] / c["live_matched"], 4) if c["live_matched"] else None
    c["landmark_err_pct"] = (round(100 * c["lm_sum"] / c["live_matched"], 2)
                             if c["live_matched"] else None)
    return c


def row_of(name: str, mode: str, run: dict, q: dict | None) -> dict:
    out = {"clip": name, "mode": mode, "frames": run["frames"], "cpu_s": round(run["cpu_s"], 3),
           "cpu_ms_per_frame": round(1000 * run["cpu_s"] / max(1, run["frames"]), 2),
           "wall_s": round(run["wall_s"], 2), "modes": run["modes"], "dropped": run["dropped"],
           "p50_ms": run["p50_ms"], "p95_ms": run["p95_ms"], "status": run["status"],
           "source_error": run["error"]}
    if q is not None:
        out.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in finish(q).items()})
    if run["problem"]:  # a failed source or a crashed detect loop: metrics kept, row flagged
        out["error"] = run["problem"]
    return out


# ----------------------------------------------------------------------------- reporting
def fmt(v, spec: str = ".3f") -> str:  # noqa: ANN001
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


COLUMNS = ("clip | frames | recall | precision | IoU | landmark err % | max gap s (gaps>0.5s) "
           "| id switches | CPU ms/frame | CPU vs full | dropped | p95 ms")


def md_row(r: dict) -> str:
    if r.get("error"):
        return f"| {r['clip']} | error: {r['error'][:120]} |" + " |" * 10
    gap = (f"{fmt(r.get('max_gap_s'), '.2f')} ({r['gaps_over_0_5s']})"
           if r.get("max_gap_s") is not None else "–")
    switches = fmt(r.get("id_switches"), "d")
    if r.get("id_switches_at_cuts"):
        switches += f" ({r['id_switches_at_cuts']} at cuts)"
    vs = r.get("cpu_vs_full_label") or fmt(r.get("cpu_vs_full"), ".2f")
    if r.get("cpu_share_of_meeting") is not None:
        vs = f"{r['cpu_share_of_meeting']:.2f} of meeting"
    return (f"| {r['clip']} | {r['frames']} | {fmt(r.get('recall'))} | {fmt(r.get('precision'))} "
            f"| {fmt(r.get('mean_iou'))} | {fmt(r.get('landmark_err_pct'), '.2f')} | {gap} "
            f"| {switches} | {fmt(r.get('cpu_ms_per_frame'), '.2f')} | {vs} "
            f"| {fmt(r.get('dropped'), 'd')} | {fmt(r.get('p95_ms'), '.0f')} |")


def overall(rows: list[dict], full_rows: dict[str, dict], lat: list[np.ndarray], mode: str) -> dict:
    ok = [r for r in rows if not r.get("error")]
    keys = ("samples", "ref_faces", "recall_set", "recall_matched", "ref_matched", "live_faces",
            "live_matched", "iou_sum", "lm_sum", "gaps", "gaps_over_0_5s", "id_switches",
            "id_switches_at_cuts", "cuts_seen", "dropped")
    c = {k: sum(r.get(k, 0) or 0 for r in ok) for k in keys}
    for k in ("live_by_how", "unmatched_live_by_how", "recall_set_by_size",
              "recall_matched_by_size"):
        c[k] = {}
        for r in ok:
            for h, n in (r.get(k) or {}).items():
                c[k][h] = c[k].get(h, 0) + n
    finish(c)
    frames = sum(r["frames"] for r in ok)
    cpu = sum(r["cpu_s"] for r in ok)
    out = {"clip": f"**overall** ({len(ok)} clips)", "mode": mode, "frames": frames,
           "cpu_s": round(cpu, 3), "cpu_ms_per_frame": round(1000 * cpu / max(1, frames), 2),
           "max_gap_s": max((r["max_gap_s"] for r in ok if r.get("max_gap_s") is not None),
                            default=None), **c}
    if mode in LIVE_MODES:
        pairs = [(r, full_rows[r["clip"]]) for r in ok if r["clip"] in full_rows]
        if pairs:
            mean = float(np.mean([r["cpu_ms_per_frame"] / f["cpu_ms_per_frame"] for r, f in pairs]))
            pooled = ((sum(r["cpu_s"] for r, _ in pairs) / sum(r["frames"] for r, _ in pairs))
                      / (sum(f["cpu_s"] for _, f in pairs) / sum(f["frames"] for _, f in pairs)))
            out["cpu_vs_full_mean_over_clips"] = round(mean, 3)
            out["cpu_vs_full_pooled"] = round(pooled, 3)
            out["cpu_vs_full_label"] = f"mean {mean:.2f} / pooled {pooled:.2f}"
        a = np.concatenate(lat) if lat else np.zeros(0)
        if len(a):
            out["p50_ms"] = round(float(np.percentile(a, 50)), 1)
            out["p95_ms"] = round(float(np.percentile(a, 95)), 1)
    for k in ("iou_sum", "lm_sum"):
        out[k] = round(out[k], 4)
    return out


def git_line(g: dict | None) -> str:
    if not g:
        return "not a git checkout"
    changed = f", uncommitted changes in {', '.join(g['changed'])}" if g["changed"] else ", clean"
    return f"commit {g['commit'][:7]}{changed}"


def markdown(header: dict, tables: dict[str, list[dict]]) -> str:
    lines = ["# Live pipeline quality on real footage (scripts/bench_live_quality.py)", "",
             f"- CPU: {header['cpu']}, {header['cores']} cores; Python {header['python']}",
             f"- command: `{header['command']}`", f"- date: {header['date']}",
             f"- library: {git_line(header.get('git'))}"
             + (f"; {header['label']}" if header.get("label") else ""),
             f"- reference: Detector() on every N-th result (N = {header['every']}); recall set: "
             f"min(w, h) >= {MIN_SIZE:g} px and score >= {MIN_SCORE:g}; match IoU >= {MATCH_IOU:g}",
             ""]
    for mode, rows in tables.items():
        lines += [f"## {mode}", "", "| " + COLUMNS + " |", "|" + "---|" * 12]
        lines += [md_row(r) for r in rows]
        lines.append("")
    return "\n".join(lines)


def git_state() -> dict | None:
    """The checkout's commit and the files changed under livefaces/ (None: not a checkout)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "livefaces"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": head, "changed": [ln[3:] for ln in dirty if ln.strip()]}


# ----------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", help="comma-separated substrings of clip names (default: all)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--every", type=int, default=2, help="keep every N-th result (default: 2)")
    ap.add_argument("--min-seconds", type=float, default=6.0,
                    help="live runs last max(clip duration, this) seconds (default: 6)")
    ap.add_argument("--first-timeout", type=float, default=30.0,
                    help="seconds a live run may take to deliver its first result (default: 30)")
    ap.add_argument("--synthetic", action="store_true",
                    help="also bench_gating's meeting and empty scene (default mode)")
    ap.add_argument("--synthetic-seconds", type=float, default=30.0, help="(default: 30)")
    ap.add_argument("--label", help="a note for the header (e.g. which library version)")
    ap.add_argument("--write", type=Path, help="write everything (no images) as JSON here")
    ap.add_argument("--markdown", type=Path, help="write the tables as Markdown here")
    a = ap.parse_args()
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        ap.error(f"unknown mode(s) {bad}; choose from {MODES}")
    clips = sorted(MEDIA.glob("**/*.mp4"), key=lambda p: p.stem.lower())
    if a.clips:
        subs = [s.strip().lower() for s in a.clips.split(",") if s.strip()]
        clips = [p for p in clips if any(s in p.stem.lower() for s in subs)]
    if not clips and not a.synthetic:
        ap.error(f"no clip under {MEDIA} matches")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t_start = time.monotonic()
    header = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
              "command": "python scripts/bench_live_quality.py " + shlex.join(sys.argv[1:]),
              "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "git": git_state(), "label": a.label, "every": a.every, "min_seconds": a.min_seconds,
              "load_before": os.getloadavg()[0]}
    print(json.dumps(header), flush=True)
    ref_det = Detector()
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-quality-"))
    order = (["full"] if "full" in modes else []) + [m for m in modes if m != "full"]
    tables: dict[str, list[dict]] = {m: [] for m in modes}
    lat: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    full_rows: dict[str, dict] = {}
    clip_info = []
    try:
        for path in clips:
            try:
                clip = decode(path, tmp / path.stem)
            except Exception as e:  # noqa: BLE001 - report the clip, go on
                for m in modes:
                    tables[m].append({"clip": path.stem, "mode": m, "error": f"decode: {e}"})
                continue
            info = {"clip": clip.name, "path": str(path.relative_to(SHARED)), "fps": round(clip.fps, 3),
                    "served_fps": clip.served_fps, "frames": clip.frames,
                    "duration_s": round(clip.duration, 2), "size": [clip.width, clip.height],
                    "bitrate_kbit": clip.bitrate}
            clip_info.append(info)
            print(json.dumps({"clip": info}), flush=True)
            for mode in order:
                try:
                    if mode == "full":
                        run = run_pipeline(str(path), live=False, policy=EveryN(1),
                                           gate=GateOptions(motion=False, refine=False),
                                           seconds=None, every=a.every, warm=clip.first,
                                           first_timeout=a.first_timeout)
                    else:
                        gate = None if mode == "default" else GateOptions(motion=False, refine=False)
                        seconds = max(clip.frames / clip.served_fps, a.min_seconds)
                        run = run_live(clip.frames_dir, clip.served_fps, clip.bitrate, gate, seconds,
                                       a.every, clip.first, a.first_timeout)
                    q = evaluate(run["samples"], ref_det)
                    row = row_of(clip.name, mode, run, q)
                    if mode == "full" and not row.get("error"):
                        full_rows[clip.name] = row
                    elif clip.name in full_rows:
                        row["cpu_vs_full"] = round(row["cpu_ms_per_frame"]
                                                   / full_rows[clip.name]["cpu_ms_per_frame"], 3)
                    if mode != "full":
                        lat[mode].append(run["latencies_ms"])
                except Exception as e:  # noqa: BLE001 - report the run, go on
                    row = {"clip": clip.name, "mode": mode, "error": f"{type(e).__name__}: {e}"}
                tables[mode].append(row)
                print(json.dumps(row), flush=True)
            shutil.rmtree(clip.frames_dir, ignore_errors=True)
        totals = {m: overall(tables[m], full_rows, lat[m], m) for m in modes}
        for m in modes:
            print(json.dumps(totals[m]), flush=True)
        synthetic = []
        if a.synthetic:
            people = portraits()
            for name, empty in (("synthetic meeting", False), ("synthetic empty", True)):
                folder = write_meeting(tmp / name.replace(" ", "_"), people, empty=empty)
                warm = cv2.cvtColor(cv2.imread(str(folder / "frame00000.jpg")), cv2.COLOR_BGR2RGB)
                try:
                    run = run_live(folder, 25, 4000, None, a.synthetic_seconds, a.every, warm,
                                   a.first_timeout)
                    q = evaluate(run["samples"], ref_det) if not empty else None
                    row = row_of(name, "default", run, q)
                except Exception as e:  # noqa: BLE001
                    row = {"clip": name, "mode": "default", "error": f"{type(e).__name__}: {e}"}
                synthetic.append(row)
                print(json.dumps(row), flush=True)
            if len(synthetic) == 2 and not any(r.get("error") for r in synthetic):
                synthetic[1]["cpu_share_of_meeting"] = round(
                    synthetic[1]["cpu_ms_per_frame"] / synthetic[0]["cpu_ms_per_frame"], 3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    header["load_after"] = os.getloadavg()[0]
    header["run_s"] = round(time.monotonic() - t_start, 1)
    md_tables = {m: tables[m] + [totals[m]] + (synthetic if m == "default" else [])
                 for m in modes}
    if synthetic and "default" not in modes:
        md_tables["default (synthetic)"] = synthetic
    md = markdown(header, md_tables)
    print(md, flush=True)
    print(f"took {header['run_s']:.0f} s", flush=True)
    if a.write:
        a.write.parent.mkdir(parents=True, exist_ok=True)
        a.write.write_text(json.dumps({**header, "clips": clip_info, "runs": tables,
                                       "overall": totals, "synthetic": synthetic}, indent=1) + "\n")
    if a.markdown:
        a.markdown.parent.mkdir(parents=True, exist_ok=True)
        a.markdown.write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
