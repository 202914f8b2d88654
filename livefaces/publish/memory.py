"""In-memory fakes for tests and demos (shipped on purpose, like httpx's mock transport)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..ringbuffer import DropPolicy, RingBuffer
from ..types import FrameResult
from . import BaseSink


class MemoryPublisher(BaseSink):
    """Keeps the last ``maxlen`` events (and, if ``keep_results``, results) in memory."""

    def __init__(self, maxlen: int = 100_000, keep_results: int = 0) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self.results: deque[FrameResult] = deque(maxlen=max(keep_results, 1))
        self._keep_results = keep_results > 0
        self.result_count = 0
        self._cond = threading.Condition()
        self.closed = False

    def on_event(self, event: dict[str, Any]) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    publish = on_event

    def on_result(self, result: FrameResult) -> None:
        with self._cond:
            self.result_count += 1
            if self._keep_results:
                self.results.append(result)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def of_type(self, type: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e["type"] == type]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                 start: int = 0) -> dict[str, Any] | None:
        """The first event (from position ``start``) matching ``predicate``, waiting up to
        ``timeout`` seconds; None on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in list(self.events)[start:]:
                    if predicate(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.1))


class QueueSink(BaseSink):
    """Results into a :class:`RingBuffer` for a consumer thread (used by :func:`livefaces.stream`)."""

    def __init__(self, capacity: int = 8, policy: DropPolicy = "wait") -> None:
        self.result_policy = policy
        self.result_queue = capacity
        self.queue: RingBuffer[FrameResult] = RingBuffer(capacity, policy)

    def on_result(self, result: FrameResult) -> None:
        self.queue.put(result)  # "wait": until the consumer makes room or closes the queue

    def close(self) -> None:
        self.queue.close()
