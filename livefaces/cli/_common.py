"""Helpers shared by the CLI commands: exit codes, detector options, path expansion."""

from __future__ import annotations

import argparse
import contextlib
import errno
import glob
import logging
import math
import os
import sys
import time
import unicodedata
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
    EXIT_PARTIAL: "some inputs failed (each is named on stderr); the others were processed; or an "
                  "output could not be written (a closed or full stdout, a failed --record...)",
    EXIT_USAGE: "bad command line (an unknown option, a value outside the range --help shows)",
    EXIT_SETUP: "cannot start: bad model files, missing provider, unusable source, output or config",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); output written so far is complete and valid",
    EXIT_PIPE: "the reader of stdout went away (e.g. '| head'): stopped at once and quietly, "
               "like standard tools",
}


class StdStreamError(OSError):
    """Writing stdout or stderr failed: the stream was closed at start (``>&-``), or a write
    failed (``> /dev/full``, a hung-up terminal). ``stream``: ``"stdout"`` or ``"stderr"``;
    ``errno``/``strerror`` as the failed write's (EBADF, "closed" for a closed stream)."""

    def __init__(self, stream: str, cause: OSError | None) -> None:
        if cause is None:
            super().__init__(errno.EBADF, "closed")
        else:
            super().__init__(cause.errno, cause.strerror or str(cause))
        self.stream = stream

    def __str__(self) -> str:
        return f"{self.stream}: cannot write ({self.strerror})"


class GuardedStream:
    """``sys.stdout`` / ``sys.stderr`` while a command runs: the real stream, but a write or
    flush that fails raises :class:`StdStreamError` naming the stream, and a stream that was
    closed when the process started (Python makes it ``None``, where ``print()`` quietly
    writes nothing) raises it too, so a lost output is never a success. A broken pipe stays
    :class:`BrokenPipeError` (``| head``: exit 141)."""

    def __init__(self, name: str, stream: object) -> None:
        self.name = name
        self.stream = stream
        #: the first failure, kept even where a caller swallowed it (argparse's --help does)
        self.error: StdStreamError | None = None

    def _failed(self, e: BaseException | None) -> StdStreamError:
        err = StdStreamError(self.name, e if isinstance(e, OSError) else None)
        if self.error is None:
            self.error = err
        return err

    def write(self, text: str) -> int:
        if self.stream is None:
            raise self._failed(None)
        try:
            return self.stream.write(text)  # type: ignore[attr-defined, no-any-return]
        except BrokenPipeError:
            raise
        except OSError as e:
            raise self._failed(e) from None
        except ValueError:  # "I/O operation on closed file"
            raise self._failed(None) from None

    def flush(self) -> None:
        if self.stream is None:
            return
        try:
            self.stream.flush()  # type: ignore[attr-defined]
        except BrokenPipeError:
            raise
        except OSError as e:
            raise self._failed(e) from None
        except ValueError:
            raise self._failed(None) from None

    def isatty(self) -> bool:
        try:
            return self.stream is not None and bool(self.stream.isatty())  # type: ignore[attr-defined]
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        if self.stream is None:
            raise OSError(errno.EBADF, f"{self.name} is closed")
        return int(self.stream.fileno())  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)


def _hold_closed_fds() -> None:
    """A standard file descriptor (0, 1, 2) closed when the process started is pointed at
    /dev/null, so no file opened later takes its number (an output file on fd 2 would get
    FFmpeg's log lines; Python still sees the stream as closed: see :class:`GuardedStream`)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


@contextlib.contextmanager
def guarded_std_streams() -> Iterator[None]:
    """Run a command with :class:`GuardedStream` stdout and stderr (restored after)."""
    _hold_closed_fds()
    saved = sys.stdout, sys.stderr
    sys.stdout = GuardedStream("stdout", saved[0])  # type: ignore[assignment]
    sys.stderr = GuardedStream("stderr", saved[1])  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def silence(stream: str) -> None:
    """After ``stream`` (``"stdout"``/``"stderr"``) failed: point its descriptor at /dev/null,
    so what is still buffered cannot fail again at exit (Python would print "Exception
    ignored" and exit 120)."""
    target = sys.__stdout__ if stream == "stdout" else sys.__stderr__
    try:
        fd = target.fileno() if target is not None else (1 if stream == "stdout" else 2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):
        pass


def silence_stdout() -> None:
    """Point stdout at /dev/null after its reader went away (EPIPE), so nothing more is
    written and Python's final flush cannot complain (the Python docs' SIGPIPE recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


class Number:
    """The argparse ``type=`` of every numeric option: a finite ``int`` or ``float`` within
    ``[lo, hi]`` (``lo_open`` / ``hi_open``: the bound itself is excluded; ``None``: no bound).

    A bad value (``nan``, ``inf``, ``abc``, out of range) is argparse's usage error (exit 2,
    one ``error:`` line naming the flag) before any work starts. :func:`livefaces.cli.build_parser`
    appends :attr:`allowed` to each such option's ``--help`` text, so the range is shown."""

    def __init__(self, kind: type = float, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False, unit: str = "") -> None:
        self.kind, self.lo, self.hi, self.lo_open, self.hi_open = kind, lo, hi, lo_open, hi_open
        self.unit = unit
        self.__name__ = "integer" if kind is int else "number"  # argparse names the type so

    @property
    def allowed(self) -> str:
        """The range in words, e.g. ``> 0``, ``0 to 1``, ``an integer >= 1``."""
        g = "{:g}".format
        lo = None if self.lo is None else ((">" if self.lo_open else ">=") + " " + g(self.lo))
        hi = None if self.hi is None else (("<" if self.hi_open else "<=") + " " + g(self.hi))
        if lo and hi and not self.lo_open and not self.hi_open:
            rng = f"{g(self.lo)} to {g(self.hi)}"
        else:
            rng = ", ".join(x for x in (lo, hi) if x) or "any"
        what = "an integer" if self.kind is int else "a number"
        return f"{what} {rng}" + (f" {self.unit}" if self.unit else "")

    def __call__(self, text: str) -> float:
        try:
            v = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be {self.allowed}") from None
        bad = not math.isfinite(v)
        if not bad and self.lo is not None:
            bad = v <= self.lo if self.lo_open else v < self.lo
        if not bad and self.hi is not None:
            bad = v >= self.hi if self.hi_open else v > self.hi
        if bad:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be {self.allowed}")
        return v


#: the shared kinds of numeric option
SECONDS = Number(float, 0, lo_open=True, unit="(seconds)")
POSITIVE = Number(float, 0, lo_open=True)
COUNT = Number(int, 1)
SCORE = Number(float, 0, 1)


def _device(value: str) -> str:
    """argparse type of ``--device``: a bad value is a usage error (exit 2), like a bad choice."""
    if value.split(":")[0] not in DEVICES or (":" in value and not value.split(":", 1)[1].isdigit()):
        raise argparse.ArgumentTypeError(f"invalid device {value!r} (choose from auto, cpu, cuda, cuda:N)")
    return value


#: ``--min-face``: what :func:`livefaces.detect.options.check_settings` accepts
MIN_FACE = Number(float, 12, unit="(pixels)")


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
    g.add_argument("--min-face", type=MIN_FACE, default=d.min_face_size, metavar="PX",
                   help=min_face_help or f"smallest face to find, in input pixels (default: "
                                         f"{_fmt(d.min_face_size)}; larger is faster)")
    g.add_argument("--factor", type=Number(float, 0, 1, lo_open=True, hi_open=True),
                   default=d.factor, metavar="F",
                   help=f"image pyramid step (default: {_fmt(d.factor)}; larger finds "
                        f"more, slower)")
    g.add_argument("--thresholds", type=SCORE, nargs=3, default=d.thresholds,
                   metavar=("P", "R", "O"),
                   help="score thresholds of P-Net, R-Net, O-Net (default: "
                        f"{' '.join(_fmt(t) for t in d.thresholds)})")
    g.add_argument("--threads", type=COUNT, default=d.threads, metavar="N",
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


#: the invisible characters that reorder text on a terminal ("Trojan Source")
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object) -> str:
    """``text`` safe to show on a terminal, on one line: control characters (newlines,
    carriage returns, ANSI escapes, C1 controls), line and paragraph separators and bidi
    overrides are written as escapes (``\\n``, ``\\x1b``, ``\\u202e``); bytes of a file name
    that are not UTF-8 (surrogate-escaped by Python) as ``\\xNN``. For what the CLI prints of
    untrusted strings (file names, names found on disk, what a server answers); JSON output
    is escaped by JSON already."""
    s = str(text)
    if s.isprintable():  # the usual case: nothing to escape (isprintable is stricter)
        return s
    out = []
    for c in s:
        cat = unicodedata.category(c)
        if cat in ("Cc", "Zl", "Zp") or c in _BIDI:
            out.append(_NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"))
        elif cat == "Cs":  # os.fsdecode's surrogateescape: a byte that is not UTF-8
            o = ord(c)
            out.append(f"\\x{o - 0xDC00:02x}" if 0xDC80 <= o <= 0xDCFF else f"\\u{o:04x}")
        else:
            out.append(c)
    return "".join(out)


class PrintableFormatter(logging.Formatter):
    """The CLI's log lines: each record's message through :func:`printable` (a file name or
    a server's text cannot start a line of its own); a traceback (-vv) keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = printable(record.message)
        return super().formatMessage(record)


def say(line: str) -> None:
    """One line on stderr, in a single write, through :func:`printable` (one line it
    stays). ``print()`` to stderr writes the text and its newline separately, so a log
    record from another thread could land between them (serve's "serving ... on URL" line
    once ran into the next log line, and a reader took ``URL/livefaces:`` for the address)."""
    sys.stderr.write(printable(line) + "\n")
    sys.stderr.flush()


def error(msg: str) -> None:
    say(f"livefaces: error: {msg}")


def say_if_possible(line: str) -> None:
    """:func:`say` where stderr itself may be what failed (closed, full, a hung-up
    terminal): then nothing is said, and the exit code alone tells."""
    try:
        say(line)
    except (OSError, ValueError, AttributeError):
        silence("stderr")


def error_if_possible(msg: str) -> None:
    say_if_possible(f"livefaces: error: {msg}")


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
