"""The parts of a cluster extraction and their bookkeeping (no Ray here: see ``cluster.py``).

A run on a cluster cuts the work into *parts*, the unit that is done, recorded and resumed
as a whole:

* a **segment** of a video: the frames ``[first, end)`` (``first`` a multiple of the stride),
  about ``segment_seconds`` long, with the timestamps of its frames from
  :func:`~livefaces.avio.scan_pts`; decoded on its own by :func:`~livefaces.avio.decode_range`
  (seek to the keyframe before, decode, keep its frames), so one film spreads over many workers;
* a whole **video** when its frames cannot be timed from the packets (then it is not split);
* a batch of up to ``images_per_part`` **images** (each image is also its own input in
  ``done.jsonl``, so a re-run skips finished images whatever the batches were).

A part's id is stable (``<absolute path>#<first frame>`` for a segment), so a re-run with the
same settings skips the segments recorded in ``parts.jsonl``. The workers return every frame's
index lines (their crops already written, atomically); :class:`Ledger` on the driver collects
them in any order, ignores duplicates (a retried task), and commits a part when all its frames
are in: index lines appended and fsynced, then the part recorded (``parts.jsonl`` or
``done.jsonl``), then, for the last segment of a video, the video in ``done.jsonl``. A run
cut anywhere leaves only lines of committed parts after the next run's clean-up.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..avio import count_frames, declared_frames, decode_range, scan_pts
from ..errors import ImageReadError, SourceError
from ..imageio import MAX_PIXELS, read_image
from .decode import Input, iter_video
from .options import ClusterOptions
from .output import (
    DONE_FILE,
    INDEX_FILE,
    PARTS_FILE,
    ExtractReport,
    Progress,
    append_lines,
    cut_short,
    damaged,
    done_line,
)


@dataclass(frozen=True)
class Part:
    """One unit of work. ``inputs`` index the run's list of inputs (one for videos);
    ``first``/``end``/``pts``: a segment's frames; ``frames``: frames to detect on (after the
    stride), ``None`` if unknown."""

    id: str
    kind: str  # "segment", "video" or "images"
    inputs: tuple[int, ...]
    first: int = 0
    end: int = 0
    pts: tuple[int, ...] = ()
    frames: int | None = None

    def spec(self, todo: list[Input]) -> str:
        """What a worker needs to decode the part, as one JSON string."""
        return json.dumps({"kind": self.kind, "first": self.first, "pts": list(self.pts),
                           "inputs": [[i, todo[i].source, str(todo[i].path), todo[i].kind,
                                       todo[i].name, todo[i].key] for i in self.inputs]})


def plan_parts(todo: list[Input], stride: int, cluster: ClusterOptions,
               done_segments: dict[str, dict]) -> list[Part]:
    """Cut ``todo`` into parts (videos by time, images in batches), leaving out the segments
    in ``done_segments`` (by id). Reads every video's packet timestamps (no decoding)."""
    parts: list[Part] = []
    images: list[int] = []

    def flush_images() -> None:
        if images:
            parts.append(Part(f"{todo[images[0]].key}+{len(images)}", "images", tuple(images),
                              frames=len(images)))
            images.clear()

    for i, inp in enumerate(todo):
        if inp.kind == "image":
            images.append(i)
            if len(images) >= cluster.images_per_part:
                flush_images()
            continue
        scanned = scan_pts(inp.path)
        declared = declared_frames(inp.path)
        if scanned is None or len(scanned[0]) < 2 or (declared is not None
                                                      and len(scanned[0]) < declared - 1):
            # not splittable, or fewer packets than the header lists (a truncated file):
            # decoded whole, which finds and reports the damage (output.cut_short)
            n = count_frames(inp.path)
            parts.append(Part(inp.key, "video", (i,), frames=None if n is None else -(-n // stride)))
            continue
        pts, tb = scanned
        seconds = float((pts[-1] - pts[0]) * tb)
        fps = (len(pts) - 1) / seconds if seconds > 0 else 25.0
        per = max(stride, math.ceil(cluster.segment_seconds * fps / stride) * stride)
        # the frames no finished segment covers (segments of an earlier run may have had
        # another length; their ends are multiples of the stride or the video's end)
        covered = sorted((r["first"], r["end"]) for r in done_segments.values()
                         if r["key"] == inp.key)
        gaps, pos = [], 0
        for first, end in covered + [(len(pts), len(pts))]:
            if pos < first:
                gaps.append((pos, first))
            pos = max(pos, end)
        for lo, hi in gaps:
            for first in range(lo, hi, per):
                end = min(first + per, hi)
                parts.append(Part(f"{inp.key}#{first}", "segment", (i,), first, end,
                                  tuple(pts[first:end]), frames=-(-(end - first) // stride)))
    flush_images()
    return parts


def segments_of(parts: list[Part], done_segments: dict[str, dict],
                todo: list[Input]) -> dict[int, list[dict]]:
    """Per video input cut into segments: the records of its segments done before this run."""
    keys = {inp.key: i for i, inp in enumerate(todo)}
    out: dict[int, list[dict]] = {i: [] for p in parts if p.kind == "segment" for i in p.inputs}
    for rec in done_segments.values():
        i = keys.get(rec["key"])
        if i is not None:
            out.setdefault(i, []).append(rec)
    return out


# -- worker side: a part's frames -----------------------------------------------------------
def _checked(frames: Iterator[tuple[int, float | None, np.ndarray]], source: str,
             declared: int | None, stride: int, end: int | None = None,
             first: int = 0) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """``frames`` of a video, raising :class:`SourceError` that says how far it got when the
    decoder fails part way or the frames end before ``end`` (default: ``declared``, the
    frames its header lists): a damaged or truncated file, as the single-machine job says.
    ``first``: the frame a segment starts at: one whose very first frame fails is still a file
    damaged after frame ``first - 1`` (only a failure before the file's first frame is the
    reader's own "not a video" line)."""
    last = first - 1
    try:
        for item in frames:
            last = item[0]
            yield item
    except SourceError as e:
        if last < 0:
            raise
        raise SourceError(damaged(source, last, declared, str(e))) from None
    short = cut_short(source, last, stride, declared, end)
    if short is not None:
        raise SourceError(short)


def part_frames(spec: str, stride: int, max_pixels: int | None = MAX_PIXELS) -> Iterator[dict]:
    """The rows a decode task makes of a part (from :meth:`Part.spec`): one per frame to
    detect on (``image``: RGB bytes, ``h``, ``w``), one with ``frame`` -1 and ``error`` for an
    input that cannot be read. The last row of the part has ``rows`` = the part's row count
    (the others -1), so the driver knows when all of a part's rows are in."""
    p = json.loads(spec)

    def rows() -> Iterator[dict]:
        for i, source, path, kind, name, _key in p["inputs"]:
            base = {"input": i, "source": source, "name": name, "vkind": kind, "error": ""}
            try:
                if kind == "image":
                    frames: Iterator = iter([(0, None, read_image(path, max_pixels))])
                elif p["kind"] == "segment":
                    end = p["first"] + len(p["pts"])
                    frames = _checked(decode_range(path, p["pts"], p["first"], stride,
                                                   max_pixels=max_pixels), source,
                                      declared_frames(path), stride, end, first=p["first"])
                else:
                    frames = _checked(iter_video(Path(path), stride, max_pixels=max_pixels), source,
                                      declared_frames(path), stride)
                for index, pts, rgb in frames:
                    rgb = np.ascontiguousarray(rgb)
                    yield {**base, "frame": index, "pts": math.nan if pts is None else pts,
                           "image": rgb.tobytes(), "h": rgb.shape[0], "w": rgb.shape[1]}
            except (SourceError, ImageReadError) as e:
                yield {**base, "frame": -1, "pts": math.nan, "image": b"", "h": 0, "w": 0,
                       "error": str(e)}
            except Exception as e:  # noqa: BLE001 - one bad file must not stop the job
                yield {**base, "frame": -1, "pts": math.nan, "image": b"", "h": 0, "w": 0,
                       "error": f"{source}: {type(e).__name__}: {e}"}

    n, prev = 0, None
    for row in rows():
        if prev is not None:
            yield {**prev, "rows": -1}
        prev, n = row, n + 1
    if prev is None:  # a segment that decoded to nothing: one empty marker row
        i, source, _path, kind, name, _key = p["inputs"][0]
        prev, n = {"input": i, "source": source, "name": name, "vkind": kind, "error": "",
                   "frame": -2, "pts": math.nan, "image": b"", "h": 0, "w": 0}, 1
    yield {**prev, "rows": n}


# -- driver side: commit parts as their frames come in ---------------------------------------
@dataclass
class _Open:
    rows: dict[tuple[int, int], dict] = field(default_factory=dict)
    expected: int | None = None


class Ledger:
    """Takes the workers' per-frame results (any order, duplicates ignored) and commits each
    part once all its rows are in (see the module docstring). Updates ``report`` and ``state``
    (frames, faces, inputs done)."""

    def __init__(self, out_dir: Path, todo: list[Input], parts: list[Part],
                 done_segments: dict[str, dict], report: ExtractReport, state: Progress) -> None:
        self.out_dir = out_dir
        self.todo = todo
        self.parts = parts
        self.report = report
        self.state = state
        self.open: dict[int, _Open] = {}
        self.committed: set[int] = set()
        self.failed: set[int] = set()  # inputs that failed
        self.segments = segments_of(parts, done_segments, todo)  # input -> done segment recs
        self.left = {i: sum(1 for p in parts if p.kind == "segment" and i in p.inputs)
                     for i in self.segments}
        self._index = (out_dir / INDEX_FILE).open("a", encoding="utf-8")
        self._parts = (out_dir / PARTS_FILE).open("a", encoding="utf-8")
        self._done = (out_dir / DONE_FILE).open("a", encoding="utf-8")
        # videos whose segments were all done before (a run cut between the last segment and
        # the video's done line): done now
        planned = {i for p in parts for i in p.inputs}
        for i, left in self.left.items():
            if left == 0 and i not in planned:
                self._video_done(i)

    @property
    def finished(self) -> bool:
        return len(self.committed) == len(self.parts)

    def add(self, row: dict) -> None:
        """One result row: ``part``, ``input``, ``frame``, ``rows``, ``error``, ``lines``,
        ``faces`` (as the write task returns it)."""
        pi = int(row["part"])
        if pi in self.committed:
            return
        o = self.open.setdefault(pi, _Open())
        key = (int(row["input"]), int(row["frame"]))
        if key in o.rows:
            return  # a retried task's copy
        o.rows[key] = row
        if int(row["rows"]) >= 0:
            o.expected = int(row["rows"])
        if int(row["frame"]) >= 0:
            self.state.frames_done += 1
            self.state.faces += int(row["faces"])
            self.state.current = str(row.get("source", ""))
        if o.expected is not None and len(o.rows) >= o.expected:
            self._commit(pi, o)

    def _fail(self, i: int, message: str) -> None:
        if i not in self.failed:
            self.failed.add(i)
            self.report.failed.append((self.todo[i].source, message))

    def _commit(self, pi: int, o: _Open) -> None:
        part = self.parts[pi]
        rows = [o.rows[k] for k in sorted(o.rows)]
        bad = {int(r["input"]): str(r["error"]) for r in rows if r["error"]}
        for i, message in bad.items():
            self._fail(i, message)
        good = [r for r in rows if int(r["input"]) not in bad and int(r["frame"]) >= 0]
        append_lines(self._index, [str(r["lines"]) for r in good if r["lines"]])
        self.report.frames += len(good)
        self.report.faces += sum(int(r["faces"]) for r in good)
        if part.kind == "segment":
            i = part.inputs[0]
            if i not in bad:
                inp = self.todo[i]
                rec = {"part": part.id, "key": inp.key, "source": inp.source, "first": part.first,
                       "end": part.end, "frames": len(good),
                       "faces": sum(int(r["faces"]) for r in good)}
                append_lines(self._parts, [json.dumps(rec) + "\n"])
                self.segments[i].append(rec)
                self.left[i] -= 1
                if self.left[i] == 0 and i not in self.failed:
                    self._video_done(i)
        else:
            done = []
            for i in part.inputs:
                if i in bad:
                    continue
                mine = [r for r in good if int(r["input"]) == i]
                inp = self.todo[i]
                done.append(done_line(inp, len(mine), sum(int(r["faces"]) for r in mine)))
            append_lines(self._done, done)
            self.report.done += len(done)
            self.state.inputs_done += len(part.inputs)
        self.committed.add(pi)
        del self.open[pi]

    def _video_done(self, i: int) -> None:
        inp, recs = self.todo[i], self.segments[i]
        append_lines(self._done, [done_line(inp, sum(r["frames"] for r in recs),
                                            sum(r["faces"] for r in recs))])
        self.report.done += 1
        self.state.inputs_done += 1

    def close(self) -> None:
        for f in (self._index, self._parts, self._done):
            f.close()
