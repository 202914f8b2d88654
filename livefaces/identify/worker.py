"""The identification worker process (``python -m livefaces.identify.worker``), started and
owned by :class:`~livefaces.identify.live.LiveIdentifier`: it loads the recogniser (dlib) and
the people folder, then embeds and matches the faces it is sent until it is asked to leave or
its stdin ends (the owner went away). Its own interpreter, so its own GIL: embedding never
blocks the detect loop. The messages: :mod:`livefaces.identify.messages`.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..types import Faces
from .messages import (
    Answer,
    Embed,
    EmbedFailed,
    Enrol,
    EnrolFailed,
    Enrolled,
    Matched,
    Ready,
    Start,
    StartFailed,
    StrangerAction,
)

#: the stranger store is written at most this often (seconds), and when the worker leaves
SAVE_EVERY = 2.0


def _one_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def main() -> int:  # pragma: no cover - runs in the child process
    """Serve requests on stdin, answers on stdout (see the module docstring); the exit code."""
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's: it closes us
    rx, tx = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print of a library must not corrupt the channel
    return serve(rx, tx)


def serve(rx: BinaryIO, tx: BinaryIO) -> int:  # pragma: no cover - runs in the child process
    def send(msg: Answer) -> None:
        pickle.dump(msg, tx, protocol=pickle.HIGHEST_PROTOCOL)
        tx.flush()

    try:
        start = pickle.load(rx)
        if not isinstance(start, Start):
            raise TypeError(f"expected Start, got {type(start).__name__}")
        people = start.people
        from . import Gallery, Recognizer

        rec = Recognizer()
        gallery = Gallery.load(people, rec.threshold)
        store = None
        if start.strangers is not None:
            from .strangers import StrangerStore

            store = StrangerStore.open(people, start.strangers)
        send(Ready(tuple(sorted(set(gallery.names))), float(rec.threshold)))
    except Exception as e:  # noqa: BLE001 - reported to the owner as one line
        send(StartFailed(_one_line(e)))
        return 1
    dirty, saved = False, time.monotonic()

    def save() -> None:
        nonlocal dirty, saved
        if store is not None and dirty:
            try:
                store.save()
            except Exception:  # noqa: BLE001 - a full disk: the strangers wait for the next save
                return
            dirty, saved = False, time.monotonic()

    while True:
        try:
            msg = pickle.load(rx)
        except (EOFError, OSError, pickle.UnpicklingError):
            save()
            return 0
        if msg is None:
            save()
            return 0
        if isinstance(msg, StrangerAction):
            try:
                if store is None:
                    raise ValueError("strangers are off (people.strangers in serve's configuration)")
                if msg.action == "name":
                    store.name(msg.stranger, str(msg.name))
                elif msg.action == "ignore":
                    store.ignore(msg.stranger)
                elif msg.action == "forget":
                    store.forget(msg.stranger)
                elif msg.action == "merge":
                    store.merge(msg.stranger, str(msg.name))
                else:
                    raise ValueError(f"unknown action {msg.action!r}: name, ignore, forget or merge")
                dirty = True
                save()
                if msg.action == "name":
                    gallery = Gallery.load(people, rec.threshold)
                send(Enrolled(msg.key, tuple(sorted(set(gallery.names)))))
            except Exception as e:  # noqa: BLE001 - the caller gets the one line
                send(EnrolFailed(msg.key, _one_line(e)))
            continue
        if isinstance(msg, Enrol):
            try:
                send(Enrolled(msg.key, tuple(_enrol(people, rec, msg.name, msg.crop, msg.face))))
                gallery = Gallery.load(people, rec.threshold)
            except Exception as e:  # noqa: BLE001 - the caller gets the one line
                send(EnrolFailed(msg.key, _one_line(e)))
            continue
        out: Answer
        if isinstance(msg, Embed):
            # CPU time, not wall time: the cost of a face; on a busy machine (an un-paced file
            # detecting flat out on every core) the wait for a core would triple the wall time
            t0 = time.process_time()
            try:
                emb = rec.embed(msg.crop, msg.face)
                m = gallery.match(emb[0])
                sid, ignored = None, False
                if store is not None and m.name is None:
                    seen = store.observe(emb[0], msg.crop, msg.face.boxes[0], msg.face.landmarks[0],
                                         msg.camera or "camera")
                    if seen is not None:
                        sid, ignored, dirty = seen.id, seen.ignored, True
                out = Matched(msg.key, m.name, float(m.distance), time.process_time() - t0,
                              sid, ignored)
            except Exception as e:  # noqa: BLE001
                out = EmbedFailed(msg.key, f"{type(e).__name__}: {e}".splitlines()[0])
        else:
            continue
        if dirty and time.monotonic() - saved >= SAVE_EVERY:
            save()
        try:
            send(out)
        except (BrokenPipeError, OSError):
            save()
            return 0


def _enrol(people: str, rec: Any, name: str, crop: np.ndarray, face: Faces) -> list[str]:
    """Add ``crop``'s face to ``name`` in the people folder (the core's
    :func:`~livefaces.identify.gallery.save_person`: private files, all or nothing); the names
    now enrolled."""
    from .gallery import check_name, read_people, save_person, thumbnail

    check_name(name)
    emb = rec.embed(crop, face)[0]
    save_person(Path(people), name, [("live view", emb, thumbnail(crop, face.boxes[0]))])
    return sorted(p.name for p in read_people(Path(people)))


if __name__ == "__main__":  # the worker process
    raise SystemExit(main())
