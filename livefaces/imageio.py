"""Reading and writing still images (OpenCV's codecs behind one module), and the output
folders they go in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageReadError, OutputError
from .outfile import write_output

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
    unreadable, empty or not an image.
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
    if not data.size:
        raise ImageReadError(f"{p}: empty file (0 bytes)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"{p}: not an image OpenCV can decode")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Encode ``rgb`` to ``path`` (format from the suffix), by the rule of
    :mod:`livefaces.outfile`: a plain file atomically (temp file + rename), a symlink, device
    or FIFO written through (never replaced).

    Raises :class:`OutputError` (an ``OSError``), one line naming the file, when it cannot be
    encoded or written."""
    p = Path(path)
    try:
        ok, buf = cv2.imencode(p.suffix or ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:  # no encoder for the suffix
        ok = False
    if not ok:
        raise OutputError(f"{p}: OpenCV cannot encode images of type {p.suffix!r}; "
                          "use .jpg, .png, .webp, .bmp or .tiff")
    write_output(p, buf.tobytes())


def make_folder(path: str | os.PathLike[str], purpose: str) -> Path:
    """Create the output folder ``path`` (and its parents) if needed and return it.

    Raises :class:`OutputError` (an ``OSError``), one line naming ``purpose`` (what the folder
    is for, e.g. ``"the annotated copies"``), when it cannot be: a file is in the way, no
    permission, a read-only file system.
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{p}: cannot be the folder for {purpose} ({_why(p, e)})") from None
    return p


def _why(folder: Path, e: OSError) -> str:
    """Why ``folder`` could not be used: the file in its way, else the system's reason."""
    file = next((q for q in (folder, *folder.parents) if q.is_file()), None)
    if file is not None:
        return f"{file} is a file, not a folder"
    return e.strerror or type(e).__name__
