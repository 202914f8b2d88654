"""Reading and writing still images (OpenCV's codecs behind one module)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageReadError

#: File name endings treated as images when walking folders.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"}
)


def walk_files(root: Path, suffixes: frozenset[str]) -> Iterator[Path]:
    """Files under ``root`` (recursively, sorted, folders in order) whose suffix is in
    ``suffixes`` (lower case, with the dot)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            path = Path(dirpath) / f
            if path.suffix.lower() in suffixes:
                yield path


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 **RGB** (alpha dropped, gray expanded).

    Raises :class:`ImageReadError` (an ``OSError``) naming the file if it is missing,
    unreadable or not an image.
    """
    p = Path(path)
    try:
        data = np.fromfile(p, dtype=np.uint8)  # unlike cv2.imread, handles any path encoding
    except FileNotFoundError as e:
        raise ImageReadError(f"{p}: no such file") from e
    except IsADirectoryError as e:
        raise ImageReadError(f"{p}: is a directory") from e
    except OSError as e:
        raise ImageReadError(f"{p}: cannot read ({e.strerror or e})") from e
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageReadError(f"{p}: not an image OpenCV can decode")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Encode ``rgb`` to ``path`` (format from the suffix), atomically (temp file + rename)."""
    p = Path(path)
    ok, buf = cv2.imencode(p.suffix or ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{p}: OpenCV cannot encode images of type {p.suffix!r}")
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, p)
