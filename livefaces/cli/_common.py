"""Helpers shared by the CLI commands: exit codes, detector options, path expansion."""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..detect.options import DEVICES, ENGINES, DetectorOptions
from ..errors import InputError
from ..imageio import IMAGE_SUFFIXES, MAX_PIXELS, walk_files

if TYPE_CHECKING:
    from ..detect.engine import Engine

log = logging.getLogger("livefaces.cli")

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
    EXIT_SETUP: "cannot start: bad model files, missing provider, unusable source, output or config",
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


def _device(value: str) -> str:
    """argparse type of ``--device``: a bad value is a usage error (exit 2), like a bad choice."""
    if value.split(":")[0] not in DEVICES or (":" in value and not value.split(":", 1)[1].isdigit()):
        raise argparse.ArgumentTypeError(f"invalid device {value!r} (choose from auto, cpu, cuda, cuda:N)")
    return value


def _fmt(v: float) -> str:
    return f"{v:g}"


def add_detector_arguments(p: argparse.ArgumentParser, *, min_face_help: str | None = None) -> None:
    """The detector flags every command shares; their defaults come from
    :mod:`livefaces.detect.options` (the one home of them). Read them back with
    :func:`detector_options` / :func:`make_detector`."""
    d = DetectorOptions()
    g = p.add_argument_group("detector")
    g.add_argument("--engine", choices=ENGINES, default=d.engine,
                   help="onnx (ONNX Runtime) or torch (PyTorch, e.g. CUDA without onnxruntime-gpu); "
                        "auto: a CUDA engine when one works, else onnx on CPU (default: auto)")
    g.add_argument("--device", type=_device, default=d.device, metavar="{auto,cpu,cuda[:N]}",
                   help="where the detector runs (default: auto); asking for cuda where no engine "
                        "reaches one is an error; see 'livefaces doctor'")
    g.add_argument("--providers", choices=["cpu", "cuda"], default=None,
                   help=argparse.SUPPRESS)  # deprecated alias of --device (before engines)
    g.add_argument("--min-face", type=float, default=d.min_face_size, metavar="PX",
                   help=min_face_help or f"smallest face to find, in input pixels (default: "
                                         f"{_fmt(d.min_face_size)}; larger is faster)")
    g.add_argument("--factor", type=float, default=d.factor, metavar="F",
                   help=f"image pyramid step, 0<F<1 (default: {_fmt(d.factor)}; larger finds "
                        f"more, slower)")
    g.add_argument("--thresholds", type=float, nargs=3, default=d.thresholds,
                   metavar=("P", "R", "O"),
                   help="score thresholds of P-Net, R-Net, O-Net (default: "
                        f"{' '.join(_fmt(t) for t in d.thresholds)})")
    g.add_argument("--threads", type=int, default=d.threads, metavar="N",
                   help="CPU threads of the detector (default: all cores)")


_PIXEL_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def pixel_count(value: str) -> int:
    """argparse type of ``--max-pixels``: a whole number of pixels, ``100M``, ``2.5G``,
    ``1e8``; at least 1 (a bad value is a usage error, exit 2)."""
    text = value.strip().lower()
    unit = text[-1:] if text[-1:] in ("k", "m", "g") else ""
    try:
        n = float(text[: len(text) - len(unit)]) * _PIXEL_UNITS[unit]
    except ValueError:
        n = float("nan")
    if not n >= 1 or n == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"invalid pixel count {value!r} (a number of pixels, "
                                         f"at least 1, e.g. 50000000, 100M or 1G)")
    return int(n)


def add_max_pixels_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup,
                            what: str = "images") -> None:
    """``--max-pixels N``: the decompression-bomb limit of :func:`livefaces.imageio.read_image`
    (and of video frames); read it back as ``args.max_pixels``."""
    p.add_argument("--max-pixels", type=pixel_count, default=MAX_PIXELS, metavar="N",
                   help=f"refuse {what} larger than N pixels (width x height), checked in the "
                        f"file's header before anything is decoded, so a small file claiming a "
                        f"huge image cannot exhaust memory (default: {MAX_PIXELS // 10**6}M; "
                        f"suffixes K, M, G)")


def detector_options(args: argparse.Namespace) -> DetectorOptions:
    """The :class:`DetectorOptions` of parsed :func:`add_detector_arguments` flags.

    ``--providers`` (deprecated, hidden) means ``--engine onnx --device PROVIDER`` unless
    those are given.
    Raises :class:`~livefaces.errors.InputError` for values out of range (one line, exit 3).
    """
    engine, device = args.engine, args.device
    providers = getattr(args, "providers", None)
    if providers is not None:
        # debug, not a warning: errors stay one line on stderr (scripts may parse them)
        log.debug("--providers is deprecated; use --device %s", providers)
        if engine == "auto":
            engine = "onnx"  # providers are ONNX Runtime's: keep what the flag always meant
        if device == "auto":
            device = providers
        elif device.split(":")[0] != providers:
            raise InputError(f"--providers {providers} contradicts --device {device} "
                             "(--providers is deprecated: use --device alone)")
    return DetectorOptions(engine=engine, device=device, min_face_size=args.min_face,
                           thresholds=tuple(args.thresholds), factor=args.factor,
                           threads=args.threads)


def make_detector(args: argparse.Namespace) -> Engine:
    """The engine the detector flags in ``args`` ask for (see :func:`detector_options`)."""
    from ..detect.engine import make_engine

    return make_engine(detector_options(args))


def expand_paths(items: list[str]) -> Iterator[tuple[str, Path | None, Path]]:
    """Yield ``(as_given, root, path)`` for each image named by files, folders or globs.

    Folders are walked recursively (image suffixes only, sorted); ``root`` is the folder
    (``None`` for a plain file) so callers can mirror the layout. A name that matches nothing
    yields ``path`` as given, so the caller reports it as missing; a folder without a single
    image yields the folder itself (``root`` ``None``), for the caller to report.
    """
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = False
            for fp in walk_files(p, IMAGE_SUFFIXES):
                found = True
                yield str(fp), p, fp
            if not found:
                yield item, None, p
        elif p.exists() or not glob.has_magic(item):
            yield item, None, p
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                yield item, None, p
            for m in matches:
                if Path(m).is_file():
                    yield m, None, Path(m)


def say(line: str) -> None:
    """One line on stderr, in a single write. ``print()`` to stderr writes the text and
    its newline separately, so a log record from another thread could land between them
    (serve's "serving ... on URL" line once ran into the next log line, and a reader took
    ``URL/livefaces:`` for the address)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def error(msg: str) -> None:
    say(f"livefaces: error: {msg}")


def fmt_duration(seconds: float | None) -> str:
    """``mm:ss`` (``h:mm:ss`` from an hour on); ``--:--`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class ProgressLine:
    """The one progress display of the CLI: a self-overwriting line on stderr, at most
    ``per_second`` updates a second (a final update is always shown), only when ``enabled``
    (callers pass ``sys.stderr.isatty()`` or the user's choice). :meth:`close` ends the line."""

    def __init__(self, enabled: bool, per_second: float = 5.0) -> None:
        self.enabled = enabled
        self._interval = 1.0 / per_second
        self._last = -float("inf")
        self._width = 0

    def show(self, text: str, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < self._interval:
            return
        self._last = now
        self._width = max(self._width, len(text))
        sys.stderr.write("\r" + text.ljust(self._width))
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self._width:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._width = 0
