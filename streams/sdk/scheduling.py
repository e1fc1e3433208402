"""When batched operations are sent: a timer per batch, from a thread, an event loop or a
manual clock (for tests, and for callers that drive time themselves)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class Timer(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class _Entry:
    __slots__ = ("callback", "canceled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.canceled = False

    def cancel(self) -> None:
        self.canceled = True


class ThreadScheduler:
    """One daemon thread runs every due callback, in due order."""

    def __init__(self, name: str = "msgstate-sdk-timer") -> None:
        self._heap: list[tuple[float, int, _Entry]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        entry = _Entry(callback)
        with self._wake:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), entry))
            self._wake.notify()
        return entry

    def close(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._wake.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._stopped:
                    return
                _, _, entry = heapq.heappop(self._heap)
            if not entry.canceled:
                try:
                    entry.callback()
                except Exception:  # the timer thread serves every model: it must outlive a bug
                    log.exception("a scheduled msgstate SDK call failed")


class AsyncioScheduler:
    """Timers on an event loop; callable from the loop's thread or any other."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        entry = _Entry(callback)

        def due() -> None:
            if not entry.canceled:
                callback()

        self.loop.call_soon_threadsafe(self.loop.call_later, delay, due)
        return entry


class ManualScheduler:
    """A clock that moves only when told to: `advance(seconds)` runs what fell due."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, _Entry]] = []
        self._order = itertools.count()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        entry = _Entry(callback)
        heapq.heappush(self._heap, (self.now + delay, next(self._order), entry))
        return entry

    @property
    def pending(self) -> int:
        return sum(not entry.canceled for _, _, entry in self._heap)

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while self._heap and self._heap[0][0] <= target:
            due, _, entry = heapq.heappop(self._heap)
            self.now = due
            if not entry.canceled:
                entry.callback()
        self.now = target
