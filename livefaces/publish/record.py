"""Annotated recording (fragmented MP4 through :mod:`livefaces.avio`), finalised on close/Ctrl-C;
after a crash ``OUT.part.mp4`` plays up to about a second before it."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..avio import AVWriter
from ..render import HudInfo, render_result
from ..types import FrameResult
from . import BaseSink


class RecordSink(BaseSink):
    """Writes every result it receives, drawn by :func:`render_result`, to ``path``.

    Frames are timed by their capture time, so the file plays at the real speed even when
    frames were dropped. Until :meth:`close` the file is ``OUT.part.mp4`` (see
    :class:`~livefaces.avio.AVWriter`): a crash or ``kill -9`` leaves it playable, missing
    only the last second or so. ``hud`` (optional) returns the :class:`HudInfo` for a source name.
    Live sources use ``result_policy="drop_oldest"`` (a slow disk never slows detection);
    files ``"wait"`` (every frame recorded).
    """

    def __init__(self, path: str | os.PathLike[str], *, fps: float = 25.0,
                 hud: Callable[[str], HudInfo | None] | None = None, live: bool = True) -> None:
        self.writer = AVWriter(path, fps=fps)
        self.hud = hud
        self.result_policy = "drop_oldest" if live else "wait"
        self.result_queue = 32

    def on_result(self, result: FrameResult) -> None:
        hud = self.hud(result.frame.source) if self.hud else None
        t = result.frame.captured if self.result_policy == "drop_oldest" else result.frame.pts
        self.writer.write(render_result(result, hud), t)

    def close(self) -> None:
        self.writer.close()
