"""The naive pattern: per record, GET the message's state JSON from Redis, apply, SET it back.

What a chat app's handler does when it keeps one document per message (Rocket.Chat's
example apps read, modify and write their persistence record for every event): one faust
agent, one record at a time, two Redis round trips per record, no fence.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from msgstate.bench.peers.faust_app import apply_each, peer_app, run
from msgstate.bench.peers.message_state import MessageState
from msgstate.workers.config import Settings


def state_key(settings: Settings, message_id: str) -> str:
    return f"{settings.key_prefix}:naive:{message_id}"


def main(settings: Settings) -> None:
    app, responses, events, rejections = peer_app(settings, "naive")
    client = aioredis.from_url(settings.redis)

    async def load(message_id: str) -> MessageState | None:
        doc = await client.get(state_key(settings, message_id))
        return None if doc is None else MessageState.from_bytes(doc)

    async def save(message_id: str, state: MessageState) -> None:
        await client.set(state_key(settings, message_id), state.to_bytes())

    @app.agent(responses)
    async def get_apply_set(stream: Any) -> None:
        await apply_each(stream, load, save, events, rejections)

    run(app)


def summaries(settings: Settings) -> list[dict[str, Any]]:
    """Every summary the peer holds, by (message_id, part_id)."""
    client = redis.Redis.from_url(settings.redis)
    prefix = state_key(settings, "")
    found = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        message_id = key.decode()[len(prefix):]
        found += MessageState.from_bytes(client.get(key)).summaries(message_id)
    client.close()
    return sorted(found, key=lambda s: (s["message_id"], s["part_id"]))
