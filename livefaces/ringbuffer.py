"""A bounded buffer between one producer thread and one consumer thread.

Two named drop policies:

* ``"drop_oldest"`` (live sources): :meth:`RingBuffer.put` never waits; when the buffer is
  full the oldest item is discarded and counted in :attr:`RingBuffer.dropped`, so the newest
  frame always wins and a slow consumer never slows the decoder.
* ``"wait"`` (files, image folders): :meth:`RingBuffer.put` waits (in timeout-bounded steps)
  until there is room, so no frame of a file is lost; it gives up when the buffer is closed
  or the ``stop`` event it is given is set.

An optional shared :class:`threading.Condition` (``notify``) is notified on every put, so one
consumer can wait on several buffers at once (the pipeline's detect loop does).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

DropPolicy = Literal["drop_oldest", "wait"]


class Closed(Exception):
    """The buffer was closed and is empty (end of stream)."""


class RingBuffer(Generic[T]):
    """Bounded FIFO with a named drop policy and a drop counter.

    Args:
        capacity: most items held (>= 1).
        policy: ``"drop_oldest"`` or ``"wait"`` (see module docstring).
        notify: a condition shared by several buffers; notified after every put and on close.
    """

    def __init__(self, capacity: int = 8, policy: DropPolicy = "drop_oldest",
                 notify: threading.Condition | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if policy not in ("drop_oldest", "wait"):
            raise ValueError(f"unknown drop policy {policy!r}")
        self.capacity = capacity
        self.policy: DropPolicy = policy
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._notify = notify
        self._closed = False
        self.dropped = 0
        """items discarded by ``drop_oldest`` since creation"""

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T, timeout: float | None = None,
            stop: threading.Event | None = None) -> bool:
        """Add ``item``. Returns False if it was not added: the buffer is closed, or (``"wait"``
        policy) it is still full after ``timeout`` seconds or when ``stop`` is set. ``None``
        waits until room, close or ``stop``, in steps of at most 0.1 s (so a ``stop`` set
        without touching the buffer is seen within 0.1 s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return False
            if self.policy == "drop_oldest":
                while len(self._items) >= self.capacity:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self.capacity and not self._closed:
                    if stop is not None and stop.is_set():
                        return False
                    left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                    if left <= 0:
                        return False
                    self._not_full.wait(left)
                if self._closed:
                    return False
            self._items.append(item)
            self._not_empty.notify()
        self._wake()
        return True

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, waiting up to ``timeout`` seconds (``None``: until one arrives).

        Returns ``None`` on timeout; raises :class:`Closed` once closed and drained.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._items:
                if self._closed:
                    raise Closed()
                left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if left <= 0:
                    return None
                self._not_empty.wait(left)
            item = self._items.popleft()
            self._not_full.notify()
            return item

    def get_all(self) -> list[T]:
        """Every item now held, oldest first, without waiting (may be empty).

        Raises :class:`Closed` once closed and drained."""
        with self._lock:
            if not self._items and self._closed:
                raise Closed()
            items = list(self._items)
            self._items.clear()
            self._not_full.notify_all()
            return items

    def close(self) -> None:
        """No more puts; consumers drain what is left, then get :class:`Closed`."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()
        self._wake()

    def _wake(self) -> None:
        if self._notify is not None:
            with self._notify:
                self._notify.notify_all()
