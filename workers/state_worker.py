"""The state worker: a faust app whose agent applies msgstate.responses, one actor per partition."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import faust
import redis.asyncio as aioredis

from schemas.exceptions import Fenced
from streams.engine import Engine
from streams.processor import EVENT, InRecord, OutRecord, PartitionProcessor
from streams.redis_keys import Keys
from streams.redis_store import RedisStateStore
from workers.config import Settings

log = logging.getLogger(__name__)

BATCH_MAX = 500
BATCH_WITHIN = 0.02  # seconds: a short wait keeps latency low while batches fill under load


def build_app(settings: Settings, registry: dict[str, str] | None = None) -> faust.App:
    data = settings.stack_dir / "faust"
    data.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{s}" for s in settings.kafka_servers],
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_every=BATCH_MAX,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        # faust makes a data folder even with no tables: keep it out of the working directory.
        datadir=str(data / "{conf.name}-data"),
    )
    responses = app.topic(settings.topics.responses, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")
    outputs = {EVENT: settings.topics.summary_changes}
    rejections = settings.topics.rejections
    engine = Engine(registry)
    client = aioredis.from_url(settings.redis, socket_timeout=10, socket_connect_timeout=5)
    store = RedisStateStore(client, Keys(settings.key_prefix))

    async def sink(records: Sequence[OutRecord]) -> None:
        pending = []
        for r in records:
            pending.append(await app.producer.send(outputs.get(r.kind, rejections),
                                                   r.key or None, r.value, None, None, None))
        await asyncio.gather(*pending)

    @app.agent(responses, concurrency=1, isolated_partitions=True)
    async def apply_responses(stream: Any) -> None:
        processor: PartitionProcessor | None = None
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):
            tp = events[0].message.tp
            if processor is None:
                # A new actor per assignment, so a new fencing token per assignment.
                processor = PartitionProcessor(engine, store, sink, tp.topic, tp.partition)
            try:
                await processor.process([InRecord(e.message.offset, e.value) for e in events])
            except Fenced:
                log.warning("%s/%d now belongs to another worker; no more writes from here",
                            tp.topic, tp.partition)
                await _park_until_revoked()

    return app


async def _park_until_revoked() -> None:
    # Returning would let faust ack this batch; waiting leaves the partition to its new
    # owner until the rebalance revokes it here and cancels this actor.
    await asyncio.Event().wait()
