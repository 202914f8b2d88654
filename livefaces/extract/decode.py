"""Video decoding for ``extract`` (the one PyAV user on this branch) and input discovery.

Frames come out as ``(H, W, 3)`` uint8 RGB. Decoding uses FFmpeg's own threads
(``thread_type="AUTO"``); frames skipped by the stride are decoded (codecs need them) but never
converted to RGB, which is where most of the per-frame cost is.
"""

from __future__ import annotations

import glob
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SourceError
from ..imageio import IMAGE_SUFFIXES

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
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames.sort()
                for f in sorted(filenames):
                    fp = Path(dirpath) / f
                    if fp.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
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


def count_frames(path: Path) -> int | None:
    """Frames in the first video stream (header count, else duration × rate); ``None`` if unknown."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            if stream.duration is not None and stream.time_base and stream.average_rate:
                return int(math.ceil(float(stream.duration * stream.time_base * stream.average_rate)))
            if container.duration and stream.average_rate:
                return int(math.ceil(container.duration / 1e6 * float(stream.average_rate)))
    except Exception:  # noqa: BLE001 - unknown is fine here; decoding reports real errors
        return None
    return None


def iter_video(path: Path, stride: int = 1,
               stop: threading.Event | None = None) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """``(frame_index, pts_seconds, rgb)`` for every ``stride``-th frame (index 0, s, 2s, ...).

    ``frame_index`` counts decoded frames from 0. Raises :class:`SourceError` if the file
    cannot be opened or has no video stream; a decode error mid-stream ends the iteration with
    a :class:`SourceError` naming the frame.
    """
    import av

    try:
        container = av.open(str(path))
    except FileNotFoundError as e:
        raise SourceError(f"{path}: no such file") from e
    except Exception as e:  # noqa: BLE001 - PyAV's error tree: not a video, unreadable
        raise SourceError(f"{path}: cannot open as a video ({e})") from e
    with container:
        if not container.streams.video:
            raise SourceError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if index % stride:
                    continue
                if stop is not None and stop.is_set():
                    return
                pts = None
                if frame.pts is not None and frame.time_base:
                    pts = float(frame.pts * frame.time_base)
                yield index, pts, frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise SourceError(f"{path}: decoding failed after frame {index} ({e})") from e
