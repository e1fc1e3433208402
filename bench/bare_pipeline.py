"""The bare pipeline: the I/O a state worker cannot do without, and nothing else.

`python -m msgstate.bench.bare_pipeline INPUT_TOPIC` reads INPUT_TOPIC (the worker's own) as a
consumer group member, decodes each record (orjson), writes one HSET per record to Redis in one
pipeline per fetch, then produces one event per record to its own summary-changes topic, in one
record batch per partition. No rules, no dedupe, no fence, no outbox: the benchmark's ceiling of
what a worker doing the same reads and writes could drain on this machine.

The Kafka and Redis clients are the state worker's, with its settings (fetch sizes and waits,
acks=all, idempotence, linger 1 ms, batch size, hiredis packing), so the ratio of the two is the
cost of the worker's own work: rules, dedupe, fence, outbox.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import deque
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from msgstate.streams.storage.client import packed_client
from msgstate.workers.config import Settings
from msgstate.workers.services.state_worker import (
    BATCH_BYTES,
    COMMIT_EVERY,
    FETCH_MAX,
    FETCH_MAX_WAIT_MS,
    FETCH_WAIT_MS,
    METADATA_MAX_AGE_MS,
)

INFLIGHT_MAX = 8  # fetches whose events Kafka has not acknowledged yet (the worker's rounds: 8)


def event_of(partition: int, offset: int, data: Any) -> tuple[bytes, tuple[str, str] | None]:
    """The event of one decoded record and its write (message id, identity id); a record that
    is not an object with a string message id yields an event too, and no write.

    The event names the response and carries its changes: about the size of the worker's
    summary-change events, so that the broker handles about as many bytes for both."""
    event_id = f"{partition}:{offset}"
    if not isinstance(data, dict) or not isinstance(data.get("message_id"), str):
        return orjson.dumps({"event_id": event_id, "message_id": None, "response_id": None}), None
    mid, who = data["message_id"], str(data.get("identity_id"))
    event = orjson.dumps({"event_id": event_id, "message_id": mid, "response_id": str(data.get("id")),
                          "identity_id": who, "changes": data.get("changes")})
    return event, (mid, who)


class BarePipeline:
    """Run with `await pipeline.run()` until `stopping` is set; the clients are made from the
    settings unless given (tests give fakes)."""

    def __init__(self, settings: Settings, source: str, *, client: Any = None, consumer: Any = None,
                 producer: Any = None) -> None:
        self.settings = settings
        self.source = source
        self.events = settings.topics.summary_changes
        self.client = client or packed_client(settings.redis, socket_timeout=10, socket_connect_timeout=5)
        self.consumer = consumer or AIOKafkaConsumer(
            **settings.aiokafka_client(), group_id=settings.app_id, client_id=f"{settings.app_id}-bare",
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_min_bytes=1,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS, metadata_max_age_ms=METADATA_MAX_AGE_MS)
        self.producer = producer or AIOKafkaProducer(
            **settings.aiokafka_client(), client_id=f"{settings.app_id}-bare", acks="all",
            enable_idempotence=True, linger_ms=1, max_batch_size=BATCH_BYTES)
        self.inflight: deque[asyncio.Future[Any]] = deque()
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        try:
            self.consumer.subscribe([self.source])
            last_commit = time.monotonic()
            while not self.stopping.is_set():
                fetched = await self.consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=FETCH_MAX)
                if fetched:
                    await self.process(fetched)
                if time.monotonic() - last_commit >= COMMIT_EVERY:
                    last_commit = time.monotonic()
                    await self.consumer.commit()
            if self.inflight:
                await asyncio.wait(self.inflight)
        finally:
            await self.consumer.stop()
            await self.producer.stop()
            await self.client.aclose()

    async def process(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        loads, prefix = orjson.loads, f"{self.settings.key_prefix}:bare:"
        pipe = self.client.pipeline(transaction=False)
        out: list[tuple[int, list[tuple[bytes | None, bytes]]]] = []
        for tp, records in fetched.items():
            events = []
            for record in records:
                try:
                    data = loads(record.value)
                except orjson.JSONDecodeError:
                    data = None
                event, write = event_of(tp.partition, record.offset, data)
                if write is not None:
                    pipe.hset(f"{prefix}{{{write[0]}}}", write[1], record.offset)
                events.append((record.key, event))
            out.append((tp.partition, events))
        await pipe.execute()
        # Like the worker: outputs are not awaited, up to INFLIGHT_MAX fetches' worth at once.
        while len(self.inflight) >= INFLIGHT_MAX:
            await self.inflight.popleft()
        producer, sent = self.producer, []
        for partition, events in out:
            builder = producer.create_batch()
            for key, event in events:
                if builder.append(key=key, value=event, timestamp=None) is None:  # full: send it
                    sent.append(await producer.send_batch(builder, self.events, partition=partition))
                    builder = producer.create_batch()
                    builder.append(key=key, value=event, timestamp=None)
            sent.append(await producer.send_batch(builder, self.events, partition=partition))
        self.inflight.append(asyncio.gather(*sent))


async def _main(source: str) -> None:
    pipeline = BarePipeline(Settings.from_env(), source)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, pipeline.stopping.set)
    await pipeline.run()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m msgstate.bench.bare_pipeline INPUT_TOPIC")
    asyncio.run(_main(sys.argv[1]))


if __name__ == "__main__":
    main()
