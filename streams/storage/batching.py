"""Redis commands issued in one event-loop turn, sent in one pipeline: one round trip.

The worker processes the partitions of a fetch concurrently, and they reach their Redis steps
together: twelve loads, then twelve persist scripts. Sent one by one that is twelve round trips
and as many small socket writes; here each step's commands leave in one non-transactional
pipeline. Every command keeps its own outcome (a script of one partition may be refused while
the others apply), so callers see exactly what a call of their own would have given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

# Queues a caller's commands on the pipeline.
Build = Callable[[Pipeline], object]


class CommandBatcher:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._queue: list[tuple[Build, int, asyncio.Future[list[Any]]]] = []

    async def run(self, build: Build, count: int) -> list[Any]:
        """Queue `count` commands; returns their replies, errors as exception objects."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((build, count, future))
        if len(self._queue) == 1:
            # Runs after every task that is ready now had its turn, so theirs join this batch.
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        task = asyncio.ensure_future(self._execute(queue))
        task.add_done_callback(_retrieve)

    async def _execute(self, queue: list[tuple[Build, int, asyncio.Future[list[Any]]]]) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for build, _, _ in queue:
                build(pipe)
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, _, future in queue:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        at = 0
        for _, count, future in queue:
            if not future.done():  # its caller may have been cancelled
                future.set_result(replies[at:at + count])
            at += count


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
