"""Video files and network streams through PyAV (see :mod:`livefaces.avio`)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..avio import AVInput
from ..errors import EndOfStream, SourceError
from ..redact import redact_url
from ..types import Frame


class _PyAVSource:
    """What the two PyAV sources share: the open input, frame numbering, closing."""

    name: str
    _input: AVInput | None
    _frames: Iterator[tuple[np.ndarray, float | None]] | None
    _index: int

    def _frame(self, rgb: np.ndarray, pts: float | None) -> Frame:
        frame = Frame(rgb, self.name, self._index, pts, time.monotonic())
        self._index += 1
        return frame

    def close(self) -> None:
        """Close the frame generator (its frame holds the last packet and decoded frame) and
        the input (container and decoder, with the decoder's threads), and drop both."""
        frames, self._frames = self._frames, None
        inp, self._input = self._input, None
        if frames is not None:
            close_generator = getattr(frames, "close", None)
            if close_generator is not None:
                close_generator()
        if inp is not None:
            inp.close()


class StreamSource(_PyAVSource):
    """An ``rtsp://``, ``rtsps://``, ``http(s)://`` or ``rtmp://`` stream (live).

    Frame ``index`` keeps counting across reconnects; ``pts`` is the stream's own clock (it
    restarts when the server does).
    """

    live = True

    def __init__(self, url: str, *, transport: str = "tcp", options: dict[str, str] | None = None):
        self._url = url
        self.name = redact_url(url)
        opts: dict[str, str] = {}
        if url.lower().startswith(("rtsp://", "rtsps://")):
            opts["rtsp_transport"] = transport
            opts["allowed_media_types"] = "video"
        opts.update(options or {})
        self._options = opts
        self._input: AVInput | None = None
        self._frames: Iterator[tuple[np.ndarray, float | None]] | None = None
        self._index = 0
        self.fps: float | None = None

    def open(self, open_timeout: float = 10.0, stall_timeout: float = 10.0) -> None:
        self.close()
        self._input = AVInput(self._url, live=True, options=self._options,
                              open_timeout=open_timeout, read_timeout=stall_timeout)
        self.fps = self._input.fps
        self._frames = self._input.frames(stall_timeout=stall_timeout)

    def read(self) -> Frame:
        if self._frames is None:
            raise SourceError(f"{self.name}: not open")
        try:
            rgb, pts = next(self._frames)
        except StopIteration:
            raise EndOfStream(self.name) from None
        except EndOfStream:
            # a live stream that "ends" (server closed the session) is a failure to recover from
            raise SourceError(f"{self.name}: the server ended the stream") from None
        return self._frame(rgb, pts)


class FileSource(_PyAVSource):
    """A video file decoded by PyAV; ``loop`` starts over at EOF, ``realtime`` paces frames at
    their presentation times (and then the source counts as live)."""

    def __init__(self, path: str | os.PathLike[str], *, loop: bool = False, realtime: bool = False,
                 options: dict[str, str] | None = None, max_pixels: int | None = None) -> None:
        self.path = Path(path)
        self.max_pixels = max_pixels
        self.name = str(path)
        self.loop = loop
        self.realtime = realtime
        self.live = realtime
        self._options = options
        self._input: AVInput | None = None
        self._frames: Iterator[tuple[np.ndarray, float | None]] | None = None
        self._index = 0
        self._pts_offset = 0.0
        self._last_pts = 0.0
        self._t0: float | None = None
        self.fps: float | None = None

    def open(self, open_timeout: float = 10.0, stall_timeout: float = 10.0) -> None:
        self.close()
        if self.path.is_dir():
            raise SourceError(f"{self.name}: is a folder; give a video file")
        self._input = AVInput(str(self.path), live=False, options=self._options,
                              max_pixels=self.max_pixels)
        self.fps = self._input.fps
        self._frames = self._input.frames()

    def read(self) -> Frame:
        if self._frames is None or self._input is None:
            raise SourceError(f"{self.name}: not open")
        try:
            rgb, pts = next(self._frames)
            ended = False
        except (EndOfStream, StopIteration):
            ended = True
        if ended:
            if not self.loop or self._index == 0:
                raise EndOfStream(self.name)
            # Start over outside the except clause: a decoder opened while handling an
            # EndOfStream would chain every later EndOfStream to it (__context__), and each
            # one's traceback would keep its generator, container and decoder threads alive
            # (3 threads and a frame's memory per loop).
            step = 1.0 / (self.fps or 25.0)
            self._pts_offset = self._last_pts + step
            self.close()
            self._input = AVInput(str(self.path), live=False, options=self._options,
                              max_pixels=self.max_pixels)
            self._frames = self._input.frames()
            rgb, pts = next(self._frames)
        if pts is None:
            pts = self._index / (self.fps or 25.0)
        else:
            pts += self._pts_offset
        self._last_pts = pts
        if self.realtime:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now - pts
            delay = self._t0 + pts - now
            if delay > 0:
                time.sleep(min(delay, 1.0))
        return self._frame(rgb, pts)
