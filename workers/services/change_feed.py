"""Summary-change events fanned out to in-process subscribers, one Kafka consumer per process.

The HTTP API's server-sent-events streams subscribe here by message id. The consumer belongs to
no consumer group: every API process reads every partition of the summary-changes topic from
its end, so any instance can serve any message's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from msgstate.schemas.exceptions import ServiceUnreachable

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000  # per subscriber; a slower one is told to resynchronise instead


class Subscription:
    """Change events for one message, in topic order; `overflowed` means some were dropped."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.overflowed = False

    def offer(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True

    def drain(self) -> list[dict[str, Any]]:
        """Everything queued now, without waiting."""
        taken = []
        while not self.queue.empty():
            taken.append(self.queue.get_nowait())
        return taken


class ChangeFeed:
    def __init__(self, bootstrap: str, topic: str, security: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.security = security or {}  # aiokafka security_protocol / sasl_* / ssl_context
        self.topic = topic
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.events_seen = 0

    @property
    def ready(self) -> bool:
        """Positioned at the end of every partition and reading."""
        return self._task is not None and not self._task.done()

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    async def start(self, timeout: float = 20.0) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="latest", client_id="msgstate-http", **self.security,
        )
        try:
            await asyncio.wait_for(self._position(consumer), timeout)
        except (KafkaError, TimeoutError, OSError) as exc:
            await consumer.stop()
            raise ServiceUnreachable("Kafka", self.bootstrap, type(exc).__name__) from exc
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name="change-feed")

    async def _position(self, consumer: AIOKafkaConsumer) -> None:
        consumer.subscribe([self.topic])
        await consumer.start()
        # Resolve the end offsets now, so an event produced after start() is never skipped.
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    @contextlib.contextmanager
    def subscribe(self, message_id: str) -> Iterator[Subscription]:
        sub = Subscription(message_id)
        self._subscribers[message_id].add(sub)
        try:
            yield sub
        finally:
            subs = self._subscribers[message_id]
            subs.discard(sub)
            if not subs:
                del self._subscribers[message_id]

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                for records in batches.values():
                    for record in records:
                        self.events_seen += 1
                        self._dispatch(record.key, record.value)
        except KafkaError:
            # Not ready from now on: /readyz says so and the orchestrator restarts the process.
            log.exception("the change feed stopped reading %s", self.topic)

    def _dispatch(self, key: bytes | None, value: bytes | None) -> None:
        # The record key is the message id: skip decoding events nobody follows.
        if key is None or value is None:
            return
        subs = self._subscribers.get(key.decode("utf-8", "replace"))
        if not subs:
            return
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            log.warning("skipping a summary-change record that is not JSON")
            return
        for sub in subs:
            sub.offer(event)
