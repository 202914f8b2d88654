"""Source specs: what a source string means, checked without opening anything.

The one grammar of sources (webcam numbers, ``/dev/videoN``, ``synthetic:``, files and
folders, network URLs), shared by :func:`livefaces.sources.open_source` and serve's config
check, so that checking a configuration and starting it cannot disagree. Also the rule of an
MQTT topic prefix (:func:`topic_prefix_problem`), shared by the MQTT publisher and the
config check for the same reason. Standard library only.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from urllib.parse import urlsplit

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "rtmps")
_SYNTHETIC = re.compile(r"synthetic:(?:(\d+)x(\d+))?(?:@(\d+(?:\.\d*)?|\.\d+))?(?:,frames=(\d+))?")
#: the sizes and rates a ``synthetic:`` camera accepts
SYNTHETIC_SIDE = (16, 8192)
SYNTHETIC_FPS = (0.1, 240.0)
_SCHEME_ONLY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def source_problem(spec: str, *, must_exist: bool = True) -> str | None:
    """Why ``spec`` can never work as a source (one line, what to do), or ``None`` if it may.

    The one check of source specs: :func:`open_source` refuses exactly what this reports, and
    ``livefaces serve --check-config`` uses it too, so checking and starting cannot disagree.
    It does not open anything (a camera that is off is not a problem here; capture retries).

    Args:
        spec: as for :func:`open_source`. The answer never contains the spec itself, so
            callers decide how to show it (redacted: see :func:`redact_url`).
        must_exist: report files and folders that do not exist (``False``: only the syntax).
    """
    if not spec.strip():
        return "empty source; give a URL, a video file, an image folder or a webcam number"
    if spec.startswith("synthetic:"):
        return synthetic_problem(spec)
    if spec.isdigit() or spec.startswith("/dev/video"):
        return None
    path = spec
    if "://" in spec:
        # the parser's own messages can quote part of a password ("...as 'pw'"): not shown
        hint = ("; a '@', ':', '/', '?' or '#' inside a user name or password must be written "
                "%40, %3A, %2F, %3F or %23")
        try:
            parts = urlsplit(spec)
        except ValueError:
            return "not a valid URL (the [ ] around an IPv6 address do not match)" + hint
        try:
            parts.port  # noqa: B018  (parsing it raises ValueError unless it is 0-65535)
        except ValueError:
            return "not a valid URL (the port is not a number from 0 to 65535)" + hint
        scheme = parts.scheme.lower()
        if scheme == "file":
            path = parts.path
        elif scheme not in NETWORK_SCHEMES:
            return (f"unsupported URL scheme {scheme!r}; use rtsp://, rtsps://, http://, https://, "
                    f"rtmp://, a video file, an image folder or a webcam number")
        elif not parts.hostname:
            return "the URL has no host; expected SCHEME://[USER:PASSWORD@]HOST[:PORT]/PATH"
        else:
            return None
    elif _SCHEME_ONLY.match(spec) and not Path(spec).exists():  # "javascript:...", "webcam:0"
        return (f"unsupported URL scheme {spec.split(':', 1)[0].lower()!r} (and no file of that "
                f"name); use rtsp://, rtsps://, http://, https://, rtmp://, a video file, an image "
                f"folder or a webcam number")
    if must_exist and not Path(path).exists():
        return "no such file or folder; check the path (or give a URL or a webcam number)"
    return None


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as an input file (missing, a folder, a FIFO, a device, a
    socket), or ``None`` for a regular file (symlinks followed). Nothing is opened: opening a
    FIFO blocks until a writer comes, and reading a device may never end, so files named as
    inputs of ``detect``, ``extract`` and ``people add``, and files found in folders, must be
    regular files."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        what = "a FIFO (named pipe)"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        what = "a device"
    elif stat.S_ISSOCK(mode):
        what = "a socket"
    else:
        what = "a special file"
    return f"is {what}, not a regular file"


def parse_synthetic(spec: str) -> tuple[int, int, float, int | None]:
    """``(width, height, fps, frames or None)`` of ``synthetic:[WxH][@FPS][,frames=N]``.
    Raises ``ValueError`` with :func:`synthetic_problem`'s line for a bad spec."""
    problem = synthetic_problem(spec)
    if problem is not None:
        raise ValueError(problem)
    m = _SYNTHETIC.fullmatch(spec)
    assert m is not None
    w, h, fps, n = m.groups()
    return int(w or 640), int(h or 360), float(fps or 25), int(n) if n else None


def synthetic_problem(spec: str) -> str | None:
    """What is wrong with a ``synthetic:`` spec (one line, without the spec), or None."""
    m = _SYNTHETIC.fullmatch(spec)
    if not m:
        return "expected synthetic:[WxH][@FPS][,frames=N], e.g. synthetic:1280x720@25"
    w, h, fps, n = m.groups()
    lo, hi = SYNTHETIC_SIDE
    if w is not None and not (lo <= int(w) <= hi and lo <= int(h) <= hi):
        return f"width and height must be {lo} to {hi} pixels, e.g. synthetic:1280x720@25"
    lo_fps, hi_fps = SYNTHETIC_FPS
    if fps is not None and not lo_fps <= float(fps) <= hi_fps:
        return f"the frame rate must be {lo_fps:g} to {hi_fps:g}, e.g. synthetic:1280x720@25"
    if n is not None and int(n) < 1:
        return "frames=N must be 1 or more"
    return None


def topic_prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot start the topics livefaces publishes, or None. Wildcards (``+``,
    ``#``) are not allowed in a published topic (the broker drops the message or the
    connection), topics starting with ``$`` are the broker's own (``$SYS/...``: brokers drop
    clients' messages there), and NUL, spaces or an empty prefix make topics no subscriber
    expects."""
    if not prefix.strip("/"):
        return "must not be empty"
    if prefix.startswith("$"):
        return "must not start with '$' (topics starting with $ are the broker's own, e.g. $SYS)"
    if "+" in prefix or "#" in prefix:
        return "must not contain the wildcards '+' or '#'"
    if any(c.isspace() or c == "\0" for c in prefix):
        return "must not contain spaces or NUL"
    return None
