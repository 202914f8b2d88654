"""PyAV (FFmpeg) behind one module: decoding files and network streams, encoding MP4.

Nothing else in livefaces imports ``av``. Errors leave this module as
:class:`~livefaces.errors.SourceError` (reading) or :class:`~livefaces.errors.OutputError`
(writing) with one-line messages that say what to do and never
contain credentials (URLs are redacted; FFmpeg's own log output is left off).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np

try:
    import av
    import av.error
except ImportError as _no_av:  # livefaces imports without PyAV; each use names what is missing
    _WHY = f"PyAV is not installed ({_no_av}): video files, streams and recordings need it: pip install av"

    class _NoPyAV:
        def __getattr__(self, name: str) -> object:
            if name.startswith("__"):  # copy/pickle/inspect probes
                raise AttributeError(name)
            from .errors import MissingExtraError

            raise MissingExtraError(_WHY)

    av = _NoPyAV()  # type: ignore[assignment]

from .errors import EndOfStream, NotVideoError, OutputError, SourceError, StalledError
from .outfile import open_through, writes_through
from .redact import redact_text, redact_url
from .specs import file_problem

#: FFmpeg demuxer options that cut buffering for live sources
LOW_LATENCY = {"flags": "low_delay", "max_delay": "500000",
               "analyzeduration": "1000000", "probesize": "1000000"}
#: ... and for RTSP also no demuxer buffering. Not for HTTP: there it left MPEG-TS streams
#: without a single decoded frame (FFmpeg 7, PyAV 18).
LOW_LATENCY_RTSP = {**LOW_LATENCY, "fflags": "nobuffer"}


#: content types that are clearly not video (a camera's login or error page, an API answer)
_NOT_VIDEO_SUBTYPES = ("html", "xhtml+xml", "json", "xml", "javascript")


def content_type(url: str, timeout: float = 5.0) -> str | None:
    """The ``Content-Type`` (without parameters) an ``http(s)://`` URL answers with, or None
    (not HTTP, no answer, no header). Only used to explain a failure: one extra request that
    reads the headers and hangs up. Credentials in the URL are sent as HTTP Basic auth."""
    import base64
    import urllib.error
    import urllib.request
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    req = urllib.request.Request(urlunsplit(parts._replace(netloc=netloc)),
                                 headers={"User-Agent": "livefaces"})
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        req.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - http(s) only
            value = r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        value = e.headers.get("Content-Type") if e.headers else None
    except Exception:  # noqa: BLE001 - a diagnosis, never a new failure
        return None
    return value.split(";")[0].strip().lower() or None if value else None


def _not_video_type(ctype: str | None) -> bool:
    if not ctype:
        return False
    main, _, sub = ctype.partition("/")
    return main == "text" or sub in _NOT_VIDEO_SUBTYPES


def _not_video(url: str, ctype: str | None) -> NotVideoError:
    name = redact_url(url)
    ctype = ctype if _not_video_type(ctype) else None
    what = f"the server sent {ctype}" if ctype else "FFmpeg cannot decode what the server sent"
    return NotVideoError(f"{name}: not a video stream ({what}); check the URL points at the "
                         f"video stream, not a web page")


def _explain(e: BaseException, url: str, live: bool) -> str:
    """One line, credentials removed, saying what went wrong and what to do."""
    name = redact_url(url)
    if isinstance(e, av.error.HTTPUnauthorizedError) or isinstance(e, av.error.HTTPForbiddenError):
        return (f"{name}: the server refused the credentials (401/403); put a valid user name and "
                f"password in the URL: scheme://USER:PASSWORD@host/path")
    if isinstance(e, av.error.HTTPNotFoundError):
        return f"{name}: the server has no stream at this path (404); check the path in the URL"
    if isinstance(e, av.error.ConnectionRefusedError):
        return (f"{name}: connection refused; check the host and port, and that the camera or "
                f"server is running")
    if isinstance(e, av.error.ProtocolNotFoundError):
        return f"{name}: FFmpeg cannot read this kind of URL; use rtsp://, rtsps://, http(s)://"
    if isinstance(e, av.error.FileNotFoundError):
        return f"{name}: no such file; check the path"
    if isinstance(e, av.error.PermissionError):
        return f"{name}: permission denied; check the file's permissions"
    if isinstance(e, av.error.ExitError) or isinstance(e, TimeoutError):
        return (f"{name}: no answer in time (timed out); check the host is reachable and the "
                f"stream is running")
    if isinstance(e, av.error.InvalidDataError):
        if live:
            return f"{name}: the server sent data FFmpeg cannot read; check the URL and stream"
        return (f"{name}: not a video FFmpeg can read (damaged, truncated or another kind of "
                f"file); check the file plays in a video player")
    strerror = getattr(e, "strerror", None) or type(e).__name__
    return f"{name}: {redact_text(str(strerror), url)}"


def upright(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as RGB, turned as its display matrix says (a phone's ``rotate=90``
    or ``270`` video is stored sideways): what a video player shows. Every coordinate
    livefaces reports for a video is in this upright frame."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise, as np.rot90 turns
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


class AVInput:
    """One opened container with a video stream; :meth:`frames` yields decoded RGB frames,
    upright (rotation metadata applied, see :func:`upright`).

    Args:
        url: file path or URL (may contain credentials: they are only handed to FFmpeg).
        live: network/live source: low-latency demuxer options and slice-threaded decoding.
        options: extra FFmpeg demuxer options (merged over the defaults).
        open_timeout: seconds allowed for connecting and probing.
        read_timeout: seconds a read may block (the stall watchdog); ``None`` for files.
        max_pixels: refuse (:class:`SourceError`, before decoding a frame) a video whose
            frames are larger than this, width x height; ``None``: no limit.
    """

    def __init__(self, url: str, *, live: bool, options: dict[str, str] | None = None,
                 open_timeout: float = 10.0, read_timeout: float | None = None,
                 max_pixels: int | None = None) -> None:
        self.url = url
        self.live = live
        rtsp = url.lower().startswith(("rtsp://", "rtsps://"))
        opts = dict(LOW_LATENCY_RTSP if rtsp else LOW_LATENCY) if live else {}
        opts.update(options or {})
        timeout = (open_timeout, read_timeout) if live else None
        self._open_timeout = open_timeout
        try:
            self._container = av.open(url, mode="r", options=opts, timeout=timeout)
        except av.error.InvalidDataError as e:
            if live:  # something answered, but not with video (a login page, say)
                raise _not_video(url, content_type(url, open_timeout)) from None
            raise NotVideoError(_explain(e, url, live)) from None
        except (av.error.FFmpegError, OSError) as e:
            raise SourceError(_explain(e, url, live)) from None
        if not self._container.streams.video:
            self._container.close()
            raise NotVideoError(f"{redact_url(url)}: has no video stream; give a video file or "
                                f"stream")
        self.stream = self._container.streams.video[0]
        self.stream.thread_type = "SLICE" if live else "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps: float | None = float(rate) if rate else None
        self.width = self.stream.codec_context.width
        self.height = self.stream.codec_context.height
        if max_pixels is not None and self.width * self.height > max_pixels:
            self._container.close()
            raise SourceError(f"{redact_url(url)}: frames of {self.width}x{self.height} pixels "
                              f"are over the limit of {max_pixels:,} pixels (not decoded); "
                              f"raise it with --max-pixels if the video is real")

    def frames(self, stall_timeout: float | None = None,
               stride: int = 1) -> Iterator[tuple[np.ndarray, float | None]]:
        """Yield ``(rgb (H, W, 3) uint8, pts seconds or None)`` until the end.

        With ``stride`` > 1 only frames 0, stride, 2·stride, … are yielded; the others are
        decoded (codecs need them) but never converted to RGB, the costly part.
        Raises :class:`EndOfStream` at the end, :class:`StalledError` when ``stall_timeout``
        seconds pass without a decoded frame, :class:`SourceError` on read errors.
        """
        last = time.monotonic()
        index = -1
        try:
            for packet in self._container.demux(self.stream):
                for frame in packet.decode():
                    last = time.monotonic()
                    index += 1
                    if index % stride:
                        continue
                    pts = float(frame.time) if frame.time is not None else None
                    yield upright(frame), pts
                if stall_timeout is not None and time.monotonic() - last > stall_timeout:
                    raise StalledError(f"{redact_url(self.url)}: no frame for {stall_timeout:g} s")
        except av.error.EOFError:
            pass
        except (av.error.FFmpegError, OSError) as e:
            if stall_timeout is not None and time.monotonic() - last >= stall_timeout * 0.9:
                raise StalledError(
                    f"{redact_url(self.url)}: no frame for {stall_timeout:g} s") from None
            if index < 0 and isinstance(e, av.error.InvalidDataError):
                # Not one frame decoded: a web page guessed as images by the URL's extension
                # (".jpg", ".cgi") is "opened", then no decoder accepts it. Retrying is useless.
                ctype = content_type(self.url, self._open_timeout) if self.live else None
                if _not_video_type(ctype) or not self.width:
                    if not self.live:
                        raise NotVideoError(_explain(e, self.url, self.live)) from None
                    raise _not_video(self.url, ctype) from None
            raise SourceError(_explain(e, self.url, self.live)) from None
        raise EndOfStream(redact_url(self.url))

    def close(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - closing a broken stream must not raise
            pass


#: MP4 muxer options of :class:`AVWriter`: fragmented MP4 (an empty ``moov`` up front, then one
#: ``moof``+``mdat`` fragment per keyframe, written out as soon as it is complete), so a file
#: cut by a crash (``kill -9``, power loss, a second Ctrl-C) plays up to its last fragment.
#: ``default_base_moof`` is what browsers (MSE) expect; ``flush_packets`` hands each fragment
#: to the OS at once instead of leaving it in FFmpeg's 32 KiB I/O buffer (without it a 4 s
#: recording killed with SIGKILL left 28 bytes: the ``ftyp`` box alone).
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}


class AVWriter:
    """Writes RGB frames to a video file (H.264 in fragmented MP4 by default), finalised by
    :meth:`close`.

    Frames are timed by the ``pts`` given to :meth:`write` (seconds; e.g. the capture time),
    so dropped or skipped frames keep the recording's clock right.

    Crash safety: the file is written as ``<name>.part.mp4`` (``OUT.mp4`` -> ``OUT.part.mp4``)
    in fragmented MP4 with a keyframe, hence a fragment, at least every ``keyframe_interval``
    seconds of recording time, each handed to the OS as soon as it is complete. If the process
    dies without :meth:`close` (``kill -9``, a crash, a second Ctrl-C) the ``.part.mp4`` file
    stays and plays up to its last complete fragment: everything but the last
    ``keyframe_interval`` s plus the encoder's few frames of look-ahead (measured with the
    defaults, synthetic 640x360 at 25 fps, SIGKILL after 4 s: 0.8-0.9 s lost). :meth:`close`
    flushes the rest and renames the file to ``path``, so a file under the final name is
    always complete. A ``path`` that is a symlink, a device or a FIFO is written through
    instead (no ``.part`` name, no rename: :mod:`livefaces.outfile`), so ``/dev/null``, a
    pipe's reader or a link's target gets the stream. Fragmented MP4 is standard ISO BMFF;
    FFmpeg/PyAV play and seek it (tested; the trailer adds an ``mfra`` index), as do players
    with fragmented-MP4 support.
    """

    def __init__(self, path: str | os.PathLike[str], *, fps: float = 25.0, codec: str = "libx264",
                 crf: int = 23, preset: str = "veryfast", keyframe_interval: float = 1.0) -> None:
        self.path = os.fspath(path)
        root, ext = os.path.splitext(self.path)
        #: a symlink, device or FIFO is written through, never replaced (livefaces.outfile)
        self.through = writes_through(self.path)
        #: where frames go until :meth:`close` renames the file to :attr:`path`
        self.part_path = self.path if self.through else f"{root}.part{ext or '.mp4'}"
        self._file: Any = None  # the file object written through
        self._fps = fps
        self._codec = codec
        self._options = ({"crf": str(crf), "preset": preset, "forced-idr": "1"}
                         if codec == "libx264" else {})
        self.keyframe_interval = keyframe_interval
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._t0: float | None = None
        self._last_pts = -1
        self._last_key: int | None = None  # pts (ms) of the last forced keyframe
        self.frames = 0
        self._tb = Fraction(1, 1000)
        self._error: OutputError | None = None  # set once writing failed: the file is given up

    def write(self, rgb: np.ndarray, t: float | None = None) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame shown at ``t`` seconds (any origin)."""
        h, w = rgb.shape[:2]
        if self._error is not None:
            # a new exception each time: raising one object again grows its traceback,
            # and every frame it holds (a full disk once grew a recording process 34 MB/s)
            raise OutputError(str(self._error))
        if self._container is None:
            try:
                if self.through:
                    self._file = os.fdopen(open_through(self.path), "wb")
                target: Any = self._file if self.through else self.part_path
                self._container = av.open(target, mode="w", format="mp4",
                                          options=dict(FRAGMENTED_MP4))
            except (av.error.FFmpegError, OSError) as e:
                self._close_file()
                raise _write_error(self.path, e) from None
            s = self._container.add_stream(self._codec, rate=Fraction(self._fps).limit_denominator(1000),
                                           options=self._options)
            assert isinstance(s, av.video.stream.VideoStream)
            s.width, s.height = w - w % 2, h - h % 2
            s.pix_fmt = "yuv420p"
            s.time_base = self._tb
            # The encoder must count in the same milliseconds: with its default 1/fps time
            # base, two frames captured < 1/fps apart got the same pts and the muxer refused
            # them (EINVAL, "non monotonically increasing dts").
            s.codec_context.time_base = self._tb
            self._stream = s
        stream, container = self._stream, self._container
        assert stream is not None
        if (w, h) != (stream.width, stream.height):
            rgb = np.ascontiguousarray(rgb[: stream.height, : stream.width])
        if t is None:
            t = self.frames / self._fps
        if self._t0 is None:
            self._t0 = t
        pts = int(round((t - self._t0) * 1000))
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = pts
        frame.time_base = self._tb
        # Keyframes by recording time, not by frame count: a live recording's frame rate
        # varies (drops, slow detection), and each keyframe starts a fragment on disk.
        if self._last_key is None or pts - self._last_key >= self.keyframe_interval * 1000:
            frame.pict_type = av.video.frame.PictureType.I
            self._last_key = pts
        try:
            for packet in stream.encode(frame):
                container.mux(packet)
        except (av.error.FFmpegError, OSError) as e:  # a full disk, a vanished folder
            raise self._give_up(e) from None
        self.frames += 1

    def _give_up(self, e: BaseException) -> OutputError:
        """After a failed write: close without flushing (flushing into a failed muxer crashed
        the process: SIGSEGV in FFmpeg, PyAV 18), keep the ``.part`` file as it is (it plays
        up to its last complete fragment), and fail every later call the same way."""
        self._error = _write_error(self.path, e)
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - the write error is the one to report
                pass
        self._close_file()
        return self._error

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass

    @property
    def failed(self) -> bool:
        """True once a write failed (every later :meth:`write` raises the same error)."""
        return self._error is not None

    def close(self) -> None:
        """Flush the encoder, write the last fragment and index, move the file to :attr:`path`.

        After a failed :meth:`write` (already raised) this does nothing: the ``.part`` file
        stays as it is."""
        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            try:
                assert self._stream is not None
                for packet in self._stream.encode(None):
                    container.mux(packet)
            finally:
                try:
                    container.close()
                finally:
                    self._close_file()
            if not self.through:
                os.replace(self.part_path, self.path)
        except (av.error.FFmpegError, OSError) as e:
            self._close_file()
            raise _write_error(self.path, e) from None


def _write_error(path: str, e: BaseException) -> OutputError:
    """One line naming the file, with the system's reason (no FFmpeg log, no traceback)."""
    reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return OutputError(f"{path}: cannot write ({reason}); check the folder exists, is writable "
                       f"and has free space")


def count_frames(path: str | os.PathLike[str]) -> int | None:
    """Frames in a file's first video stream from its header (count, else duration × rate),
    without decoding; ``None`` if unknown or unreadable (decoding reports real errors)."""
    import math

    if file_problem(path) is not None:  # a FIFO would block here; the reader says why
        return None
    try:
        with av.open(os.fspath(path)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            rate = stream.average_rate
            if stream.duration is not None and stream.time_base and rate:
                return int(math.ceil(float(stream.duration * stream.time_base * rate)))
            if container.duration and rate:
                return int(math.ceil(container.duration / 1e6 * float(rate)))
    except Exception:  # noqa: BLE001 - unknown is an answer here
        return None
    return None


def declared_frames(path: str | os.PathLike[str]) -> int | None:
    """The frame count a file's header lists for its first video stream (MP4/MOV sample
    tables, AVI), ``None`` where it lists none (Matroska/WebM, MPEG-TS: :func:`count_frames`
    estimates those from the duration, too loosely to call a file short). Used to tell a
    truncated or damaged file, which decodes fewer frames without an error."""
    if file_problem(path) is not None:  # a FIFO would block here; the reader says why
        return None
    try:
        with av.open(os.fspath(path)) as container:
            n = container.streams.video[0].frames
            return int(n) if n else None
    except Exception:  # noqa: BLE001 - unknown is an answer here
        return None


def probe_frames(path: str | os.PathLike[str]) -> int:
    """Decode every video frame of a file and count them (tests, checks)."""
    inp = AVInput(os.fspath(path), live=False)
    n = 0
    try:
        for _ in inp.frames():
            n += 1
    except EndOfStream:
        pass
    finally:
        inp.close()
    return n


def scan_pts(path: str | os.PathLike[str]) -> tuple[list[int], Fraction] | None:
    """The presentation times of every frame of a file's first video stream, sorted (= frame
    ``k`` of the decoded order has ``pts[k]``), in units of the returned time base; read from
    the packets (demuxing only, no decoding). ``None`` when a packet has no timestamp or the
    file cannot be read: such a video cannot be split into time ranges."""
    if file_problem(path) is not None:  # a FIFO would block here; the reader says why
        return None
    try:
        with av.open(os.fspath(path)) as container:
            stream = container.streams.video[0]
            tb = stream.time_base
            pts: list[int] = []
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the flush packet at the end
                if packet.pts is None:
                    return None
                pts.append(int(packet.pts))
            if tb is None:
                return None
            return sorted(pts), Fraction(tb)
    except Exception:  # noqa: BLE001 - not splittable is an answer; decoding reports errors
        return None


def decode_range(path: str | os.PathLike[str], pts: list[int], first: int, stride: int = 1,
                 stop: threading.Event | None = None, max_pixels: int | None = None
                 ) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(frame_index, pts_seconds, rgb)`` of the frames whose timestamps are ``pts`` (sorted,
    in the stream's time base, as :func:`scan_pts` gives them), frame ``first + i`` having
    ``pts[i]``; only those whose index is a multiple of ``stride`` are converted and yielded.

    Seeks to the keyframe at or before ``pts[0]`` and decodes from there, so a long video can
    be cut into ranges that run on different machines and give the same frames as one pass
    from the start (tested pixel-exact on H.264 and MPEG-4 clips). ``stop`` ends early;
    ``max_pixels`` as for :class:`AVInput`. Raises :class:`SourceError` as :class:`AVInput`
    does, and for what is not a regular file (a FIFO would block).
    """
    if not pts:
        return
    where = {p: first + i for i, p in enumerate(pts)}
    lo, hi = pts[0], pts[-1]
    url = os.fspath(path)
    problem = file_problem(url)
    if problem is not None and problem != "no such file":
        raise SourceError(f"{url}: {problem}")
    video = AVInput(url, live=False, max_pixels=max_pixels)
    try:
        container, stream = video._container, video.stream
        tb = Fraction(stream.time_base or 1)
        if lo > 0:
            try:
                container.seek(lo, stream=stream, backward=True, any_frame=False)
            except (av.error.FFmpegError, OSError):
                container.seek(0, stream=stream)  # not seekable: decode from the start
        for packet in container.demux(stream):
            for frame in packet.decode():
                if stop is not None and stop.is_set():
                    return
                p = frame.pts
                if p is None or p < lo:
                    continue
                if p > hi:
                    return
                index = where.get(p)
                if index is None or index % stride:
                    continue
                yield index, float(p * tb), upright(frame)
    except av.error.EOFError:
        return
    except (av.error.FFmpegError, OSError) as e:
        raise SourceError(_explain(e, url, False)) from None
    finally:
        video.close()
