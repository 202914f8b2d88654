"""Reading and writing still images (OpenCV's codecs behind one module), and the output
folders they go in."""

from __future__ import annotations

import logging
import os
import re
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageReadError, OutputError
from .outfile import write_output
from .specs import file_problem

log = logging.getLogger(__name__)

#: File name endings treated as images when walking folders.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"}
)


def walk_files(root: Path, suffixes: frozenset[str]) -> Iterator[Path]:
    """Regular files under ``root`` (recursively, sorted, folders in order) whose suffix is in
    ``suffixes`` (lower case, with the dot). A special file with such a name (a FIFO, which
    would block its reader forever, a device, a socket) is skipped with a warning naming it;
    a dangling symlink is yielded, for the reader to report as missing."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            path = Path(dirpath) / f
            if path.suffix.lower() in suffixes:
                problem = file_problem(path)
                if problem is not None and problem.startswith("is "):
                    log.warning("skipping %s: %s", path, problem)
                    continue
                yield path


#: The default of ``max_pixels`` (:func:`read_image`, ``--max-pixels``): 100 million pixels
#: (a 12 000 x 8 000 photo; phones take 12-50). Decoded, such an image takes 300 MB as RGB.
MAX_PIXELS = 100_000_000

#: The formats whose size :func:`image_size` reads from the header (only these are decoded)
KNOWN_FORMATS = "JPEG, PNG, GIF, BMP, WebP, TIFF, JPEG 2000, AVIF, PNM/PAM/PFM, Sun raster, Radiance HDR"


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    if data[:2] == b"P7":  # PAM: WIDTH/HEIGHT lines up to ENDHDR
        head = data[:4096].split(b"ENDHDR")[0]
        w = re.search(rb"^WIDTH\s+(\d+)", head, re.M)
        h = re.search(rb"^HEIGHT\s+(\d+)", head, re.M)
        return (int(w.group(1)), int(h.group(1))) if w and h else None
    # P1-P6, PF/Pf: magic, then width and height as decimal tokens, '#' comments between
    head = re.sub(rb"#[^\n]*", b" ", data[2:4096])
    m = re.match(rb"\s+(\d+)\s+(\d+)", head)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # TEM, RSTn: no length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI, SOS before any frame header
            return None
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            if i + 9 > n:
                return None
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """The first image (IFD) of a TIFF or BigTIFF: what OpenCV decodes."""
    e = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(e + "H", data[2:4])[0] == 43
    if big:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
        (ifd,) = struct.unpack(e + "Q", data[8:16])
        (count,) = struct.unpack(e + "Q", data[ifd:ifd + 8])
        first, size, value = ifd + 8, 20, 12
    else:
        (ifd,) = struct.unpack(e + "I", data[4:8])
        (count,) = struct.unpack(e + "H", data[ifd:ifd + 2])
        first, size, value = ifd + 2, 12, 8
    dims: dict[int, int] = {}
    for k in range(min(count, 4096)):
        at = first + size * k
        if at + size > len(data):
            break
        tag, typ = struct.unpack(e + "HH", data[at:at + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT, LONG or (BigTIFF) LONG8
            fmt = e + {3: "H", 16: "Q"}.get(typ, "I")
            dims[tag] = struct.unpack(fmt, data[at + value:at + value + struct.calcsize(fmt)])[0]
    return (dims[256], dims[257]) if len(dims) == 2 else None


def _box_size(data: bytes, box: bytes, swap: bool) -> tuple[int, int] | None:
    """JPEG 2000's ``ihdr`` (height, width) or ISO BMFF's ``ispe`` (flags, width, height)."""
    at = data.find(box, 0, 1 << 20)
    if at < 0:
        return None
    if swap:  # ihdr
        h, w = struct.unpack(">II", data[at + 4:at + 12])
    else:  # ispe
        w, h = struct.unpack(">II", data[at + 8:at + 16])
    return w, h


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of an encoded image from its header alone (nothing decoded), for
    the formats of :data:`KNOWN_FORMATS`; None when the format is not one of them or the
    header is damaged."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return struct.unpack(">II", data[16:24])  # IHDR, the first chunk
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:2] == b"BM":
            if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER
                return struct.unpack("<HH", data[18:22])
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                return w, int.from_bytes(data[27:30], "little") + 1
            if chunk == b"VP8L":
                (bits,) = struct.unpack("<I", data[21:25])
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return w & 0x3FFF, h & 0x3FFF
            return None
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff_size(data)
        if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":  # JP2
            return _box_size(data, b"ihdr", swap=True)
        if data[:4] == b"\xff\x4f\xff\x51":  # a bare JPEG 2000 codestream: SIZ first
            xs, ys, xo, yo = struct.unpack(">IIII", data[8:24])
            return xs - xo, ys - yo
        if data[4:8] == b"ftyp":  # AVIF/HEIF (ISO BMFF): the image's 'ispe' property
            return _box_size(data, b"ispe", swap=False)
        if data[:1] == b"P" and data[1:2] in b"1234567Ff" and len(data) > 2:
            return _pnm_size(data)
        if data[:4] == b"\x59\xa6\x6a\x95":  # Sun raster
            return struct.unpack(">II", data[4:12])
        if data[:2] == b"#?":  # Radiance HDR: header lines, a blank line, "-Y H +X W"
            m = re.search(rb"\n\n[-+]([XY]) (\d+) [-+]([XY]) (\d+)", data[:65536])
            if not m or m.group(1) == m.group(3):
                return None
            first, second = int(m.group(2)), int(m.group(4))
            return (second, first) if m.group(1) == b"Y" else (first, second)
    except (struct.error, ValueError, IndexError):
        return None
    return None


#: bytes read before the header is parsed (enough for every header but JPEG's after a huge
#: EXIF or ICC block: then the rest is read and parsed again)
_HEAD = 1 << 20


def _too_many(size: tuple[int, int], max_pixels: int | None) -> bool:
    return max_pixels is not None and size[0] * size[1] > max_pixels


def read_image(path: str | os.PathLike[str], max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 **RGB** (alpha dropped, gray expanded).

    The size is read from the header first and nothing is decoded unless width x height is
    at most ``max_pixels`` (``None``: no limit): a small file can claim a huge image (a
    decompression bomb: an 875 KB PNG of 30 000 x 30 000 pixels took 15 GB to decode).
    Only the formats of :data:`KNOWN_FORMATS` are decoded (their header says the size).
    A file larger than any image within the limit takes (16 bytes a pixel, 4 float channels,
    plus 64 MB) is not read.

    Raises :class:`ImageReadError` (an ``OSError``) naming the file if it is missing, not a
    regular file (a FIFO, a device: they could block forever), unreadable, empty, too large
    or not an image.
    """
    p = Path(path)
    problem = file_problem(p)
    if problem is not None:
        raise ImageReadError(f"{p}: {problem}")
    try:
        # A checked regular file: reading cannot block. (Reading the bytes + cv2.imdecode,
        # unlike cv2.imread, handles any path encoding.) The header first: nothing more is
        # read of a file that claims too many pixels, or is too large to be an image within
        # the limit (a video renamed .jpg).
        with open(p, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):  # swapped since the check
                raise ImageReadError(f"{p}: is not a regular file")
            data = f.read(_HEAD)
            size = image_size(data)
            if size is None or not _too_many(size, max_pixels):
                if max_pixels is not None and st.st_size > max_pixels * 16 + (64 << 20):
                    raise ImageReadError(
                        f"{p}: {st.st_size:,} bytes is more than any image of at most "
                        f"{max_pixels:,} pixels takes (not read); raise --max-pixels if the "
                        f"image is real")
                data += f.read()
                if size is None:
                    size = image_size(data)  # a header past the first bytes (large EXIF)
    except OSError as e:
        if isinstance(e, ImageReadError):
            raise
        raise ImageReadError(f"{p}: cannot read ({e.strerror or e})") from e
    if not data:
        raise ImageReadError(f"{p}: empty file (0 bytes)")
    if size is None:
        raise ImageReadError(f"{p}: not an image livefaces can read (damaged, or not one of "
                             f"{KNOWN_FORMATS})")
    w, h = size
    if _too_many(size, max_pixels):
        raise ImageReadError(f"{p}: {w}x{h} pixels is over the limit of {max_pixels:,} pixels "
                             f"(not decoded); raise it with --max-pixels if the image is real")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:  # OpenCV's own checks (its 2^30-pixel cap, a codec's error)
        text = " ".join(str(e).split())
        m = re.search(r"error: \([^)]*\) (.*)", text)
        reason = (m.group(1) if m else text) or "cv2.error"
        raise ImageReadError(f"{p}: not an image OpenCV can decode ({reason})") from None
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
