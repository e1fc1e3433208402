"""A round's events to Kafka as record batches made by the compiled decider.

The producer's own batch builder takes records one Python call each; a round's events come
instead as each events-topic partition's records, already encoded (`NativeStateCache.route`).
`PreparedBatch` hands them to aiokafka's accumulator and sender as a closed batch: the sender
gives it the producer's id, epoch and sequence (idempotence), and it is framed and checksummed
then, once (`streams._native.record_batch`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from streams import _native
from streams.rounds.processor import EventBatch

HEADER_BYTES = 61  # a v2 record batch's header
BATCH_BYTES = 256 * 1024  # the producer's batches, its own and these


class PreparedBatch(BatchBuilder):  # type: ignore[misc]  # aiokafka is untyped
    """A closed batch of `count` encoded records, all stamped now."""

    def __init__(self, count: int, records: bytes) -> None:
        # Not the base class's: it would start a builder of its own.
        self._count = count
        self._records = records
        self._timestamp = int(time.time() * 1000)
        self._state = (-1, -1, 0)  # producer id, epoch, base sequence: none until the sender's
        self._buffer: bytes | None = None
        self._closed = True
        self._relative_offset = count

    def append(self, *, timestamp: Any, key: Any, value: Any, headers: Sequence[Any] = ()) -> None:
        return None  # closed: the producer starts a batch of its own

    def _set_producer_state(self, producer_id: int, producer_epoch: int, base_sequence: int) -> None:
        self._state = (producer_id, producer_epoch, base_sequence)
        self._buffer = None

    def _build(self) -> bytes:
        if self._buffer is None:
            self._buffer = _native.record_batch(self._records, self._count, self._timestamp, *self._state)
        return self._buffer

    def size(self) -> int:
        return HEADER_BYTES + len(self._records)

    def record_count(self) -> int:
        return self._count


class EventBatches:
    """Sends a round's event batches to the events topic; `start` learns its partitions."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.partitions = 0  # until `start`: events go one by one
        self.max_bytes = BATCH_BYTES - HEADER_BYTES

    async def start(self) -> None:
        self.partitions = len(await self.producer.partitions_for(self.topic))

    async def __call__(self, batches: Sequence[EventBatch]) -> asyncio.Future[Any]:
        """Hand them to the producer in order (per partition, the order Kafka keeps); returns a
        future done once Kafka acknowledged every one."""
        send = self.producer.send_batch
        futures = [await send(PreparedBatch(b.record_count, b.records), self.topic, partition=b.partition)
                   for b in batches]
        return asyncio.gather(*futures)
