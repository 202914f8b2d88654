"""JSON Lines events: one event per line, flushed per line (``tail -f``/pipes see it at once)."""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import IO, Any

from ..errors import LiveFacesError, OutputError
from ..outfile import open_through
from . import BaseSink, OutputClosed, OutputFailed


class JsonlPublisher(BaseSink):
    """Writes each event as one JSON line to ``target`` (a path, ``"-"`` for stdout, or an
    open text file). Files are appended to, so restarts never erase earlier events. A pipe
    whose reader exits ends the output (:class:`~livefaces.publish.OutputClosed`); one that
    cannot be written (a full disk, a closed stdout) fails it
    (:class:`~livefaces.publish.OutputFailed`: the run stops with that error).
    ``written`` counts lines; ``on_written(event)`` (optional) is called after each flush.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str], on_written=None) -> None:  # noqa: ANN001
        self._own = False
        if hasattr(target, "write"):
            self._f: IO[str] = target  # type: ignore[assignment]
            self._where = str(getattr(target, "name", "the events file"))
        elif os.fspath(target) == "-":  # type: ignore[arg-type]
            self._f = sys.stdout
            self._where = "stdout"
        else:
            try:  # a FIFO with no reader fails at once instead of blocking (outfile)
                fd = open_through(target, append=True)  # type: ignore[arg-type]
            except OutputError as e:
                if "no reader" in str(e):
                    raise
                raise LiveFacesError(f"{e}; check the folder exists and is writable") from None
            self._f = os.fdopen(fd, "a", encoding="utf-8")
            self._own = True
            self._where = os.fspath(target)  # type: ignore[arg-type]
        self.written = 0
        self.on_written = on_written

    def publish(self, event: dict[str, Any]) -> None:
        """Write one line. Raises :class:`~livefaces.publish.OutputClosed` when the reader of
        a pipe went away (``watch --events - | head -1``), so the pipeline stops at once."""
        try:
            self._f.write(json.dumps(event, separators=(",", ":")) + "\n")
            self._f.flush()
        except OSError as e:
            if isinstance(e, BrokenPipeError) or e.errno == errno.EPIPE:
                raise OutputClosed("broken pipe") from None
            # a full disk, a closed stdout ('>&-'), a hung-up terminal: the events are lost
            raise OutputFailed(f"{self._where}: cannot write the events "
                               f"({e.strerror or e})") from None
        except (ValueError, AttributeError):  # a closed file, or no stdout at all (None)
            raise OutputFailed(f"{self._where}: cannot write the events (closed)") from None
        self.written += 1
        if self.on_written is not None:
            self.on_written(event)

    on_event = publish

    def close(self) -> None:
        try:
            self._f.flush()
        except (OSError, ValueError):
            pass
        if self._own:
            self._f.close()
