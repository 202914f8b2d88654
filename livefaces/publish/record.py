"""Annotated recording (fragmented MP4 through :mod:`livefaces.avio`), finalised on close/Ctrl-C;
after a crash ``OUT.part.mp4`` plays up to about a second before it."""

from __future__ import annotations

import os

from ..avio import AVWriter
from ..blur import blur_unknown, names_of
from ..render import HudInfo, render_result
from ..types import FrameResult, PipelineStats
from . import BaseSink


class RecordSink(BaseSink):
    """Writes every result it receives, drawn by :func:`render_result`, to ``path``.

    Frames are timed by their capture time, so the file plays at the real speed even when
    frames were dropped. Until :meth:`close` the file is ``OUT.part.mp4`` (see
    :class:`~livefaces.avio.AVWriter`): a crash or ``kill -9`` leaves it playable, missing
    only the last second or so. ``hud``: draw the :class:`HudInfo` of the newest statistics
    snapshot (:meth:`on_stats`). ``blur_unknown``: faces without a recognised name are
    blurred (:func:`~livefaces.blur.blur_unknown`) before drawing.
    Live sources use ``result_policy="drop_oldest"`` (a slow disk never slows detection);
    files ``"wait"`` (every frame recorded).
    """

    def __init__(self, path: str | os.PathLike[str], *, fps: float = 25.0,
                 hud: bool = False, live: bool = True, blur_unknown: bool = False) -> None:
        self.writer = AVWriter(path, fps=fps)
        self.hud = hud
        self.blur_unknown = blur_unknown
        self._stats: PipelineStats | None = None
        self.result_policy = "drop_oldest" if live else "wait"
        self.result_queue = 32

    def on_stats(self, stats: PipelineStats) -> None:
        self._stats = stats

    def on_result(self, result: FrameResult) -> None:
        if self.writer.failed:  # reported once (the runner's error); the file is given up
            return
        hud = HudInfo.of(self._stats, result.frame.source) if self.hud else None
        t = result.frame.captured if self.result_policy == "drop_oldest" else result.frame.pts
        if self.blur_unknown:
            result = blur_unknown(result)
        self.writer.write(render_result(result, hud, names=names_of(result)), t)

    def unfinished(self) -> str | None:
        """The ``.part`` file this sink leaves unfinished (not closed yet, or its writing
        failed), if there is one; ``None`` when the recording is complete or never began."""
        w = self.writer
        if w.through or not os.path.exists(w.part_path):
            return None
        return w.part_path

    def close(self) -> None:
        self.writer.close()
