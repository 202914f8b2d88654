"""A folder of still images as a frame source (name order, recursive)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ..errors import EndOfStream, ImageReadError, SourceError
from ..imageio import IMAGE_SUFFIXES, MAX_PIXELS, read_image, walk_files
from ..types import Frame

log = logging.getLogger(__name__)


class ImageFolderSource:
    """Every image under ``folder`` (sorted, recursive) as one frame each.

    ``pts`` is ``index / fps``; unreadable images, images over ``max_pixels`` (checked in
    the header, before decoding) and special files (a FIFO would block forever) are skipped
    (and logged, once each). ``loop`` starts over at the end; ``realtime`` paces frames at ``fps``.

    ``stills`` tells the pipeline the frames are independent photos, not a video: each one
    goes through the detector and its faces get fresh track ids (nothing is carried from one
    photo to the next).
    """

    stills = True

    def __init__(self, folder: str | os.PathLike[str], *, fps: float = 25.0, loop: bool = False,
                 realtime: bool = False, max_pixels: int | None = MAX_PIXELS) -> None:
        self.folder = Path(folder)
        self.max_pixels = max_pixels
        self.name = str(folder)
        self.fps = fps
        self.loop = loop
        self.realtime = realtime
        self.live = realtime
        self._paths: list[Path] = []
        self._pos = 0
        self._index = 0
        self._t0: float | None = None
        self._warned: set[str] = set()  # images already reported as skipped

    def open(self, open_timeout: float = 10.0, stall_timeout: float = 10.0) -> None:
        paths = list(walk_files(self.folder, IMAGE_SUFFIXES))
        if not paths:
            raise SourceError(f"{self.name}: no images in this folder (looked for "
                              f"{', '.join(sorted(IMAGE_SUFFIXES))})")
        self._paths = paths
        self._pos = 0

    def read(self) -> Frame:
        bad = 0  # images skipped in a row: a whole pass of them, and looping would spin
        while True:
            if self._pos >= len(self._paths):
                if not self.loop or not self._paths:
                    raise EndOfStream(self.name)
                self._pos = 0
            if bad >= len(self._paths):
                raise SourceError(f"{self.name}: none of its {len(self._paths)} images can "
                                  f"be read")
            path = self._paths[self._pos]
            self._pos += 1
            try:
                image = read_image(path, self.max_pixels)
                break
            except ImageReadError as e:
                bad += 1
                if str(path) not in self._warned:  # once: a looping folder repeats it forever
                    self._warned.add(str(path))
                    log.warning("skipping %s", e)
        pts = self._index / self.fps
        if self.realtime:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now
            delay = self._t0 + pts - now
            if delay > 0:
                time.sleep(min(delay, 1.0))
        # The frame's source is this source's name (the camera's, once the pipeline names it),
        # never the image's path: sinks key cameras by it, and serve's hub ignored every frame
        # of a folder camera (no snapshot, last_seen null), the schedule kept one state per
        # image. The image's path is logged at debug level.
        log.debug("%s: frame %d is %s", self.name, self._index, path)
        frame = Frame(image, self.name, self._index, pts, time.monotonic())
        self._index += 1
        return frame

    def close(self) -> None:
        pass
