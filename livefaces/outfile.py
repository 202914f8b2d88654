"""Where an output file goes: the one rule of every file livefaces writes whole.

A plain file (or a name that does not exist yet) is replaced atomically: written to a temp
name beside it (``.NAME.tmp``), then renamed, so a reader never sees half a file and a crash
leaves the old file or the new one. Anything else the path names is **written through**,
never replaced: a symlink (the file it points at gets the bytes, the link stays), a device
(``/dev/null``, ``/dev/stdout``, a terminal), a FIFO (its reader gets the bytes; with no
reader the write fails at once instead of waiting) or a socket. A folder is refused.
Written through, a file is not atomic: a crash can leave it half written.

Ground floor: the standard library and :mod:`livefaces.errors` only, so the image writer
(``imageio``), the video writer (``avio``), ``extract`` and the CLI share it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

from .errors import OutputError


def writes_through(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` exists and is not a plain file (a symlink, a device, a FIFO, a
    socket): it is written through, not replaced. Raises :class:`OutputError` for a folder."""
    try:
        st = os.lstat(path)
    except OSError:  # nothing there (or no folder to hold it): the write says why
        return False
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{os.fspath(path)}: is a folder, not a file")
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.stat(path).st_mode
        except OSError:  # a dangling link: writing through it creates its target
            return True
        if stat.S_ISDIR(target):
            raise OutputError(f"{os.fspath(path)}: points at a folder, not a file")
        return True
    return not stat.S_ISREG(st.st_mode)


def open_through(path: str | os.PathLike[str], *, append: bool = False) -> int:
    """A file descriptor open for writing on what ``path`` names (following symlinks, no
    temp file; created if missing; truncated, or with ``append`` appended to), blocking
    writes. A FIFO without a reader fails at once (no endless wait). Raises
    :class:`OutputError`, one line naming the file."""
    p = os.fspath(path)
    mode = os.O_APPEND if append else os.O_TRUNC
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | mode | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise OutputError(f"{p}: a FIFO with no reader (start the reader first)") from None
        raise OutputError(f"{p}: cannot write ({e.strerror or e})") from None
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    return fd


def temp_path(path: str | os.PathLike[str]) -> Path:
    """The temp name a plain file is written to before its rename (``DIR/.NAME.tmp``)."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp")


def write_output(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` (str: UTF-8) to ``path`` by the rule of the module docs: a plain file
    atomically (no temp file is left behind on failure), anything else written through.

    Raises :class:`OutputError` (an ``OSError``), one line naming the file and the system's
    reason (no space left, permission denied, no such folder...)."""
    p = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if writes_through(p):
        fd = open_through(p)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            raise OutputError(f"{p}: cannot write ({e.strerror or e})") from None
        finally:
            os.close(fd)
        return
    tmp = temp_path(p)
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
        os.replace(tmp, p)
    except OSError as e:
        with contextlib.suppress(OSError):  # no temp file, or no folder to hold one
            tmp.unlink()
        raise OutputError(f"{p}: cannot write ({_why(p.parent, e)})") from None


def _why(folder: Path, e: OSError) -> str:
    """Why ``folder`` could not be used: the file in its way, else the system's reason."""
    file = next((q for q in (folder, *folder.parents) if q.is_file()), None)
    if file is not None:
        return f"{file} is a file, not a folder"
    return e.strerror or type(e).__name__
