"""The livefaces exception tree.

Every error livefaces raises on purpose derives from :class:`LiveFacesError`, and also from the
builtin that fits, so ``except OSError`` keeps working for I/O problems::

    LiveFacesError(Exception)
    ├── InputError(LiveFacesError, ValueError)      bad image array / argument from the caller
    ├── ImageReadError(LiveFacesError, OSError)     a file that is missing or not an image
    ├── ModelError(LiveFacesError, RuntimeError)    model files missing or not matching MANIFEST
    ├── ProviderError(LiveFacesError, RuntimeError) an ONNX Runtime provider asked for is absent
    ├── SourceError(LiveFacesError, OSError)        a video source cannot be opened or read
    │   ├── StalledError(SourceError)               no frame within the watchdog timeout
    │   └── NotVideoError(SourceError)              it answers, but not with video (a web page)
    └── EndOfStream(LiveFacesError, EOFError)       a file or folder has no more frames

Messages are one line and say what to do.
"""

from __future__ import annotations


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


class SourceError(LiveFacesError, OSError):
    """A video source cannot be opened or read."""


class EndOfStream(LiveFacesError, EOFError):
    """A finite source (file, image folder) has no more frames. Not a failure."""


class StalledError(SourceError):
    """A live source delivered no frame for longer than the watchdog allows."""


class NotVideoError(SourceError):
    """A source answered, but with something that is not video (a camera's HTML login page, a
    container without a video stream, data no decoder accepts). Retrying does not help."""
