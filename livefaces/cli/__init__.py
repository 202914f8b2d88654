"""The ``livefaces`` command line: a thin layer over the library.

Each sub-command lives in its own module exposing ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``; register it in :data:`COMMANDS`. Only the CLI configures logging
and prints.

Exit codes (documented in ``livefaces --help``):
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import LiveFacesError
from ._common import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    EXIT_PIPE,
    EXIT_SETUP,
    Number,
    PrintableFormatter,
    StdStreamError,
    error_if_possible,
    guarded_std_streams,
    say_if_possible,
    silence,
    silence_stdout,
)

#: sub-command modules, in the order ``--help`` lists them
COMMANDS = ["demo", "detect", "doctor", "extract", "people", "preview", "serve", "watch"]

__doc__ = (__doc__ or "") + "\n".join(f"    {code:>3}  {what}" for code, what in EXIT_CODES.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livefaces",
        description="Find faces (box, confidence, 5 landmarks) in images and live video "
        "with the MTCNN cascade on ONNX Runtime.",
        epilog="exit codes:\n" + "\n".join(f"  {c:>3}  {w}" for c, w in EXIT_CODES.items())
        + "\n\nRun 'livefaces COMMAND --help' for each command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"livefaces {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output on stderr (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"{__name__}.{name}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.DESCRIPTION,
                           epilog=getattr(mod, "EPILOG", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="more log output on stderr (-v info, -vv debug)")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _parser=p, _check=getattr(mod, "check_arguments", None))
        _show_ranges(p)
    return parser


def _show_ranges(parser: argparse.ArgumentParser) -> None:
    """Append each numeric option's allowed range (its :class:`~._common.Number` type) to its
    help text, in ``parser`` and its sub-parsers (``people add``...)."""
    for action in parser._actions:
        if isinstance(action.type, Number) and action.help not in (None, argparse.SUPPRESS):
            each = "each " if isinstance(action.nargs, int) and action.nargs > 1 else ""
            action.help = f"{action.help} [{each}{action.type.allowed}]"
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _show_ranges(sub)


def main(argv: Sequence[str] | None = None) -> int:
    with guarded_std_streams():
        return _main(argv)


def _lost(e: StdStreamError) -> int:
    """'>&-', '> /dev/full', a hung-up terminal: what was written is lost (exit 1)."""
    silence(e.stream)
    error_if_possible(str(e))
    return EXIT_PARTIAL


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version: printed, but is it out? (argparse ignores errors)
        if e.code in (0, None):
            try:
                sys.stdout.flush()
            except StdStreamError as lost:
                return _lost(lost)
            swallowed = getattr(sys.stdout, "error", None)
            if swallowed is not None:
                return _lost(swallowed)
        raise
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    handler = logging.StreamHandler()  # stderr; each message on one line (PrintableFormatter)
    handler.setFormatter(PrintableFormatter("livefaces: %(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    if args._check is not None:  # flags that are wrong together: a usage error too (exit 2)
        try:
            args._check(args)
        except argparse.ArgumentTypeError as e:
            args._parser.error(str(e))
    try:
        rc = int(args._run(args))
        sys.stdout.flush()  # what print() still holds: its failure is this command's too
        swallowed = getattr(sys.stdout, "error", None)  # a failed write someone caught
        return _lost(swallowed) if swallowed is not None and rc == 0 else rc
    except KeyboardInterrupt:
        say_if_possible("livefaces: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # 'livefaces detect ... | head': the reader has what it wanted
        silence_stdout()
        return EXIT_PIPE
    except StdStreamError as e:  # '>&-', '> /dev/full', a hung-up terminal: output was lost
        return _lost(e)
    except LiveFacesError as e:
        error_if_possible(str(e))
        return EXIT_SETUP


if __name__ == "__main__":  # python -m livefaces.cli
    sys.exit(main())
