"""``livefaces preview``: a window with boxes, landmarks, track ids and a HUD."""

from __future__ import annotations

import argparse

from ..blur import blur_unknown, names_of
from ..publish.memory import QueueSink
from ..render import HudInfo, render_result
from ..types import PipelineStats
from ._live import SOURCE_HELP, Signals, add_live_arguments, build, finish

NAME = "preview"
HELP = "show a live source in a window with faces, landmarks, track ids and a HUD"
DESCRIPTION = """\
Open a window showing the source with every face boxed, its 5 landmarks, confidence and
track id, and a HUD (a bar along the bottom) with capture fps, detection fps (full
detections a second, over the last 2 s), dropped frames and latency (live sources).

The box colour (and the letter after the track id) says how the face was found on this frame:
  green       D  detected: the full detector (all three networks) found it on this frame
  light blue  R  refined: R-Net and O-Net checked it in the region where the tracker expected
                 it, without a full detection (the usual case between full detections)
  amber, thin T  tracked: carried by the tracker's motion model alone; the networks did not
                 see it on this frame (shown a few frames at most, without landmarks)
--record draws the same.

Files and image folders play at their frame rate, as in a video player (--realtime is the
default here; frames are dropped when detection cannot keep up); --no-realtime shows every
frame as fast as it is processed.

q or Esc closes the window; Ctrl-C stops too (a second Ctrl-C quits at once).
"""
EPILOG = SOURCE_HELP + """
examples:
  livefaces preview 0
  livefaces preview rtsp://admin:secret@192.168.1.20/stream1 --record session.mp4
  livefaces preview clip.mp4 --detect-every 3
  livefaces preview clip.mp4 --no-realtime          # every frame, at processing speed
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_live_arguments(p)
    p.add_argument("--no-realtime", dest="realtime", action="store_false",
                   help="files and folders: show every frame at processing speed instead of "
                        "at the file's frame rate (the default of preview, like a video player)")
    p.set_defaults(realtime=True)


class PreviewSink(QueueSink):
    """The window's queue plus the newest statistics (the HUD). A live source shows the
    newest frames (older ones dropped); a file or folder every frame (the pipeline waits)."""

    def __init__(self, live: bool) -> None:
        super().__init__(2, "drop_oldest" if live else "wait")
        self.stats: PipelineStats | None = None

    def on_stats(self, stats: PipelineStats) -> None:
        self.stats = stats


def run(args: argparse.Namespace) -> int:
    from ..window import check_display, run_window

    check_display()
    q = PreviewSink(True)

    def sinks(live: bool) -> list[QueueSink]:
        nonlocal q
        q = PreviewSink(live)  # the runner takes its drop policy when the pipeline is built
        return [q]

    p, _live = build(args, sinks)

    def next_image():  # noqa: ANN202
        r = q.queue.get(timeout=0.02) if not q.queue.closed or len(q.queue) else None
        if r is None:
            return None
        if args.blur_unknown:
            r = blur_unknown(r)
        return render_result(r, HudInfo.of(q.stats, r.frame.source), names=names_of(r))

    with Signals(p.request_stop) as sig:
        p.start()
        run_window(next_image, lambda: not sig.interrupted and not (p.done and not len(q.queue)),
                   title=f"livefaces - {p.stats().source().name}")
        return finish(p, sig.interrupted, stats=args.stats)
