"""Helpers shared by the CLI commands: exit codes, detector options, path expansion."""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from ..imageio import IMAGE_SUFFIXES, walk_files

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_SETUP = 3
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for 'yes | head', so pipelines read alike

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_PARTIAL: "some inputs failed (each is named on stderr); the others were processed",
    EXIT_USAGE: "bad command line",
    EXIT_SETUP: "cannot start: bad model files, missing provider, unusable source or config",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); output written so far is complete and valid",
    EXIT_PIPE: "the reader of stdout went away (e.g. '| head'): stopped at once and quietly, "
               "like standard tools",
}


def silence_stdout() -> None:
    """Point stdout at /dev/null after its reader went away (EPIPE), so nothing more is
    written and Python's final flush cannot complain (the Python docs' SIGPIPE recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def add_detector_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("detector")
    g.add_argument("--min-face", type=float, default=20, metavar="PX",
                   help="smallest face to find, in input pixels (default: 20; larger is faster)")
    g.add_argument("--factor", type=float, default=0.709, metavar="F",
                   help="image pyramid step, 0<F<1 (default: 0.709; larger finds more, slower)")
    g.add_argument("--thresholds", type=float, nargs=3, default=(0.6, 0.7, 0.7),
                   metavar=("P", "R", "O"),
                   help="score thresholds of P-Net, R-Net, O-Net (default: 0.6 0.7 0.7)")
    g.add_argument("--providers", choices=["cpu", "cuda"], default=None,
                   help="ONNX Runtime provider (default: CUDA if available, else CPU); "
                        "asking for cuda without onnxruntime-gpu is an error")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="ONNX Runtime threads (default: all cores)")


def make_detector(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ..detect import Detector

    return Detector(min_face_size=args.min_face, thresholds=tuple(args.thresholds),
                    factor=args.factor, providers=args.providers, threads=args.threads)


def expand_paths(items: list[str]) -> Iterator[tuple[str, Path | None, Path]]:
    """Yield ``(as_given, root, path)`` for each image named by files, folders or globs.

    Folders are walked recursively (image suffixes only, sorted); ``root`` is the folder
    (``None`` for a plain file) so callers can mirror the layout. A name that matches nothing
    yields ``path`` as given, so the caller reports it as missing.
    """
    for item in items:
        p = Path(item)
        if p.is_dir():
            for fp in walk_files(p, IMAGE_SUFFIXES):
                yield str(fp), p, fp
        elif p.exists() or not glob.has_magic(item):
            yield item, None, p
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                yield item, None, p
            for m in matches:
                if Path(m).is_file():
                    yield m, None, Path(m)


def error(msg: str) -> None:
    print(f"livefaces: error: {msg}", file=sys.stderr)
