"""A state worker's rounds without Kafka: the decider and the Redis round store on one partition.

    python -m msgstate.bench.round_store --redis redis://127.0.0.1:6379/0 [--responses 40000]
        [--identities 50000] [--engine native] [--erase 10000]

Empties that Redis (give it one of its own), applies --responses of the sample workload (no
deletions, erasures or caps) in rounds of 500, and prints responses/s, the live values (fields of
the values hashes) and Redis's used_memory per live value. Run it with each checkout first on
PYTHONPATH, turn about, to compare two versions. With --erase N it then times one erasure round,
from an empty cache, of an identity holding a Set member and an LWW value in each of N messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import click
import orjson
import redis
import redis.asyncio as aioredis

from msgstate.streams.engine.engine import Engine
from msgstate.streams.rounds.compiled_decider import CompiledDecider
from msgstate.streams.rounds.decider import Decider, Decision
from msgstate.streams.rounds.outbox import EVENT, OutRecord, pack_outbox
from msgstate.streams.rounds.python_decider import PythonDecider
from msgstate.streams.storage.layout import Keys
from msgstate.streams.storage.protocol import Assignment, PartitionWrite
from msgstate.streams.storage.redis_round_store import RedisRoundStore
from msgstate.workers.tools.workload import responses

HOME = {b"": 0}  # every record of the one partition
ERASED = "layer:///identities/FrodoTheDodo"


class Rounds:
    def __init__(self, decider: Decider, store: RedisRoundStore, assignment: Assignment) -> None:
        self.decider, self.store, self.assignment, self.offset = decider, store, assignment, 0

    async def run(self, batch: Sequence[bytes]) -> Decision:
        decider = self.decider
        read = decider.decide(batch)
        while read is not None:
            read = decider.load(await self.store.read(read, HOME))
        decision = decider.apply()
        outbox = pack_outbox(OutRecord(EVENT, k, v) for k, v in decision.events)
        write = PartitionWrite(self.assignment, self.offset, self.offset + len(batch) - 1, outbox)
        await self.store.persist([write], decision.writes, HOME)
        decider.commit()
        await self.store.ack(self.assignment, 1)
        self.offset += len(batch)
        return decision


def _holding(rid: str, message_id: str, identity: str, value: str) -> bytes:
    return orjson.dumps({"id": rid, "message_id": message_id, "identity_id": identity, "changes": [
        {"operation": "add", "type": "Set", "name": "reactions", "value": value},
        {"operation": "add", "type": "LWW", "name": "latest", "value": value}]})


async def _bench(url: str, count: int, identities: int, engine: str, erase: int) -> None:
    sync: Any = redis.Redis.from_url(url)
    sync.flushall()
    base = sync.info("memory")["used_memory"]
    client = aioredis.from_url(url)
    keys = Keys("bench", partitions=1)
    store = RedisRoundStore(client, keys)
    decider: Decider = (CompiledDecider() if engine == "native"
                        else PythonDecider(Engine(), window=10_000))
    rounds = Rounds(decider, store, await store.take(0))
    records = list(responses(count, messages=max(1, count // 20), identities=identities,
                             bad_share=0.0, seed=5))
    started = time.perf_counter()
    for start in range(0, len(records), 500):
        await rounds.run(records[start:start + 500])
    took = time.perf_counter() - started
    live = sum(sync.hlen(k) for k in sync.scan_iter(match="bench:*:vals:*", count=1000))
    used = sync.info("memory")["used_memory"] - base
    click.echo(f"{engine}: {count / took:,.0f} responses/s; {live:,} live values, "
               f"{used / max(live, 1):.0f} bytes of used_memory per live value")
    if erase:
        for start in range(0, erase, 1000):
            await rounds.run([_holding(f"h{m}-{who}", f"layer:///messages/e{m}", who, "👍")
                              for m in range(start, min(erase, start + 1000))
                              for who in (ERASED, "layer:///identities/Sam")])
        decider.clear()  # as a new holder of the partition: nothing cached
        began = time.perf_counter()
        done = await rounds.run([orjson.dumps({"kind": "erase_identity", "id": "e1",
                                               "identity_id": ERASED})])
        click.echo(f"{engine}: erasing an identity holding values in {erase:,} messages: "
                   f"{time.perf_counter() - began:.2f} s, {len(done.events):,} events")
    await client.aclose()


@click.command()
@click.option("--redis", "url", required=True, help="A Redis of its own: it is emptied.")
@click.option("--responses", "count", default=40_000, show_default=True)
@click.option("--identities", default=50_000, show_default=True)
@click.option("--engine", type=click.Choice(["native", "python"]), default="native", show_default=True)
@click.option("--erase", default=0, show_default=True,
              help="Then time erasing an identity holding values in this many messages.")
def main(url: str, count: int, identities: int, engine: str, erase: int) -> None:
    asyncio.run(_bench(url, count, identities, engine, erase))


if __name__ == "__main__":
    main()
