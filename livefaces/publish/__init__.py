"""Where results and events go: the :class:`Sink` protocol and a bounded runner for it.

A sink gets every :class:`~livefaces.types.FrameResult` (``on_result``) and every event dict
(``on_event``, see :mod:`livefaces.events`). The pipeline runs each sink on its own thread
behind a :class:`SinkRunner`, so a slow sink (a window, an encoder, a network publisher)
never slows detection. The runner holds two bounded queues:

* results: ``result_policy`` ``"drop_oldest"`` (default: a slow sink sees the newest frames,
  drops are counted in ``results_dropped``) or ``"wait"`` (nothing is lost; the pipeline
  waits — for file processing and :func:`livefaces.stream`);
* events: ``drop_oldest`` with a large bound (``event_queue``), drops counted in
  ``events_dropped``;
* statistics (``on_stats``, a :class:`~livefaces.types.PipelineStats` about once a second):
  one slot, the newest snapshot wins (replaced ones are counted by ``stats.dropped``).

Words: a *sink* is anything the pipeline feeds through a runner; a *publisher* is a sink that
sends events out of the process. Shipped sinks: the publishers
:class:`~livefaces.publish.jsonl.JsonlPublisher` (JSON Lines) and
:class:`~livefaces.publish.mqtt.MqttPublisher` (MQTT; the ``serve`` extra), and the fakes
:class:`~livefaces.publish.memory.MemoryPublisher` / :class:`~livefaces.publish.memory.QueueSink`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..ringbuffer import Closed, DropPolicy, RingBuffer
from ..types import FrameResult, PipelineStats

log = logging.getLogger(__name__)


class OutputClosed(Exception):  # noqa: N818 - a state, not a failure
    """Raised by a sink whose reader went away for good (stdout piped into ``head`` that
    exited: EPIPE). Not an error: the runner stops feeding that sink and calls its
    ``on_output_closed`` callback (the pipeline stops cleanly)."""


class OutputFailed(Exception):  # noqa: N818 - named like OutputClosed, its sibling
    """Raised by a sink whose output cannot be written any more (a full disk, a closed or
    failing stdout): the message says what and why. The runner records it as the sink's
    ``error``, stops feeding that sink and stops the pipeline: a run whose output is lost
    ends (the CLI: exit 1 with that one line) instead of going on for nothing."""


@runtime_checkable
class Sink(Protocol):
    """Receives results and events on one thread (its runner's); must not raise on purpose."""

    def on_result(self, result: FrameResult) -> None: ...

    def on_event(self, event: dict[str, Any]) -> None: ...

    def on_stats(self, stats: PipelineStats) -> None:
        """A statistics snapshot, about once a second and once at the end (optional: a sink
        without this method gets none)."""

    def close(self) -> None:
        """Flush and release (files finalised). Called once, on the runner's thread."""


class BaseSink:
    """Convenience base: ignores what it is not interested in."""

    #: drop policy for results when the sink falls behind
    result_policy: DropPolicy = "drop_oldest"
    result_queue: int = 8
    event_queue: int = 10000

    def on_result(self, result: FrameResult) -> None:
        pass

    def on_event(self, event: dict[str, Any]) -> None:
        pass

    def on_stats(self, stats: PipelineStats) -> None:
        pass

    def close(self) -> None:
        pass


class SinkRunner:
    """Runs ``sink`` on its own thread behind bounded queues (see module docs)."""

    def __init__(self, sink: Sink, stop: threading.Event | None = None,
                 on_output_closed: Callable[[str], None] | None = None) -> None:
        self.sink = sink
        self.on_output_closed = on_output_closed
        self.output_closed = False
        #: the sink raised :class:`OutputFailed` (its ``error`` says why; the pipeline stopped)
        self.failed = False
        self.name = type(sink).__name__
        self._wake = threading.Condition()
        self.results: RingBuffer[FrameResult] = RingBuffer(
            getattr(sink, "result_queue", 8), getattr(sink, "result_policy", "drop_oldest"),
            notify=self._wake)
        self.events: RingBuffer[dict] = RingBuffer(getattr(sink, "event_queue", 10000),
                                                   "drop_oldest", notify=self._wake)
        # statistics: only the newest snapshot matters (a replaced one is counted as dropped)
        self.stats: RingBuffer[PipelineStats] = RingBuffer(1, "drop_oldest", notify=self._wake)
        self._on_stats = getattr(sink, "on_stats", None)
        self._stop = stop or threading.Event()
        self.errors = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"sink[{self.name}]", daemon=True)

    @property
    def results_dropped(self) -> int:
        return self.results.dropped

    @property
    def events_dropped(self) -> int:
        return self.events.dropped

    def start(self) -> None:
        self._thread.start()

    def put_result(self, result: FrameResult) -> None:
        self.results.put(result, stop=self._stop)  # "wait": until room, close or stop

    def put_event(self, event: dict) -> None:
        self.events.put(event)

    def put_stats(self, stats: PipelineStats) -> None:
        if self._on_stats is not None:
            self.stats.put(stats)

    def _call(self, fn, item) -> None:  # noqa: ANN001
        if self.output_closed or self.failed:  # what is left has nowhere to go
            return
        try:
            fn(item)
        except OutputClosed as e:
            self.output_closed = True
            log.info("sink %s: output closed by its reader (%s)", self.name, e)
            if self.on_output_closed is not None:
                self.on_output_closed(self.name)
        except OutputFailed as e:
            self.failed = True  # nothing more goes to it
            self.errors += 1
            self.error = str(e)
            log.info("sink %s: %s; stopping", self.name, e)  # the caller reports it (stats)
            self._stop.set()
        except Exception as e:  # noqa: BLE001 - one bad sink must not stop the others
            self.errors += 1
            if self.error is None:
                log.error("sink %s failed: %s", self.name, e)
            self.error = f"{type(e).__name__}: {e}"

    def _run(self) -> None:
        try:
            results_open = events_open = True
            while results_open or events_open:
                with self._wake:
                    if not len(self.events) and not len(self.results) and not len(self.stats) \
                            and not (self.events.closed or self.results.closed):
                        self._wake.wait(0.1)
                if self._on_stats is not None:
                    try:
                        for st in self.stats.get_all():
                            self._call(self._on_stats, st)
                    except Closed:
                        pass
                if events_open:
                    try:
                        for e in self.events.get_all():
                            self._call(self.sink.on_event, e)
                    except Closed:
                        events_open = False
                if results_open:
                    try:
                        for r in self.results.get_all():
                            self._call(self.sink.on_result, r)
                            if len(self.events):  # keep events prompt behind slow results
                                for e in self.events.get_all():
                                    self._call(self.sink.on_event, e)
                    except Closed:
                        results_open = False
        finally:
            try:
                self.sink.close()
            except Exception as e:  # noqa: BLE001
                log.error("sink %s failed to close: %s", self.name, e)
                self.error = f"close: {type(e).__name__}: {e}"

    def close(self, timeout: float) -> bool:
        """Deliver what is queued, close the sink; True if done within ``timeout`` s."""
        self.stats.close()
        self.results.close()
        self.events.close()
        self._thread.join(timeout)
        return not self._thread.is_alive()
