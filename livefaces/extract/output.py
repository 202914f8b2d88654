"""The output contract both runners share (``job.py`` here, ``cluster.py`` on Ray): file
names, :class:`Progress`, :class:`ExtractReport`, the messages of damaged videos, crop names,
crop and index writing, and the output folder's clean-up (resume, failed inputs, temp files).

Output folder layout::

    DIR/extract.json   settings of the job (a rerun with other settings is refused)
    DIR/index.jsonl    one line per face: source, frame, pts, box, confidence, landmarks
                       (named, as ``types.face_json``), crop
    DIR/done.jsonl     one line per finished input (what a rerun skips)
    DIR/parts.jsonl    Ray runs only: one line per finished segment of a video not done yet
    DIR/names.jsonl    one line per input ever seen: its output <name> (kept on every rerun)
    DIR/<name>/NNNNNN_K.jpg  crops of video <name>, frame NNNNNN, face K (by confidence)
    DIR/<name>_K.jpg         crops of image <name>

``<name>``: the file's stem, or ``FOLDER/PATH/STEM`` for a file found in a folder; one taken by
another input of this folder (any run), or whose crops could meet another's (a folder
``photos/`` holding ``000000.jpg`` beside ``photos.mp4``), gets ``-2``, ``-3``...

Crash/Ctrl-C safety: crops are written to a temp name and renamed; index lines are written
whole and flushed; an input is listed in ``done.jsonl`` only after all its lines and crops
are on disk. A rerun drops index lines of inputs that are not done (and any incomplete last
line) and redoes those inputs, so ``index.jsonl`` never holds duplicates.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import numpy as np

from ..align import align_face, crop_box
from ..errors import InputError, OutputError
from ..imageio import IMAGE_SUFFIXES, write_image
from ..outfile import write_output
from ..types import Faces, face_json
from .decode import Input
from .options import ExtractOptions

SETTINGS_FILE = "extract.json"
INDEX_FILE = "index.jsonl"
DONE_FILE = "done.jsonl"
PARTS_FILE = "parts.jsonl"
NAMES_FILE = "names.jsonl"


@dataclass
class Progress:
    """Handed to the ``progress`` callback after every detector batch (caller's thread).

    ``frames_total`` counts frames to detect on (after the stride) over the inputs of this
    run, ``None`` while unknown; ``frames_done`` the frames detected so far.
    """

    frames_done: int = 0
    frames_total: int | None = None
    faces: int = 0
    inputs_done: int = 0
    inputs_total: int = 0
    elapsed_s: float = 0.0
    current: str = ""

    @property
    def fps(self) -> float:
        return self.frames_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if not self.frames_total or not self.frames_done:
            return None
        return max(0.0, (self.frames_total - self.frames_done) / max(self.fps, 1e-9))


@dataclass
class ExtractReport:
    """What a run did. ``failed`` holds ``(source, message)`` of inputs that could not be read."""

    out_dir: Path
    inputs: int = 0
    skipped: int = 0
    done: int = 0
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)
    engine: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


# -- damaged and truncated videos: a failed input, saying how far it got ---------------------
def damaged(source: str, last: int, declared: int | None, reason: str) -> str:
    """The message of a video whose decoding failed after frame ``last`` (``reason``: the
    decoder's one line)."""
    of = f" of the {declared} its header lists" if declared else ""
    why = reason.split(": ", 1)[1] if reason.startswith(f"{source}: ") else reason
    why = why.replace("not a video FFmpeg can read (damaged, truncated or another kind of file)",
                      "unreadable data")
    return (f"{source}: damaged: decoding failed after frame {last}{of} ({why}); none of its "
            f"faces were kept")


def cut_short(source: str, last: int, stride: int, declared: int | None,
              end: int | None = None) -> str | None:
    """The message of a video that ended before the frames its header lists (truncated or
    damaged: the decoder stopped without an error), ``None`` when it did not. ``last``: the
    index of the last frame decoded (every ``stride``-th one is seen; -1: none); ``end``: the
    frame the decoding should have reached (default ``declared``; a segment's end on a
    cluster). One frame of slack, for headers that round."""
    end = declared if end is None else end
    if end is None or last + stride >= end - 1:
        return None
    if declared is None:
        return (f"{source}: truncated or damaged: it ends after frame {max(last, 0)}, before "
                f"frame {end - 1}; none of its faces were kept")
    return (f"{source}: truncated or damaged: it ends after frame {max(last, 0)} of the "
            f"{declared} its header lists; none of its faces were kept")


# -- crop names: unique per input, stable across runs ------------------------------------------
def _clashes(name: str, kind: str, videos: set[str], images: set[str],
             digit_dirs: set[str], named_like_crops: set[str]) -> bool:
    """Whether crops of an input called ``name`` (of ``kind``) could land on crops of one of
    the names already taken: a video ``V`` writes ``V/NNNNNN_K.ext``, an image ``I`` writes
    ``I_K.ext``. So two videos or two images of one name meet, and so do a video ``V`` and an
    image ``V/NNNNNN`` (a folder ``V/`` holding ``000000.jpg`` beside a video ``V.mp4``)."""
    if kind == "video":
        if name in videos or name in digit_dirs:
            return True
        m = re.fullmatch(r"(.*)_\d+\.(?:jpg|png)", name)  # V itself named like a crop
        return m is not None and m.group(1) in images
    if name in images or name in named_like_crops:
        return True
    parent, _, leaf = name.rpartition("/")
    return bool(parent) and leaf.isdigit() and parent in videos


def assign_names(out_dir: Path, plan: list[Input]) -> list[Input]:
    """``plan`` with each input's output name (:attr:`Input.name`, under which its crops go)
    made unique among every input this output folder ever had, and stable: an input (by its
    absolute path, :attr:`Input.key`) keeps the name it got first, recorded in ``names.jsonl``
    (appended and fsynced before any crop is written). A new input whose name is taken, or
    whose crops could land on another input's (see :func:`_clashes`), gets ``NAME-2``,
    ``NAME-3``... Folders made before ``names.jsonl`` existed seed it from ``done.jsonl``."""
    claimed: dict[str, tuple[str, str]] = {}  # key -> (name, kind)
    done_path, names_path = out_dir / DONE_FILE, out_dir / NAMES_FILE
    for path, seeded in ((done_path, True), (names_path, False)):
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
                kind = ("image" if Path(rec["source"]).suffix.lower() in IMAGE_SUFFIXES
                        else "video") if seeded else rec["kind"]
                claimed[rec["key"]] = (str(rec["name"]), str(kind))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue  # an incomplete last line
    videos = {n for n, k in claimed.values() if k == "video"}
    images = {n for n, k in claimed.values() if k != "video"}

    def digit_dir(name: str) -> str | None:
        parent, _, leaf = name.rpartition("/")
        return parent if parent and leaf.isdigit() else None

    def crop_like(name: str) -> str | None:
        m = re.fullmatch(r"(.*)_\d+\.(?:jpg|png)", name)
        return m.group(1) if m else None

    digit_dirs = {d for n in images if (d := digit_dir(n)) is not None}
    named_like_crops = {c for n in videos if (c := crop_like(n)) is not None}
    out: list[Input] = []
    new: list[str] = []
    for inp in plan:
        have = claimed.get(inp.key)
        if have is not None and have[1] == inp.kind:
            out.append(replace(inp, name=have[0]))
            continue
        name, n = inp.name, 2
        while _clashes(name, inp.kind, videos, images, digit_dirs, named_like_crops):
            name, n = f"{inp.name}-{n}", n + 1
        claimed[inp.key] = (name, inp.kind)
        if inp.kind == "video":
            videos.add(name)
            if (c := crop_like(name)) is not None:
                named_like_crops.add(c)
        else:
            images.add(name)
            if (d := digit_dir(name)) is not None:
                digit_dirs.add(d)
        new.append(json.dumps({"key": inp.key, "name": name, "kind": inp.kind,
                               "source": inp.source}) + "\n")
        out.append(replace(inp, name=name))
    if new:
        try:
            with names_path.open("a", encoding="utf-8") as f:
                append_lines(f, new)
        except OSError as e:
            raise OutputError(f"{names_path}: cannot write ({e.strerror or e})") from None
    return out


# -- one frame's output: shared by the threads here and the Ray workers (cluster.py) ----------
def crop_name(inp: Input, index: int, k: int, image_format: str) -> str:
    """Where face ``k`` of frame ``index`` of ``inp`` goes, relative to the output folder."""
    if inp.kind == "video":
        return f"{inp.name}/{index:06d}_{k}.{image_format}"
    return f"{inp.name}_{k}.{image_format}"


def face_crops(image: np.ndarray, faces: Faces, options: ExtractOptions) -> list[np.ndarray]:
    """The crop of each face of ``image`` (full resolution), by ``options``."""
    if options.align:
        return [align_face(image, faces.landmarks[k], options.size, options.margin)
                for k in range(len(faces))]
    return [crop_box(image, faces.boxes[k], options.size, options.margin) for k in range(len(faces))]


def index_line(inp: Input, index: int, pts: float | None, face: dict, crop: str) -> str:
    """One ``index.jsonl`` line (with its newline); ``face`` as :func:`~livefaces.types.face_json`."""
    return json.dumps({"source": inp.source, "frame": index,
                       "pts": None if pts is None else round(pts, 6), **face, "crop": crop}) + "\n"


def done_line(inp: Input, frames: int, faces: int) -> str:
    """One ``done.jsonl`` line (with its newline): ``inp`` is finished, all its rows written."""
    return json.dumps({"source": inp.source, "key": inp.key, "name": inp.name, "frames": frames,
                       "faces": faces}) + "\n"


def write_crops(out_dir: Path, options: ExtractOptions, inp: Input, index: int, pts: float | None,
                crops: Sequence[np.ndarray], faces: Sequence[dict]) -> list[str]:
    """Write the crops of one frame (each atomically) and return its index lines."""
    lines = []
    for k, (crop, face) in enumerate(zip(crops, faces)):
        rel = crop_name(inp, index, k, options.image_format)
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        write_image(target, crop)
        lines.append(index_line(inp, index, pts, face, rel))
    return lines


def write_frame(out_dir: Path, options: ExtractOptions, inp: Input, index: int, pts: float | None,
                image: np.ndarray, faces: Faces) -> list[str]:
    """Crop, write and index the faces of one frame; its index lines."""
    return write_crops(out_dir, options, inp, index, pts, face_crops(image, faces, options),
                       [face_json(faces.boxes[k], faces.scores[k], faces.landmarks[k])
                        for k in range(len(faces))])


def append_lines(f: TextIO, lines: Sequence[str]) -> None:
    """Append whole lines and put them on disk (flush + fsync)."""
    if lines:
        f.write("".join(lines))
    f.flush()
    os.fsync(f.fileno())


# -- the output folder ----------------------------------------------------------------------
def prepare_out_dir(out_dir: Path, options: ExtractOptions,
                     keep_segments: bool = False) -> tuple[set[str], dict[str, dict]]:
    """Check ``out_dir`` (an existing folder) and clean what an interrupted run left: index
    lines of inputs not done, torn lines, temp files. Return the keys of the inputs done, and (with
    ``keep_segments``, for a Ray run) the records of video segments done (``parts.jsonl``) whose
    index lines are all there, by part id; without it segment lines are dropped and
    ``parts.jsonl`` emptied, since the single-machine job redoes unfinished inputs whole."""
    settings_path = out_dir / SETTINGS_FILE
    wanted = options.output_settings()
    if settings_path.exists():
        try:
            have = json.loads(settings_path.read_text()).get("settings", {})
        except (json.JSONDecodeError, AttributeError):
            have = None
        if have != wanted:
            if isinstance(have, dict):
                diff = ", ".join(f"{k} {have.get(k)!r} -> {v!r}" for k, v in wanted.items()
                                 if have.get(k) != v)
            else:
                diff = f"{SETTINGS_FILE} unreadable"
            raise InputError(f"{out_dir} holds an extraction with other settings ({diff}); "
                             "use another --out folder, or the same settings to resume")
    else:
        write_output(settings_path, json.dumps({"version": 1, "settings": wanted}, indent=1) + "\n")
    return clean_out_dir(out_dir, keep_segments)


def clean_out_dir(out_dir: Path, keep_segments: bool = False,
                  drop: frozenset[str] = frozenset()) -> tuple[set[str], dict[str, dict]]:
    """Leave in ``out_dir`` only what belongs to inputs done (and, with ``keep_segments``,
    segments done of videos not done yet, except those of the inputs whose keys are in
    ``drop``: failed ones): index lines of other inputs, torn lines, their crops and temp
    files go. Return the keys of the inputs done and the segments kept (see
    :func:`prepare_out_dir`). Run before a job (what an interrupted one left) and after one
    with failed inputs, so ``index.jsonl`` never holds rows of an input that is not done."""
    done: dict[str, str] = {}  # key -> source as written in the index
    done_path = out_dir / DONE_FILE
    if done_path.exists():
        for line in done_path.read_text().splitlines():
            try:
                rec = json.loads(line)
                done[rec["key"]] = rec["source"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # an incomplete last line: that input is simply not done
    # video segments finished by a Ray run (parts.jsonl) whose input is not done yet
    segments: dict[str, dict] = {}
    parts_path = out_dir / PARTS_FILE
    part_lines = parts_path.read_text().splitlines() if parts_path.exists() else []
    if part_lines:
        for line in part_lines:
            try:
                rec = json.loads(line)
                if rec["key"] not in done and rec["key"] not in drop:
                    segments[rec["part"]] = {k: rec[k] for k in ("part", "key", "source", "first",
                                                                 "end", "frames", "faces")}
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    if not keep_segments:
        segments = {}  # the single-machine job redoes a whole input
    by_source: dict[str, list[dict]] = {}
    for rec in segments.values():
        by_source.setdefault(rec["source"], []).append(rec)

    def segment_of(rec: dict) -> dict | None:
        for seg in by_source.get(rec["source"], ()):
            if seg["first"] <= rec["frame"] < seg["end"]:
                return seg
        return None

    # drop index lines of inputs and segments that are not done (an interrupted run) and
    # torn lines; a segment whose lines are not all there is redone
    index_path = out_dir / INDEX_FILE
    lines: list[tuple[str, dict | None, bool]] = []  # (line, its segment, kept)
    if index_path.exists():
        sources = set(done.values())
        seen: dict[str, int] = {}
        with index_path.open() as f:
            for line in f:
                try:
                    rec = json.loads(line) if line.endswith("\n") else None
                    source = rec["source"] if rec else None
                except (json.JSONDecodeError, KeyError, TypeError):
                    rec, source = None, None
                if rec is None:
                    lines.append((line, None, False))
                elif source in sources:
                    lines.append((line, None, True))
                else:
                    seg = segment_of(rec) if by_source else None
                    if seg is not None:
                        seen[seg["part"]] = seen.get(seg["part"], 0) + 1
                    lines.append((line, seg, seg is not None))
        for part, rec in list(segments.items()):
            if seen.get(part, 0) != rec["faces"]:
                del segments[part]
        keep = [ok and (seg is None or seg["part"] in segments) for _, seg, ok in lines]
        if not all(keep):
            write_output(index_path, "".join(line for (line, _, _), k in zip(lines, keep) if k))
            _remove_crops(out_dir, [line for (line, _, _), k in zip(lines, keep) if not k],
                          [line for (line, _, _), k in zip(lines, keep) if k])
    if parts_path.exists() and len(segments) != len(part_lines):
        write_output(parts_path, "".join(json.dumps(rec) + "\n" for rec in segments.values()))
    remove_temp_files(out_dir)  # temp files of a killed run
    return set(done), segments


def _remove_crops(out_dir: Path, dropped: list[str], kept: list[str]) -> None:
    """Delete the crops of the ``dropped`` index lines that no ``kept`` line names (inside
    ``out_dir`` only)."""
    def crop(line: str) -> str | None:
        try:
            c = json.loads(line).get("crop")
        except (json.JSONDecodeError, AttributeError):
            return None
        return c if isinstance(c, str) else None

    keep = {crop(line) for line in kept}
    root = out_dir.resolve()
    for line in dropped:
        c = crop(line)
        if c is None or c in keep:
            continue
        path = (out_dir / c).resolve()
        if root in path.parents:
            try:
                path.unlink()
            except OSError:
                pass


def remove_temp_files(out_dir: Path) -> None:
    """Remove the temp files (``.NAME.tmp``) a killed run left in ``out_dir``."""
    for dirpath, _, filenames in os.walk(out_dir):
        for name in filenames:
            if name.startswith(".") and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(dirpath, name))
                except OSError:
                    pass


def drop_failed(out: Path, todo: list[Input], report: ExtractReport, keep_segments: bool) -> None:
    """After a run with failed inputs: their index lines, crops and segments go (a damaged
    video read half way leaves nothing), so every row of ``index.jsonl`` is of an input done
    (or, on a cluster, of a segment done of a video that did not fail)."""
    if not report.failed:
        return
    failed = {source for source, _ in report.failed}
    gone = [i for i in todo if i.source in failed]
    clean_out_dir(out, keep_segments, frozenset(i.key for i in gone))
    for inp in gone:  # crops a cluster's write tasks made for rows never committed
        _remove_crops_of(out, inp)


def _remove_crops_of(out: Path, inp: Input) -> None:
    """Delete every crop file of ``inp`` (its name is its own: :func:`assign_names`)."""
    if inp.kind == "video":
        folder, pattern = out / inp.name, re.compile(r"\d{6,}_\d+\.(?:jpg|png)")
    else:
        folder = (out / inp.name).parent
        pattern = re.compile(re.escape(Path(inp.name).name) + r"_\d+\.(?:jpg|png)")
    if not folder.is_dir():
        return
    for f in folder.iterdir():
        if pattern.fullmatch(f.name):
            try:
                f.unlink()
            except OSError:
                pass
    if inp.kind == "video":
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass
