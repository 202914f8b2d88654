"""The livefaces exception tree.

Every error livefaces raises on purpose derives from :class:`LiveFacesError`, and also from the
builtin that fits, so ``except OSError`` keeps working for I/O problems::

    LiveFacesError(Exception)
    ├── InputError(LiveFacesError, ValueError)      bad image array / argument from the caller
    ├── ImageReadError(LiveFacesError, OSError)     a file that is missing or not an image
    ├── ModelError(LiveFacesError, RuntimeError)    model files missing or not matching MANIFEST
    ├── ProviderError(LiveFacesError, RuntimeError) an ONNX Runtime provider asked for is absent
    ├── ConfigError(LiveFacesError, ValueError)     an invalid configuration (``problems``: one
    │                                               ``FILE:LINE: field: problem`` line each)
    ├── SourceError(LiveFacesError, OSError)        a video source cannot be opened or read
    │   ├── StalledError(SourceError)               no frame within the watchdog timeout
    │   └── NotVideoError(SourceError)              it answers, but not with video (a web page)
    ├── OutputError(LiveFacesError, OSError)        an output file or folder cannot be written
    ├── PeopleError(LiveFacesError, OSError)        the known-people folder is missing, unsafe
    │                                               (readable by others) or damaged
    ├── MissingExtraError(LiveFacesError, ImportError)  an optional extra is not installed
    └── EndOfStream(LiveFacesError, EOFError)       a file or folder has no more frames

Messages are one line and say what to do.
"""

from __future__ import annotations

import re


class LiveFacesError(Exception):
    """Root of all livefaces errors."""


class InputError(LiveFacesError, ValueError):
    """The caller passed something livefaces cannot work with."""


class ImageReadError(LiveFacesError, OSError):
    """An image file is missing, unreadable or not an image."""


class ModelError(LiveFacesError, RuntimeError):
    """The ONNX model files are missing or damaged."""


class ProviderError(LiveFacesError, RuntimeError):
    """An ONNX Runtime execution provider that was asked for is not available."""


class ConfigError(LiveFacesError, ValueError):
    """A configuration is invalid; ``problems`` holds one line per mistake.

    The lines are sorted by the line number they start with (``FILE:LINE: ...``), so the
    message reads top to bottom like the file. One problem is one line, like every other
    error of the CLI; several are a count followed by one indented line each.
    """

    def __init__(self, problems: list[str]):
        self.problems = sorted(problems, key=_line_of)
        n = len(self.problems)
        if n == 1:
            super().__init__(self.problems[0])
        else:
            super().__init__(f"{n} problems in the configuration:\n  " + "\n  ".join(self.problems))


def _line_of(problem: str) -> int:
    m = re.match(r"^.*?:(\d+): ", problem)
    return int(m.group(1)) if m else 0


class SourceError(LiveFacesError, OSError):
    """A video source cannot be opened or read."""


class OutputError(LiveFacesError, OSError):
    """An output (a recording, an image, an output folder) cannot be written: a missing or
    read-only folder, a file where a folder should be, a full disk. The message is one line
    naming the path."""


class PeopleError(LiveFacesError, OSError):
    """The known-people folder (``--people DIR``) cannot be used: missing, readable or
    writable by other users (the message says the ``chmod`` that fixes it), damaged, or a
    name that is not in it."""


class MissingExtraError(LiveFacesError, ImportError):
    """A feature needs an optional extra that is not installed; the message names the
    ``pip install`` that adds it (e.g. ``livefaces[identify]``)."""


class EndOfStream(LiveFacesError, EOFError):
    """A finite source (file, image folder) has no more frames. Not a failure."""


class StalledError(SourceError):
    """A live source delivered no frame for longer than the watchdog allows."""


class NotVideoError(SourceError):
    """A source answered, but with something that is not video (a camera's HTML login page, a
    container without a video stream, data no decoder accepts). Retrying does not help."""
