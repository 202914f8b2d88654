"""Input discovery and strided video frames for ``extract`` (decoding itself is
:mod:`livefaces.avio`'s: frames skipped by the stride are decoded but never converted to RGB,
which is where most of the per-frame cost is)."""

from __future__ import annotations

import glob
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..avio import AVInput
from ..errors import EndOfStream, SourceError
from ..imageio import IMAGE_SUFFIXES, MAX_PIXELS, walk_files
from ..specs import file_problem

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                            ".flv", ".wmv", ".3gp", ".ogv"})


@dataclass(frozen=True)
class Input:
    """One thing to extract from.

    Attributes:
        source: the path as the user named it (used in ``index.jsonl``).
        path: the file.
        kind: ``"video"`` or ``"image"``.
        name: unique output stem relative to the output folder (crops go under it).
        key: absolute path, identity for resuming.
    """

    source: str
    path: Path
    kind: str
    name: str
    key: str


def _kind(path: Path) -> str:
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def plan_inputs(items: list[str]) -> list[Input]:
    """Expand files, folders (recursive: images and videos, sorted) and globs into inputs.

    A name that matches nothing is kept (as a video) so the run reports it as missing.
    Duplicates are dropped; output names are made unique by suffixing ``-2``, ``-3``...
    """
    found: list[tuple[str, Path, str]] = []  # (source, path, name)
    for item in items:
        p = Path(item)
        if p.is_dir():
            for fp in walk_files(p, IMAGE_SUFFIXES | VIDEO_SUFFIXES):
                rel = fp.relative_to(p).with_suffix("")
                found.append((str(fp), fp, str(Path(p.resolve().name or "root") / rel)))
        elif p.exists() or not glob.has_magic(item):
            found.append((item, p, p.stem))
        else:
            for m in sorted(glob.glob(item, recursive=True)):
                if Path(m).is_file():
                    found.append((m, Path(m), Path(m).stem))
    out: list[Input] = []
    keys: set[str] = set()
    names: set[str] = set()
    for source, path, name in found:
        key = str(path.resolve())
        if key in keys:
            continue
        keys.add(key)
        base, n = name, 2
        while name in names:
            name = f"{base}-{n}"
            n += 1
        names.add(name)
        out.append(Input(source, path, _kind(path), name, key))
    return out


def iter_video(path: Path, stride: int = 1, stop: threading.Event | None = None,
               max_pixels: int | None = MAX_PIXELS
               ) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """``(frame_index, pts_seconds, rgb)`` for every ``stride``-th frame (index 0, s, 2s, ...).

    ``frame_index`` counts decoded frames from 0. Raises :class:`SourceError` (one line, says
    what to do) if the file cannot be opened, is not a regular file (a FIFO would block
    forever), has no video stream, has frames over ``max_pixels``, or fails mid-stream.
    """
    problem = file_problem(path)
    if problem is not None and problem != "no such file":  # FFmpeg's own message says it
        raise SourceError(f"{path}: {problem}")
    video = AVInput(str(path), live=False, max_pixels=max_pixels)
    try:
        for k, (rgb, pts) in enumerate(video.frames(stride=stride)):
            if stop is not None and stop.is_set():
                return
            yield k * stride, pts, rgb
    except EndOfStream:
        return
    finally:
        video.close()
