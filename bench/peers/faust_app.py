"""The faust app the faust-based peers share: same broker settings as the state worker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust

from msgstate.bench.peers.message_state import MessageState
from msgstate.bench.peers.rules import apply_one, rejected_whole
from msgstate.schemas.records import decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.workers.config import Settings

Load = Callable[[str], Awaitable[MessageState | None]]
Save = Callable[[str, MessageState], Awaitable[None]]


def peer_app(settings: Settings, name: str, **options: Any) -> tuple[faust.App, Any, Any, Any]:
    """The app, its input topic and its two output topics (events, rejections)."""
    data = settings.stack_dir / "faust"
    data.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.app_id}-{name}",
        broker=[f"kafka://{s}" for s in settings.kafka_servers],
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        stream_wait_empty=False,
        datadir=str(data / "{conf.name}-data"),
        **options,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    topics = settings.topics
    return (app, app.topic(topics.responses, **raw), app.topic(topics.summary_changes, **raw),
            app.topic(topics.rejections, **raw))


def run(app: faust.App) -> None:
    faust.Worker(app, loglevel="warn", quiet=True).execute_from_commandline()


async def apply_each(stream: Any, load: Load, save: Save, events: Any, rejections: Any) -> None:
    """The agent body of both faust peers: one record at a time, state loaded and saved per record."""
    engine = Engine()
    async for raw in stream:
        item = decode_response(raw)
        if isinstance(item, dict):
            outputs = rejected_whole(item)
        else:
            state = await load(item.message_id) or MessageState()
            changed, outputs = apply_one(engine, item, state)
            if changed:
                await save(item.message_id, state)
        for is_event, key, value in outputs:
            await (events if is_event else rejections).send(key=key, value=value)
