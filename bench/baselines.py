"""The ceilings measured in the same run: a bare consumer and a bare Redis pipeline."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from msgstate.workers.config import Settings


async def _bare_consume(settings: Settings, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka, enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=16 << 20)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        loads = orjson.loads
        got = 0
        start = time.monotonic()
        while got < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in batches.values():
                for message in messages:
                    try:  # noqa: SIM105 - a with-block per record would weigh on the ceiling
                        loads(message.value)
                    except orjson.JSONDecodeError:
                        pass
                got += len(messages)
        return got / (time.monotonic() - start)
    finally:
        await consumer.stop()


def bare_consumer_rate(settings: Settings, topic: str, count: int) -> float:
    """Records/s of an aiokafka consumer (faust's client) that reads and decodes `count` records."""
    return asyncio.run(_bare_consume(settings, topic, count))


def redis_write_rate(settings: Settings, writes: int = 200_000, pipeline: int = 1000) -> float:
    """HSET/s through redis-py pipelines of `pipeline` commands, fields like the worker's."""
    client = settings.redis_client()
    prefix = f"{settings.key_prefix}:ceiling"
    try:
        start = time.monotonic()
        for first in range(0, writes, pipeline):
            pipe = client.pipeline(transaction=False)
            for n in range(first, min(first + pipeline, writes)):
                pipe.hset(f"{prefix}:{{m{n % 5000}}}:vals:root", f"rating\0user{n}", b'"red"')
            pipe.execute()
        return writes / (time.monotonic() - start)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
        for at in range(0, len(keys), 1000):
            client.delete(*keys[at:at + 1000])
        client.close()
