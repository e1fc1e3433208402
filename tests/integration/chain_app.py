"""A minimal faust app for the chain test: consume a partitioned topic, write each record to Redis.

Run as `python -m tests.integration.chain_app worker`; configured by the test's environment.
"""

from __future__ import annotations

import os

import faust
import redis.asyncio as aioredis

PREFIX = os.environ["MSGSTATE_TOPIC_PREFIX"]

DATA = os.path.join(os.environ.get("MSGSTATE_STACK_DIR", ".stack"), "faust")
os.makedirs(DATA, exist_ok=True)
app = faust.App(
    os.environ["MSGSTATE_APP_ID"],
    broker=f"kafka://{os.environ['MSGSTATE_KAFKA']}",
    web_enabled=False,
    topic_partitions=int(os.environ.get("MSGSTATE_PARTITIONS", "4")),
    broker_commit_every=100,
    datadir=os.path.join(DATA, "{conf.name}-data"),
)
topic = app.topic(f"{PREFIX}.chain", key_type=bytes, value_type=bytes,
                  key_serializer="raw", value_serializer="raw")
store = aioredis.from_url(os.environ["MSGSTATE_REDIS"])


@app.agent(topic, concurrency=1)
async def copy_to_redis(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        key = event.key if isinstance(event.key, bytes) else b""
        # One list per record key: the test checks the per-key order survives the trip.
        await store.rpush(f"{PREFIX}:chain:".encode() + key, event.value)


if __name__ == "__main__":
    app.main()
