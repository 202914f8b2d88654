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
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from ..errors import SourceError
from ..types import Frame
from .redact import redact_text, redact_url

__all__ = ["FrameSource", "open_source", "redact_url", "redact_text", "NETWORK_SCHEMES"]

#: URL schemes handed to FFmpeg
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "rtmps")


@runtime_checkable
class FrameSource(Protocol):
    """What capture needs from a source. Not thread-safe: one capture thread owns it.

    Attributes:
        name: display name, credentials removed (safe for logs and events).
        live: True for cameras and streams (frames are dropped rather than waited for, and
            errors lead to reconnecting); False for files and folders (no frame is lost).
    """

    name: str
    live: bool

    def open(self, open_timeout: float, stall_timeout: float) -> None:
        """Connect/open; raises :class:`~livefaces.errors.SourceError` with a one-line reason.
        May be called again after :meth:`close` (reconnect)."""

    def read(self) -> Frame:
        """The next frame. Raises :class:`~livefaces.errors.EndOfStream` at the end,
        :class:`~livefaces.errors.StalledError` when no frame came for ``stall_timeout`` s,
        :class:`~livefaces.errors.SourceError` on other failures."""

    def close(self) -> None:
        """Release the device/connection; safe to call twice."""


def open_source(spec: str | int | os.PathLike[str], *, transport: str = "tcp", loop: bool = False,
                realtime: bool = False, options: dict[str, str] | None = None) -> FrameSource:
    """A :class:`FrameSource` for ``spec`` (not opened yet; capture opens it).

    Args:
        spec: webcam number or device, file, folder, URL or ``"synthetic:"`` (module docs).
        transport: RTSP transport, ``"tcp"`` (default, robust) or ``"udp"`` (lower latency on
            clean networks, loses frames on lossy ones).
        loop: files and folders start over at the end instead of ending.
        realtime: files and folders are paced at their frame rate like a camera (and then
            treated as live: frames are dropped when the consumer is slow).
        options: extra FFmpeg demuxer options for files and URLs.

    Raises :class:`SourceError` (one line, what to do) for specs that can never work: an
    unknown URL scheme, a missing file.
    """
    if isinstance(spec, int):
        from .webcam import WebcamSource

        return WebcamSource(spec)
    s = os.fspath(spec)
    if s.isdigit() or s.startswith("/dev/video"):
        from .webcam import WebcamSource

        return WebcamSource(int(s) if s.isdigit() else s)
    if s.startswith("synthetic:"):
        from .synthetic import SyntheticSource

        return SyntheticSource.from_spec(s, realtime=realtime)
    if "://" in s:
        scheme = urlsplit(s).scheme.lower()
        if scheme == "file":
            s = urlsplit(s).path
        elif scheme not in NETWORK_SCHEMES:
            raise SourceError(
                f"{redact_url(s)}: unsupported URL scheme {scheme!r}; use rtsp://, rtsps://, "
                f"http://, https://, a video file, an image folder or a webcam number")
        else:
            if transport not in ("tcp", "udp"):
                raise SourceError(f"transport must be 'tcp' or 'udp', got {transport!r}")
            from .stream import StreamSource

            return StreamSource(s, transport=transport, options=options)
    p = Path(s)
    if p.is_dir():
        from .images import ImageFolderSource

        return ImageFolderSource(p, loop=loop, realtime=realtime)
    if not p.exists():
        raise SourceError(f"{s}: no such file or folder; check the path (or give a URL or a "
                          f"webcam number)")
    from .stream import FileSource

    return FileSource(p, loop=loop, realtime=realtime, options=options)
