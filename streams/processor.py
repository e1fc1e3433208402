"""One input partition's batches: the engine decides, Redis persists (fenced, with an outbox),
then the outputs go to Kafka and leave the outbox.

A worker that dies after the Redis step and before Kafka acknowledged the outputs leaves them
in the outbox; the partition's next holder produces them first. Events are therefore at least
once, with stable ids; state changes exactly once.

In steady state a batch costs one Redis round trip, the persist script: the state it reads is
cached while the assignment holds (streams/state_cache.py). Outputs are not awaited: Kafka
acknowledges them while later batches are processed, and they leave the outbox in the first
script after that, or in `drain` when the partition is given up.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    authentic: bool = True  # the signature verdict (True when signing is off)


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


# Hands the records to the producer, in order, and returns a future that is done once Kafka
# acknowledged all of them (or failed with the first error).
Sink = Callable[[Sequence[OutRecord]], Awaitable["asyncio.Future[Any]"]]


@dataclass(slots=True)
class BatchStats:
    """What one batch did and how long its steps took, for the worker's metrics."""

    applied: int = 0  # records past the fence, decided and persisted
    skipped: int = 0  # re-deliveries at or below the fence
    events: int = 0
    rejections: list[str] = field(default_factory=list)  # their reasons
    redis_seconds: dict[str, float] = field(default_factory=dict)  # step -> seconds
    produce_seconds: list[float] = field(default_factory=list)  # per delivery, until acknowledged
    retries: int = 0


class PartitionProcessor:
    def __init__(self, engine: Engine, store: RedisStateStore, sink: Sink, topic: str,
                 partition: int, retry_max: float = 5.0, inflight_max: int = 8) -> None:
        self.engine = engine
        self.store = store
        self.sink = sink
        self.topic = topic
        self.partition = partition
        self.retry_max = retry_max
        self.inflight_max = inflight_max
        # Batches whose outputs Kafka has not acknowledged yet: (how many, their future).
        self.inflight: deque[tuple[int, asyncio.Future[Any]]] = deque()
        self._delivered: list[float] = []  # seconds each delivery took, not yet reported
        self.assignment: Assignment | None = None
        self.cache = StateCache()  # valid while this assignment holds; see streams/state_cache
        self.stats = BatchStats()  # of the batch in hand
        self.log = logging.LoggerAdapter(log, {"topic": topic, "partition": partition})

    async def process(self, records: Sequence[InRecord]) -> BatchStats:
        """Apply one batch; returns once it is persisted and its outputs are on their way.

        Outputs are not awaited here: Kafka acknowledges them while the next batches are
        processed (in order per output partition), and they leave the outbox with the first
        persist after that. Up to `inflight_max` batches' outputs may be unacknowledged.

        Any failure is retried with backoff from what Redis holds: the partition is taken
        again, which produces whatever its outbox still has, and the batch is recomputed (a
        lost reply never applies it twice). Fenced propagates: this worker lost the partition
        and must stop writing for it.
        """
        stats = self.stats = BatchStats()
        delay = 0.05
        while True:
            try:
                await self._settle(wait=len(self.inflight) >= self.inflight_max)
                if self.assignment is None:
                    await self._take()
                outputs = await self._apply(records)
                if outputs:
                    await self._send(outputs)
                # Deliveries acknowledged since the last batch.
                stats.produce_seconds, self._delivered = self._delivered, []
                return stats
            except Fenced:
                raise
            except AlreadyApplied:
                # The reply to our own write was lost: take the partition again to flush the outbox.
                self._reset()
            except Exception as exc:
                self.log.warning("batch step failed (%r); retrying in %.2f s", exc, delay)
                self._reset()
                stats.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)

    async def _send(self, outputs: Sequence[OutRecord]) -> None:
        started = time.perf_counter()
        acked = await self.sink(outputs)

        def delivered(_: asyncio.Future[Any]) -> None:
            self._delivered.append(time.perf_counter() - started)

        acked.add_done_callback(delivered)
        self.inflight.append((len(outputs), acked))

    async def drain(self) -> None:
        """Wait for the outputs on their way, then drop them from the outbox (the partition is
        being given up)."""
        try:
            await self._settle(wait=True, every=True)
            assignment = self.assignment
            if assignment is not None and assignment.acked:
                await self.store.ack(assignment, assignment.acked)
                assignment.acked = 0
        finally:
            self._reset()

    def _reset(self) -> None:
        # The next batch takes the partition again: a new token, the outbox produced again.
        self.assignment = None
        self.inflight.clear()

    async def _settle(self, *, wait: bool, every: bool = False) -> None:
        """Count the outputs Kafka acknowledged, oldest batch first; wait for the oldest (or
        `every`) batch when told to. Raises when a delivery failed."""
        inflight = self.inflight
        if wait and inflight:
            await asyncio.wait([f for _, f in inflight] if every else [inflight[0][1]])
        while inflight and inflight[0][1].done():
            count, acked = inflight.popleft()
            failure = acked.exception()
            if failure is not None:
                raise failure
            assert self.assignment is not None
            # The next persist trims them from the outbox, in the same round trip.
            self.assignment.acked += count

    async def _take(self) -> None:
        # Whatever happened before (a lost reply, another holder), Redis is the truth again.
        self.cache.clear()
        started = time.perf_counter()
        assignment = await self.store.take(self.topic, self.partition)
        self._timed("take", started)
        if assignment.pending:
            self.log.info("producing %d outputs left by an earlier holder", len(assignment.pending))
            await (await self.sink([OutRecord.decode(raw) for raw in assignment.pending]))
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
        items = [decode_response(r.value, authentic=r.authentic) for r in fresh]
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
