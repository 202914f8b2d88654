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
import re
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from ..errors import SourceError
from ..redact import redact_text, redact_url
from ..types import Frame

__all__ = ["FrameSource", "open_source", "source_problem", "redact_url", "redact_text",
           "NETWORK_SCHEMES"]

#: URL schemes handed to FFmpeg
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "rtmps")
# "scheme:" without "//" (two letters at least, so "C:\\clip.mp4" is a path)
_SCHEME_ONLY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


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
    problem = source_problem(s)
    if problem is not None:
        raise SourceError(f"{redact_url(s)}: {problem}")
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

        return ImageFolderSource(p, loop=loop, realtime=realtime)
    from .stream import FileSource

    return FileSource(p, loop=loop, realtime=realtime, options=options)


def source_problem(spec: str, *, must_exist: bool = True) -> str | None:
    """Why ``spec`` can never work as a source (one line, what to do), or ``None`` if it may.

    The one check of source specs: :func:`open_source` refuses exactly what this reports, and
    ``livefaces serve --check-config`` uses it too, so checking and starting cannot disagree.
    It does not open anything (a camera that is off is not a problem here; capture retries).

    Args:
        spec: as for :func:`open_source`. The answer never contains the spec itself, so
            callers decide how to show it (redacted: see :func:`redact_url`).
        must_exist: report files and folders that do not exist (``False``: only the syntax).
    """
    if not spec.strip():
        return "empty source; give a URL, a video file, an image folder or a webcam number"
    if spec.isdigit() or spec.startswith("/dev/video") or spec.startswith("synthetic:"):
        return None
    path = spec
    if "://" in spec:
        # the parser's own messages can quote part of a password ("...as 'pw'"): not shown
        hint = ("; a '@', ':', '/', '?' or '#' inside a user name or password must be written "
                "%40, %3A, %2F, %3F or %23")
        try:
            parts = urlsplit(spec)
        except ValueError:
            return "not a valid URL (the [ ] around an IPv6 address do not match)" + hint
        try:
            parts.port  # noqa: B018  (parsing it raises ValueError unless it is 0-65535)
        except ValueError:
            return "not a valid URL (the port is not a number from 0 to 65535)" + hint
        scheme = parts.scheme.lower()
        if scheme == "file":
            path = parts.path
        elif scheme not in NETWORK_SCHEMES:
            return (f"unsupported URL scheme {scheme!r}; use rtsp://, rtsps://, http://, https://, "
                    f"rtmp://, a video file, an image folder or a webcam number")
        elif not parts.hostname:
            return "the URL has no host; expected SCHEME://[USER:PASSWORD@]HOST[:PORT]/PATH"
        else:
            return None
    elif _SCHEME_ONLY.match(spec) and not Path(spec).exists():  # "javascript:...", "webcam:0"
        return (f"unsupported URL scheme {spec.split(':', 1)[0].lower()!r} (and no file of that "
                f"name); use rtsp://, rtsps://, http://, https://, rtmp://, a video file, an image "
                f"folder or a webcam number")
    if must_exist and not Path(path).exists():
        return "no such file or folder; check the path (or give a URL or a webcam number)"
    return None
