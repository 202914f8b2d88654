"""Frame sources: webcams, video files, network streams, image folders, a synthetic fake.

Every source implements :class:`FrameSource`; :func:`open_source` picks one from a string::

    0, "1", "/dev/video0"            webcam (OpenCV)
    "clip.mp4"                       video file (PyAV); ``loop=True`` starts over at the end
    "rtsp://user:pw@cam/stream"      RTSP/RTSPS over TCP (``transport="udp"`` for UDP)
    "http(s)://host/stream.m3u8"     HTTP(S) streams (HLS, MJPEG, progressive MP4, ...)
    "photos/"                        a folder of images, in name order
    "synthetic:"                     a moving face drawn here (tests, demos; no hardware)

Sources only produce frames; threads, buffering, reconnecting and the stall watchdog live in
:mod:`livefaces.capture`.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import SourceError
from ..imageio import MAX_PIXELS
from ..redact import redact_text, redact_url
from ..specs import NETWORK_SCHEMES, source_problem
from ..types import FrameSource

__all__ = ["FrameSource", "open_source", "source_problem", "redact_url", "redact_text",
           "NETWORK_SCHEMES"]

#: URL schemes handed to FFmpeg
# "scheme:" without "//" (two letters at least, so "C:\\clip.mp4" is a path)


def open_source(spec: str | int | os.PathLike[str], *, transport: str = "tcp", loop: bool = False,
                realtime: bool = False, options: dict[str, str] | None = None,
                max_pixels: int | None = MAX_PIXELS) -> FrameSource:
    """A :class:`FrameSource` for ``spec`` (not opened yet; capture opens it).

    Args:
        spec: webcam number or device, file, folder, URL or ``"synthetic:"`` (module docs).
        transport: RTSP transport, ``"tcp"`` (default, robust) or ``"udp"`` (lower latency on
            clean networks, loses frames on lossy ones).
        loop: files and folders start over at the end instead of ending.
        realtime: files and folders are paced at their frame rate like a camera (and then
            treated as live: frames are dropped when the consumer is slow).
        options: extra FFmpeg demuxer options for files and URLs.
        max_pixels: images of a folder, and the frames of a file, larger than this (width x
            height, read from the header before decoding) are refused (folders: skipped);
            ``None``: no limit. Default :data:`livefaces.imageio.MAX_PIXELS` (100 million).

    Raises :class:`SourceError` (one line, what to do) for specs that can never work: an
    unknown URL scheme, a missing file.
    """
    if isinstance(spec, int):
        from .webcam import WebcamSource

        return WebcamSource(spec)
    s = os.fspath(spec)
    problem = source_problem(s)
    if problem is not None:  # ("synthetic:0x0@25" holds no secret, though it looks like one)
        raise SourceError(f"{s if s.startswith('synthetic:') else redact_url(s)}: {problem}")
    if s.isdigit() or s.startswith("/dev/video"):
        from .webcam import WebcamSource

        return WebcamSource(int(s) if s.isdigit() else s)
    if s.startswith("synthetic:"):
        from .synthetic import SyntheticSource

        return SyntheticSource.from_spec(s, realtime=realtime)
    if "://" in s:
        parts = urlsplit(s)
        if parts.scheme.lower() == "file":
            s = parts.path
        else:
            if transport not in ("tcp", "udp"):
                raise SourceError(f"transport must be 'tcp' or 'udp', got {transport!r}")
            from .stream import StreamSource

            return StreamSource(s, transport=transport, options=options)
    p = Path(s)
    if p.is_dir():
        from .images import ImageFolderSource

        return ImageFolderSource(p, loop=loop, realtime=realtime, max_pixels=max_pixels)
    from .stream import FileSource

    return FileSource(p, loop=loop, realtime=realtime, options=options, max_pixels=max_pixels)


