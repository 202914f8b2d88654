"""``livefaces extract``: every face of videos and image folders, as crops + index.jsonl."""

from __future__ import annotations

import argparse
import sys

from ..detect.options import MIN_FACE_SIZE
from ..extract import ClusterOptions, ExtractOptions, Progress, extract
from ._common import (
    COUNT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    SECONDS,
    Number,
    ProgressLine,
    add_detector_arguments,
    add_max_pixels_argument,
    detector_options,
    error,
    fmt_duration,
    say,
)

NAME = "extract"
HELP = "save every face of videos, image folders or globs as crops + index.jsonl"
DESCRIPTION = """\
Detect faces in every (or every Nth) frame of videos and in images, and save each face as a
crop plus one line in DIR/index.jsonl. INPUT may be a video, an image, a folder (searched
recursively for images and videos) or a quoted glob.

Frames are decoded in one thread, detected in batches across frames, and crops are written
in another thread. Re-running the same command resumes: inputs listed in DIR/done.jsonl are
skipped, unfinished ones are redone. Ctrl-C stops cleanly (exit 130); files written so far are
complete.

With --ray the same job runs on a Ray cluster (pip install 'livefaces[ray]'): long videos are
cut into segments that spread over the workers, detector actors take batches, crops are
written by the workers (DIR and the inputs must then be at the same path on every node, e.g. a
shared filesystem), a re-run skips finished segments (DIR/parts.jsonl). See docs/extract.md.
"""
EPILOG = """\
examples:
  livefaces extract movie.mp4 --out faces/
  livefaces extract movie.mp4 --out faces/ --stride 3 --resize 0.5 --batch-size 60
  livefaces extract photos/ 'clips/*.mp4' --out faces/ --align          # 112x112 aligned
  livefaces extract movie.mp4 --out faces/ --engine torch --device cuda
  livefaces extract films/ --out faces/ --ray local                     # Ray on this machine
  livefaces extract /mnt/films/ --out /mnt/faces/ --ray auto           # on a running cluster

index.jsonl line (coordinates in pixels of the original frame, upright as a player shows it
(rotation metadata applied), origin top-left; the face
fields as in 'livefaces detect --json'):
  {"source": "movie.mp4", "frame": 120, "pts": 4.004, "box": [x1, y1, x2, y2],
   "confidence": 0.999, "landmarks": {"left_eye": [x, y], "right_eye": [x, y], "nose": [x, y],
   "mouth_left": [x, y], "mouth_right": [x, y]}, "crop": "movie/000120_0.jpg"}
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="videos, images, folders or globs")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created)")
    g = p.add_argument_group("frames")
    g.add_argument("--stride", type=COUNT, default=1, metavar="N",
                   help="detect on every Nth video frame (default: 1, all frames)")
    g.add_argument("--resize", type=Number(float, 0, 4, lo_open=True), default=1.0, metavar="F",
                   help="scale frames by F before detection, e.g. 0.5 (default: 1); boxes and "
                        "crops stay in original pixels")
    g.add_argument("--batch-size", type=COUNT, default=32, metavar="N",
                   help="frames per detector call (default: 32)")
    add_max_pixels_argument(g, "images and videos (the input fails)")
    c = p.add_argument_group("crops")
    c.add_argument("--crop-size", type=Number(int, 8, unit="(pixels)"), default=None, metavar="PX",
                   help="crop side in pixels (default: 160, or 112 with --align)")
    c.add_argument("--margin", type=Number(float, 0, unit="(pixels)"), default=0, metavar="PX",
                   help="extra border in pixels of the crop, as facenet-pytorch (default: 0; less than "
                        "the crop size)")
    c.add_argument("--align", action="store_true",
                   help="align crops by the 5 landmarks to the ArcFace 112x112 template "
                        "(similarity transform), for face-recognition models")
    c.add_argument("--format", choices=["jpg", "png"], default="jpg", help="crop file type (default: jpg)")
    add_detector_arguments(p, min_face_help="smallest face, in pixels of the (resized) frame "
                                            f"(default: {MIN_FACE_SIZE:g})")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar on stderr (default: auto = only on a terminal)")
    r = p.add_argument_group("Ray cluster (the ray extra)")
    r.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run on Ray: 'local' starts a cluster on this machine for the run, 'auto' "
                        "joins the one this machine is part of, ray://HOST:PORT joins through Ray "
                        "Client")
    r.add_argument("--workers", type=COUNT, default=None, metavar="N",
                   help="detector actors (default: one per GPU, else the cluster's CPUs minus one)")
    r.add_argument("--segment-seconds", type=SECONDS, default=60.0, metavar="S",
                   help="video segment length, the unit of work and of resuming (default: 60)")


def check_arguments(args: argparse.Namespace) -> None:
    """Flags that are wrong together (a usage error, exit 2; see livefaces.cli.main)."""
    size = args.crop_size or (112 if args.align else 160)
    if args.margin >= size:
        raise argparse.ArgumentTypeError(f"argument --margin: invalid value '{args.margin:g}': must be "
                                         f"less than the crop size ({size} px)")


def _progress_text(p: Progress) -> str:
    if p.frames_total:
        frac = min(1.0, p.frames_done / p.frames_total)
        head = f"[{'#' * int(frac * 24):<24}] {frac:4.0%} {p.frames_done}/{p.frames_total} frames"
    else:
        head = f"{p.frames_done} frames"
    return (f"{head}  {p.faces} faces  {p.fps:.1f} frames/s  ETA {fmt_duration(p.eta_s)}  "
            f"input {p.inputs_done}/{p.inputs_total}")


def _quiet_ray() -> None:
    """Ray's own start-up notes and dataset messages stay off the terminal unless -v (the CLI
    decides what is shown): its Python loggers at errors only, its C++ core likewise, and its
    Python warnings (Ray Data's advice on actor pools and blocks) not shown."""
    import logging
    import os
    import warnings

    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        warnings.filterwarnings("ignore", module=r"ray(\.|$)")
        os.environ.setdefault("RAY_LOGGER_LEVEL", "error")
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")


def run(args: argparse.Namespace) -> int:
    options = ExtractOptions(
        stride=args.stride, resize=args.resize, detector=detector_options(args),
        batch_size=args.batch_size, margin=args.margin, crop_size=args.crop_size,
        align=args.align, image_format=args.format, max_pixels=args.max_pixels)
    cluster = None
    if args.ray is not None:
        cluster = ClusterOptions(address=args.ray, workers=args.workers,
                                 segment_seconds=args.segment_seconds)
        _quiet_ray()
    elif args.workers is not None:
        error("--workers needs --ray")
        return EXIT_USAGE
    line = ProgressLine(args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty()))
    try:
        report = extract(args.inputs, args.out, options, cluster=cluster,
                         progress=(lambda p: line.show(_progress_text(p))) if line.enabled else None)
    except KeyboardInterrupt:
        line.close()
        error(f"interrupted; what is in {args.out} is complete. Run the same command again to resume.")
        return EXIT_INTERRUPTED
    line.close()
    for source, message in report.failed:
        error(message if source in message else f"{source}: {message}")
    skipped = f", {report.skipped} already done (skipped)" if report.skipped else ""
    engine = f", {report.engine}" if report.engine else ""
    say(f"{report.done} of {report.inputs} inputs extracted{skipped}: {report.frames} frames, "
        f"{report.faces} faces in {report.seconds:.1f} s ({report.fps:.1f} frames/s{engine}) "
        f"-> {args.out}")
    return EXIT_PARTIAL if report.failed else EXIT_OK
