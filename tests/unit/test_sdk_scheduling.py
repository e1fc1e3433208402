"""The timers that send batched operations: a thread's, an event loop's, a manual clock's."""

from __future__ import annotations

import asyncio
import threading
import time

from msgstate.streams.sdk import AsyncioScheduler, ManualScheduler, ThreadScheduler
from tests.waiting import wait_for


def test_the_thread_scheduler_runs_due_callbacks_in_due_order_and_skips_canceled_ones() -> None:
    scheduler = ThreadScheduler()
    ran: list[str] = []
    try:
        started = time.monotonic()
        scheduler.call_later(0.2, lambda: ran.append("late"))
        scheduler.call_later(0.05, lambda: ran.append("early"))
        scheduler.call_later(0.1, lambda: 1 / 0)  # a failing callback does not stop the thread
        scheduler.call_later(0.1, lambda: ran.append("canceled")).cancel()
        wait_for(lambda: list(ran), lambda seen: len(seen) == 2, timeout=10, what="two callbacks")
        assert ran == ["early", "late"] and time.monotonic() - started >= 0.2
    finally:
        scheduler.close()


def test_the_asyncio_scheduler_runs_on_the_loop_even_when_called_from_another_thread() -> None:
    async def scenario() -> list[int]:
        scheduler = AsyncioScheduler(asyncio.get_running_loop())
        done = asyncio.Event()
        threads: list[int] = []

        def note() -> None:
            threads.append(threading.get_ident())
            if len(threads) == 2:
                done.set()

        scheduler.call_later(0.01, note)
        await asyncio.to_thread(scheduler.call_later, 0.01, note)
        scheduler.call_later(0.01, note).cancel()
        await asyncio.wait_for(done.wait(), timeout=10)
        # Timers run in due order: once a later one ran, the canceled one had its chance.
        later = asyncio.Event()
        scheduler.call_later(0.02, later.set)
        await asyncio.wait_for(later.wait(), timeout=10)
        return threads

    assert asyncio.run(scenario()) == [threading.get_ident()] * 2


def test_the_manual_clock_runs_only_what_fell_due() -> None:
    clock = ManualScheduler()
    ran: list[float] = []
    clock.call_later(1.0, lambda: ran.append(clock.now))
    clock.call_later(0.5, lambda: ran.append(clock.now))
    clock.advance(0.75)
    assert ran == [0.5] and clock.pending == 1
    clock.advance(0.25)
    assert ran == [0.5, 1.0] and clock.now == 1.0
