"""One input partition's batches: the engine decides, Redis persists (fenced, with an outbox),
then the outputs go to Kafka and leave the outbox.

A worker that dies after the Redis step and before Kafka acknowledged the outputs leaves them
in the outbox; the partition's next holder produces them first. Events are therefore at least
once, with stable ids; state changes exactly once.

In steady state a batch costs one Redis round trip, the persist script: the state it reads is
cached while the assignment holds (streams/state_cache.py), and the outputs Kafka acknowledged
leave the outbox in the next batch's script, or in `flush_acks` when the partition is given up.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from schemas.codec import dumps
from schemas.exceptions import AlreadyApplied, Fenced
from schemas.records import Response, decode_response
from streams.engine import Engine
from streams.redis_store import Assignment, RedisStateStore
from streams.state_cache import StateCache

log = logging.getLogger(__name__)

EVENT = b"e"
REJECTION = b"r"
_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class InRecord:
    offset: int
    value: bytes


@dataclass(frozen=True, slots=True)
class OutRecord:
    kind: bytes  # EVENT or REJECTION
    key: bytes  # b"" for a record without a message id
    value: bytes

    def encode(self) -> bytes:
        return self.kind + _LEN.pack(len(self.key)) + self.key + self.value

    @classmethod
    def decode(cls, raw: bytes) -> OutRecord:
        (size,) = _LEN.unpack_from(raw, 1)
        return cls(raw[:1], raw[5:5 + size], raw[5 + size:])


# Sends the records to their topics and returns once Kafka acknowledged all of them.
Sink = Callable[[Sequence[OutRecord]], Awaitable[None]]


@dataclass(slots=True)
class BatchStats:
    """What one batch did and how long its steps took, for the worker's metrics."""

    applied: int = 0  # records past the fence, decided and persisted
    skipped: int = 0  # re-deliveries at or below the fence
    events: int = 0
    rejections: list[str] = field(default_factory=list)  # their reasons
    redis_seconds: dict[str, float] = field(default_factory=dict)  # step -> seconds
    produce_seconds: float = 0.0
    retries: int = 0


class PartitionProcessor:
    def __init__(self, engine: Engine, store: RedisStateStore, sink: Sink, topic: str,
                 partition: int, retry_max: float = 5.0) -> None:
        self.engine = engine
        self.store = store
        self.sink = sink
        self.topic = topic
        self.partition = partition
        self.retry_max = retry_max
        self.assignment: Assignment | None = None
        self.cache = StateCache()  # valid while this assignment holds; see streams/state_cache
        self.stats = BatchStats()  # of the batch in hand
        self.log = logging.LoggerAdapter(log, {"topic": topic, "partition": partition})

    async def process(self, records: Sequence[InRecord]) -> BatchStats:
        """Apply one batch; returns once it is persisted and its outputs acknowledged.

        Redis errors are retried with backoff (the batch is recomputed from what Redis holds,
        so a lost reply never applies it twice). Fenced propagates: this worker lost the
        partition and must stop writing for it.
        """
        stats = self.stats = BatchStats()
        delay = 0.05
        while True:
            try:
                if self.assignment is None:
                    await self._take()
                outputs = await self._apply(records)
                break
            except AlreadyApplied:
                # The reply to our own write was lost: take the partition again to flush the outbox.
                self.assignment = None
            except (RedisError, OSError) as exc:
                self.log.warning("Redis step failed (%s); retrying in %.2f s", exc, delay)
                self.assignment = None
                stats.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
        await self._deliver(outputs)
        return stats

    async def flush_acks(self) -> None:
        """Drop the delivered outputs from the outbox now (the partition is being given up)."""
        assignment = self.assignment
        if assignment is not None and assignment.acked:
            await self.store.ack(assignment, assignment.acked)
            assignment.acked = 0

    async def _deliver(self, outputs: Sequence[OutRecord]) -> None:
        """Produce until Kafka acknowledges; they leave the outbox with the next Redis write.

        They are in the outbox already, so a retry may produce some twice (at least once),
        never zero times.
        """
        if not outputs:
            return
        delay = 0.05
        while True:
            try:
                started = time.perf_counter()
                await self.sink(outputs)
                self.stats.produce_seconds += time.perf_counter() - started
                assert self.assignment is not None
                # The next persist trims them from the outbox, in the same round trip.
                self.assignment.acked += len(outputs)
                return
            except Exception as exc:
                self.log.warning("delivering %d outputs failed (%r); retrying in %.2f s",
                                 len(outputs), exc, delay)
                self.stats.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)

    async def _take(self) -> None:
        # Whatever happened before (a lost reply, another holder), Redis is the truth again.
        self.cache.clear()
        started = time.perf_counter()
        assignment = await self.store.take(self.topic, self.partition)
        self._timed("take", started)
        if assignment.pending:
            self.log.info("producing %d outputs left by an earlier holder", len(assignment.pending))
            await self.sink([OutRecord.decode(raw) for raw in assignment.pending])
            assignment.acked = len(assignment.pending)
            assignment.pending = []
        self.assignment = assignment

    async def _apply(self, records: Sequence[InRecord]) -> list[OutRecord]:
        """Decide and persist; returns the outputs to deliver."""
        assignment = self.assignment
        assert assignment is not None
        # Re-deliveries (offsets at or below the fence) change nothing and say nothing.
        fresh = [r for r in records if r.offset > assignment.applied]
        stats = self.stats
        stats.skipped = len(records) - len(fresh)
        if not fresh:
            return []
        items = [decode_response(r.value) for r in fresh]
        started = time.perf_counter()
        view = await self.store.load(self.engine.needs(items), self.cache)
        self._timed("load", started)
        outcome = self.engine.apply_batch(items, view)
        outputs = [OutRecord(EVENT, e["message_id"].encode(), dumps(e)) for e in outcome.events]
        for index, rejection in outcome.rejections:
            outputs.append(self._rejection(rejection, fresh[index].offset))
        offsets: dict[tuple[str, str], int] = {}
        for record, item in zip(fresh, items, strict=True):
            if isinstance(item, Response):
                offsets.setdefault((item.message_id, item.id), record.offset)
        encoded = [o.encode() for o in outputs]
        started = time.perf_counter()
        await self.store.persist(assignment, fresh[0].offset, fresh[-1].offset, outcome.delta,
                                 view, encoded, offsets)
        self._timed("persist", started)
        stats.applied = len(fresh)
        stats.events = len(outcome.events)
        stats.rejections = [r["reason"] for _, r in outcome.rejections]
        return outputs

    def _timed(self, step: str, started: float) -> None:
        times = self.stats.redis_seconds
        times[step] = times.get(step, 0.0) + time.perf_counter() - started

    def _rejection(self, rejection: dict[str, Any], offset: int) -> OutRecord:
        # The pipeline says where the record is, so even a too_large one can be found.
        rejection = {**rejection, "partition": self.partition, "offset": offset}
        message_id = rejection.get("message_id")
        key = message_id.encode() if isinstance(message_id, str) else b""
        return OutRecord(REJECTION, key, dumps(rejection))


__all__ = ["EVENT", "REJECTION", "BatchStats", "Fenced", "InRecord", "OutRecord", "PartitionProcessor",
           "Sink"]
