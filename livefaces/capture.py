"""Capture: one thread per source, decoding into a :class:`RingBuffer` without waiting.

The worker owns its source. It connects, reads frames into the ring buffer, and on errors
reconnects with capped exponential backoff (live sources). A watchdog turns "no frame for
``stall_timeout`` seconds" into a failure (:class:`StalledError`, raised by the source's
timed reads) and so into a reconnect. Each status change is reported through ``on_status``:

    connecting → connected → (stalled | reconnecting) → connected → ... → ended | failed | stopped

``failed`` means the source could not be (re)opened and will not be retried: a file that
cannot be read, or a live source whose *first* connection failed (unless
``retry_at_start``), or ``max_retries`` exhausted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import EndOfStream, LiveFacesError, SourceError, StalledError
from .meter import RateMeter
from .ringbuffer import RingBuffer
from .sources import FrameSource
from .types import Frame

log = logging.getLogger(__name__)

STATUSES = ("connecting", "connected", "stalled", "reconnecting", "ended", "failed", "stopped")

StatusCallback = Callable[[str, str | None, str, str | None], None]
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
        self.status: str | None = None
        self.error: str | None = None
        self.frames = 0
        self.reconnects = 0
        self.last_frame: float | None = None
        self.rate = RateMeter()
        self.started_at: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"capture[{self.name}]", daemon=True)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True if the thread has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _set(self, status: str, detail: str | None = None) -> None:
        before, self.status = self.status, status
        if before == status:
            return
        log.info("%s: %s%s", self.name, status, f" ({detail})" if detail else "")
        if self.on_status is not None:
            try:
                self.on_status(self.name, before, status, detail)
            except Exception:  # noqa: BLE001 - a broken callback must not kill capture
                log.exception("status callback failed")

    def _run(self) -> None:
        opts, src, stop = self.options, self.source, self.stop_event
        connected_once = False
        failures = 0  # attempts in a row that gave no frame (opening failed, or died at once)
        final = "stopped"
        detail: str | None = None
        try:
            while not stop.is_set():
                self._set("connecting" if not connected_once and failures == 0 else "reconnecting",
                          detail)
                try:
                    src.open(opts.open_timeout, opts.stall_timeout)
                except SourceError as e:
                    detail = self.error = str(e)
                    failures += 1
                    give_up = (not src.live or (not connected_once and not opts.retry_at_start)
                               or (opts.max_retries is not None and failures > opts.max_retries))
                    if give_up:
                        final = "failed"
                        return
                    self._backoff(failures)
                    continue
                connected_once = True
                self._set("connected")
                frames_before = self.frames
                try:
                    self._pump()
                    if stop.is_set():
                        return
                except EndOfStream:
                    final, detail = "ended", None
                    return
                except StalledError as e:
                    detail = self.error = str(e)
                    self._set("stalled", detail)
                except SourceError as e:
                    detail = self.error = str(e)
                    if not src.live:
                        final = "failed"
                        return
                finally:
                    src.close()
                self.reconnects += 1
                # A stream that connects and then fails before its first frame backs off like
                # one that cannot connect (an HTTP server that accepts and then errors, say).
                failures = 1 if self.frames > frames_before else failures + 1
                if opts.max_retries is not None and failures > opts.max_retries:
                    final = "failed"
                    return
                self._backoff(failures)
        except LiveFacesError as e:  # anything else a source raises on purpose
            final, detail = "failed", str(e)
            self.error = detail
        except Exception as e:  # noqa: BLE001 - report, never die silently
            log.exception("%s: capture crashed", self.name)
            final, detail = "failed", f"{self.name}: internal error {type(e).__name__}"
            self.error = detail
        finally:
            try:
                src.close()
            finally:
                self.ring.close()
                self._set(final, detail if final == "failed" else None)

    def _pump(self) -> None:
        """Frames into the ring until the source ends/fails or stop is set."""
        src, ring, stop = self.source, self.ring, self.stop_event
        while not stop.is_set():
            frame = src.read()
            self.frames += 1
            self.last_frame = frame.captured
            self.rate.tick(frame.captured)
            if ring.policy == "drop_oldest":
                ring.put(frame)
            else:
                while not ring.put(frame, timeout=0.2):
                    if stop.is_set() or ring.closed:
                        return

    def _backoff(self, failures: int) -> None:
        o = self.options
        delay = min(o.backoff_max, o.backoff_initial * o.backoff_factor ** max(0, failures - 1))
        self.stop_event.wait(delay)
