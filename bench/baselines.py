"""The bare consumer: an aiokafka consumer (the worker's client) that only reads and decodes."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from msgstate.workers.config import Settings


async def _bare_consume(settings: Settings, topic: str, start: dict[int, int], end: dict[int, int]
                        ) -> float:
    consumer = AIOKafkaConsumer(**settings.aiokafka_client(), enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=16 << 20)
    await consumer.start()
    try:
        wanted = {p: end[p] - start.get(p, 0) for p in end if end[p] > start.get(p, 0)}
        partitions = [TopicPartition(topic, p) for p in wanted]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, start.get(tp.partition, 0))
        loads = orjson.loads
        count, got = sum(wanted.values()), 0
        began = time.monotonic()
        while got < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, messages in batches.items():
                messages = messages[:max(0, end[tp.partition] - messages[0].offset)]
                for message in messages:
                    try:  # noqa: SIM105 - a with-block per record would weigh on the ceiling
                        loads(message.value)
                    except orjson.JSONDecodeError:
                        pass
                got += len(messages)
        return got / (time.monotonic() - began)
    finally:
        await consumer.stop()


def bare_consumer_rate(settings: Settings, topic: str, start: dict[int, int], end: dict[int, int]
                       ) -> float:
    """Records/s of an aiokafka consumer that reads and decodes the records of `topic` from the
    offsets `start` to `end` (partition -> offset), already in the log."""
    return asyncio.run(_bare_consume(settings, topic, start, end))
