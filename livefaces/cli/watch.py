"""``livefaces watch``: headless; face and source events as JSON Lines."""

from __future__ import annotations

import argparse

from ..publish.jsonl import JsonlPublisher
from ._live import SOURCE_HELP, Signals, add_live_arguments, build, finish

NAME = "watch"
HELP = "detect and track faces in a live source, headless; write events as JSON Lines"
DESCRIPTION = """\
Run the live pipeline without a window: capture, detect (skipping frames within a latency
budget), track, and write one JSON event per line — face.appeared, face.updated
(rate-limited), face.lost and source.status — flushed per line, so pipes and 'tail -f' see
them at once. Live sources reconnect by themselves after errors and stalls.

Ctrl-C (or SIGTERM, or SIGHUP: the terminal closed) stops capture and detection within 2 s,
then gives the outputs up to 30 s to finish (recordings and --stats are finalised; one left
unfinished is exit 1); a second Ctrl-C quits at once. If the reader of '--events -' goes away
('| head -1'), it stops at once, silently, with exit code 141. At the end one summary line
goes to stderr: latency for live sources, throughput for files and folders (not paced).
Event format: docs/events.md.
"""
EPILOG = SOURCE_HELP + """
examples:
  livefaces watch rtsp://admin:secret@192.168.1.20/stream1 --events faces.jsonl
  livefaces watch 0 --events - | jq -c 'select(.type=="face.appeared")'
  livefaces watch clip.mp4 --record annotated.mp4 --snapshots faces/
  livefaces watch rtsp://cam/stream --duration 60 --detect-fps 5 --events -
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_live_arguments(p)
    p.add_argument("--events", default="-", metavar="FILE|-",
                   help="where to write events: a file (appended) or - for stdout (default: -)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr at the end")


def run(args: argparse.Namespace) -> int:
    sinks: list = [JsonlPublisher(args.events)]
    p, _live = build(args, sinks)
    with Signals(p.request_stop) as sig:
        p.start()
        while not p.wait(0.2) and not sig.interrupted:
            pass
        return finish(p, sig.interrupted, args.quiet, stats=args.stats)
