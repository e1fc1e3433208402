"""The Redis store against the real Redis: the state cache stays what Redis holds."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from bench.workload import responses
from schemas.records import decode_response
from streams.decider import PythonDecider
from streams.engine import Engine
from streams.processor import EVENT, OutRecord, pack_outbox
from streams.redis_keys import Keys
from streams.redis_store import PartitionWrite, RedisStateStore
from streams.state import StateNeeds
from workers.config import Settings


@pytest.mark.parametrize("limit", [100_000, 40])  # 40: the cache starts again empty often
async def test_cache_equals_a_fresh_load_after_many_rounds(settings: Settings, limit: int) -> None:
    client = aioredis.from_url(settings.redis)
    # A window of 5 ids so trimming happens often; few messages so they repeat.
    store = RedisStateStore(client, Keys(settings.key_prefix), window=5)
    engine = Engine()
    decider = PythonDecider(engine, window=5, limit=limit)
    records = list(responses(600, messages=4, identities=6, bad_share=0.05, seed=41))
    try:
        assignment = await store.take("t", 0)
        for start in range(0, len(records), 37):
            batch = records[start:start + 37]
            decider.load(*await store.read(decider.decide(batch)))
            decision = decider.apply()
            offsets = {taken: start + index
                       for taken, index in zip(decision.delta.taken, decision.taken_at, strict=True)}
            write = PartitionWrite(assignment, start, start + len(batch) - 1,
                                   pack_outbox(OutRecord(EVENT, k, v) for k, v in decision.events))
            await store.persist([write], decision.delta, decision, offsets)
            decider.commit()
        cache = decider.cache
        fresh = await store.load(_all_needs(engine, records))
        # Whatever the cache holds (all of it, unless it started again) is what Redis holds.
        assert cache.metas and cache.held_by and cache.seen_ids
        assert cache.metas.items() <= fresh.metas.items()
        assert cache.held_by.items() <= fresh.held_by.items()
        assert all(list(ids) == list(fresh.seen_ids[m]) for m, ids in cache.seen_ids.items())
        if limit > 1000:
            assert cache.metas == fresh.metas
            assert cache.seen_ids.keys() == fresh.seen_ids.keys()
        assert all(len(ids) == 5 for ids in fresh.seen_ids.values())
    finally:
        await client.aclose()


def _all_needs(engine: Engine, records: list[bytes]) -> StateNeeds:
    return engine.needs([decode_response(r) for r in records])
