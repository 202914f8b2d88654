"""Capture: one thread per source, decoding into a :class:`RingBuffer` without waiting.

The worker owns its source. It connects, reads frames into the ring buffer, and on errors
reconnects with capped exponential backoff (live sources). A watchdog turns "no frame for
``stall_timeout`` seconds" into a failure (:class:`StalledError`, raised by the source's
timed reads) and so into a reconnect. Each status change is reported through ``on_status``:

    connecting → connected → (stalled | reconnecting) → connected → ... → ended | failed | stopped

``connected`` is reported when the first frame of a connection arrives, not when the
connection opens: a source that opens and sends nothing is not healthy.

``failed`` means the source cannot be used and will not be retried (``detail`` says why): a
file that cannot be read; a live source that never delivered a frame, when its first
attempt failed (unless ``retry_at_start``) or when it answered with something that is not
video (:class:`~livefaces.errors.NotVideoError`: a login page, say; even with
``retry_at_start``); or ``max_retries`` exhausted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .errors import EndOfStream, LiveFacesError, NotVideoError, SourceError, StalledError
from .meter import RateMeter
from .ringbuffer import RingBuffer
from .types import Frame, FrameSource, Status

log = logging.getLogger(__name__)

StatusCallback = Callable[[str, Status | None, Status, str | None], None]
"""``on_status(source_name, before, after, detail)``; ``detail`` is a one-line reason or None."""


@dataclass(frozen=True)
class CaptureOptions:
    """Capture settings (seconds throughout).

    Attributes:
        capacity: ring buffer size in frames.
        open_timeout: time allowed to connect and probe a stream.
        stall_timeout: the watchdog: no frame for this long is a failure → reconnect.
        backoff_initial / backoff_factor / backoff_max: reconnect delays ``initial * factor**k``
            capped at ``max``.
        retry_at_start: keep retrying a live source whose first connection fails (servers
            watching many cameras want this; the CLI fails fast instead).
        max_retries: give up after this many failed reconnects in a row (None: never).
    """

    capacity: int = 8
    open_timeout: float = 10.0
    stall_timeout: float = 10.0
    backoff_initial: float = 0.25
    backoff_factor: float = 2.0
    backoff_max: float = 2.0
    retry_at_start: bool = False
    max_retries: int | None = None


def _os_error(src: FrameSource, e: OSError) -> str:
    """One line for an error of the system (not of the source) while opening or reading."""
    return f"{src.name}: {e.strerror or e}" + (f" ({e.filename})" if e.filename else "")


class CaptureWorker:
    """Reads ``source`` into ``ring`` on its own thread until EOF, failure or ``stop``.

    Counters (read from other threads; plain ints, updated only here): ``frames``,
    ``reconnects``, ``last_frame`` (monotonic time of the newest frame or None), ``status``,
    ``error`` (last one-line error, redacted).
    """

    def __init__(self, source: FrameSource, ring: RingBuffer[Frame], stop: threading.Event,
                 options: CaptureOptions = CaptureOptions(),
                 on_status: StatusCallback | None = None) -> None:
        self.source = source
        self.name = source.name
        self.ring = ring
        self.stop_event = stop
        self.options = options
        self.on_status = on_status
        self.status: Status | None = None
        self.error: str | None = None
        self.frames = 0
        self.reconnects = 0
        self.last_frame: float | None = None
        self.delivered = False  # True once the source has given a frame (ever)
        self.rate = RateMeter()
        self._thread = threading.Thread(target=self._run, name=f"capture[{self.name}]", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True if the thread has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _set(self, status: Status | str, detail: str | None = None) -> None:
        status = Status(status)
        before, self.status = self.status, status
        if before == status:
            return
        log.info("%s: %s%s", self.name, status, f" ({detail})" if detail else "")
        if self.on_status is not None:
            try:
                self.on_status(self.name, before, status, detail)
            except Exception:  # noqa: BLE001 - a broken callback must not kill capture
                log.exception("status callback failed")

    def _give_up(self, e: OSError, failures: int) -> bool:
        """After ``e`` (opening failed, or the connection died): stop trying for good?"""
        opts, src = self.options, self.source
        if not src.live:
            return True
        if not self.delivered:  # it never gave a frame: not a camera that had a hiccup
            if isinstance(e, NotVideoError) or not opts.retry_at_start:
                return True
        return opts.max_retries is not None and failures > opts.max_retries

    def _run(self) -> None:
        opts, src, stop = self.options, self.source, self.stop_event
        failures = 0  # attempts in a row that gave no frame (opening failed, or died at once)
        final = Status.STOPPED
        detail: str | None = None
        try:
            while not stop.is_set():
                self._set(Status.CONNECTING if not self.delivered and failures == 0
                          else Status.RECONNECTING, detail)
                try:
                    src.open(opts.open_timeout, opts.stall_timeout)
                except OSError as e:  # SourceError, or the system's (EMFILE: out of file
                    # descriptors, ENOMEM...): reported, retried with backoff like a refused one
                    detail = self.error = str(e) if isinstance(e, SourceError) else _os_error(src, e)
                    failures += 1
                    if self._give_up(e, failures):
                        final = Status.FAILED
                        return
                    self._backoff(failures)
                    continue
                frames_before = self.frames
                try:
                    self._pump()  # reports "connected" with the first frame
                    if stop.is_set():
                        return
                except EndOfStream:
                    final, detail = Status.ENDED, None
                    return
                except OSError as e:
                    detail = self.error = str(e) if isinstance(e, SourceError) else _os_error(src, e)
                    failures = 1 if self.frames > frames_before else failures + 1
                    if self._give_up(e, failures):
                        final = Status.FAILED
                        return
                    if isinstance(e, StalledError):
                        self._set(Status.STALLED, detail)
                finally:
                    src.close()
                self.reconnects += 1
                # A stream that connects and then fails before its first frame backs off like
                # one that cannot connect (an HTTP server that accepts and then errors, say).
                self._backoff(failures)
        except LiveFacesError as e:  # anything else a source raises on purpose
            final, detail = Status.FAILED, str(e)
            self.error = detail
        except Exception as e:  # noqa: BLE001 - report, never die silently
            log.exception("%s: capture crashed", self.name)
            final, detail = Status.FAILED, f"{self.name}: internal error {type(e).__name__}"
            self.error = detail
        finally:
            try:
                src.close()
            finally:
                self.ring.close()
                self._set(final, detail if final == Status.FAILED else None)

    def _pump(self) -> None:
        """Frames into the ring until the source ends/fails or stop is set; the first frame of
        a connection sets the status to ``connected`` (a source that opens and then sends no
        frame is not healthy)."""
        src, ring, stop = self.source, self.ring, self.stop_event
        first = True
        while not stop.is_set():
            frame = src.read()
            self.frames += 1
            self.last_frame = frame.captured
            self.rate.tick(frame.captured)
            if first:
                first, self.delivered = False, True
                self._set("connected")
            if not ring.put(frame, stop=stop) and ring.policy == "wait":
                return  # stopped or closed while waiting for room

    def _backoff(self, failures: int) -> None:
        o = self.options
        delay = min(o.backoff_max, o.backoff_initial * o.backoff_factor ** max(0, failures - 1))
        self.stop_event.wait(delay)
