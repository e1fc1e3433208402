"""Worker drain benchmark and profiling driver.

    python -m bench.profile_worker [--responses 20000] [--hot 0.0] [--py-spy out.svg]

Publishes a backlog to fresh topics first, then times, in one run:
- one state worker draining it (first record applied → every partition's fence at its end),
  with nothing else competing for the CPU;
- a bare aiokafka consumer that only reads and decodes the same records (the ceiling);
- a naive faust agent that loads and writes Redis once per record (the floor), unless
  --no-naive;
- decode + engine + event encoding alone, in this process (what no worker can beat).
With --py-spy, the worker runs under `py-spy record` and the flame graph goes to the file.
With --hot 0.1, a tenth of all records go to one message id.
Uses the stack at MSGSTATE_KAFKA / MSGSTATE_REDIS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click
import orjson
import psutil
import redis
from kafka import KafkaProducer

from streams.storage.layout import Keys
from workers.cli.publish import record_key
from workers.config import Settings, Topics
from workers.tools.workload import responses
from workers.topics import ensure_topics


def _settings(base: Settings, tag: str) -> Settings:
    return base.with_(topics=Topics(f"prof-{tag}"), key_prefix=f"prof-{tag}", app_id=f"prof-{tag}")


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MSGSTATE_KAFKA": settings.kafka, "MSGSTATE_REDIS": settings.redis,
                "MSGSTATE_TOPIC_PREFIX": settings.topics.prefix, "MSGSTATE_APP_ID": settings.app_id,
                "MSGSTATE_KEY_PREFIX": settings.key_prefix,
                "MSGSTATE_PARTITIONS": str(settings.partitions)})
    return env


def _records(count: int, hot: float) -> list[bytes]:
    records = list(responses(count, bad_share=0.0, seed=3))
    if hot > 0:
        every = round(1 / hot)
        for i in range(0, len(records), every):
            record = orjson.loads(records[i])
            record["message_id"] = "layer:///messages/hot"
            records[i] = orjson.dumps(record)
    return records


def _publish(settings: Settings, records: list[bytes]) -> dict[int, int]:
    """Publish; returns the last offset per partition."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all", linger_ms=5,
                             batch_size=256 * 1024)
    futures = [producer.send(settings.topics.responses, key=record_key(r), value=r) for r in records]
    producer.flush()
    last: dict[int, int] = {}
    for future in futures:
        meta = future.get(timeout=60)
        last[meta.partition] = max(last.get(meta.partition, -1), meta.offset)
    producer.close()
    return last


def _fences(client: redis.Redis, settings: Settings, partitions: list[int]) -> dict[int, int]:
    keys = Keys(settings.key_prefix)
    pipe = client.pipeline(transaction=False)
    for p in partitions:
        pipe.hget(keys.fence(settings.topics.responses, p), "offset")
    return {p: int(v or -1) for p, v in zip(partitions, pipe.execute(), strict=True)}


def _drain(settings: Settings, last: dict[int, int], argv: list[str], log: Path,
           timeout: float = 600) -> tuple[float, float]:
    """Seconds from the first applied record to every fence at its partition's end, and the
    CPU seconds the worker spent meanwhile (less sensitive to a busy machine than the wall
    clock)."""
    client = redis.Redis.from_url(settings.redis)
    parts = sorted(last)
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=_env(settings), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        start = None
        cpu_start = 0.0
        while time.monotonic() < deadline:
            fences = _fences(client, settings, parts)
            if start is None and any(v >= 0 for v in fences.values()):
                start = time.monotonic()
                cpu_start = _cpu(proc.pid)
            if all(fences[p] >= o for p, o in last.items()):
                assert start is not None
                return time.monotonic() - start, _cpu(proc.pid) - cpu_start
            if proc.poll() is not None:
                raise SystemExit(f"worker exited {proc.returncode}; see {log}")
            time.sleep(0.01)
        raise SystemExit(f"not drained in {timeout} s; see {log}")
    finally:
        # SIGINT: py-spy writes its profile on it, and the worker stops on it as on SIGTERM.
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        client.close()


def _cpu(pid: int) -> float:
    """User and system CPU seconds of the process and its children (py-spy runs the worker as one)."""
    process = psutil.Process(pid)
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


async def _bare_aiokafka(settings: Settings, count: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(settings.topics.responses, bootstrap_servers=settings.kafka,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=f"bare-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    got = 0
    start = None
    try:
        while got < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            if start is None and batches:
                start = time.monotonic()
            for messages in batches.values():
                for message in messages:
                    orjson.loads(message.value)
                got += len(messages)
    finally:
        await consumer.stop()
    assert start is not None
    return time.monotonic() - start


def _run_naive_worker() -> None:
    """One record at a time: load from Redis, decide, write, produce and await, then the next."""
    import faust
    import redis.asyncio as aioredis

    from schemas.records import decode_response
    from streams.engine.engine import Engine
    from streams.storage.round_store import RedisStateStore

    settings = Settings.from_env()
    app = faust.App(settings.app_id, broker=f"kafka://{settings.kafka}", web_enabled=False,
                    consumer_auto_offset_reset="earliest", topic_partitions=settings.partitions,
                    datadir=str(settings.stack_dir / "faust" / "{conf.name}-data"))
    topic = app.topic(settings.topics.responses, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    engine = Engine()
    store = RedisStateStore(aioredis.from_url(settings.redis), Keys(settings.key_prefix))

    @app.agent(topic, concurrency=1, isolated_partitions=True)
    async def naive(stream: Any) -> None:
        assignment = None
        async for event in stream.events():
            tp = event.message.tp
            if assignment is None:
                assignment = await store.take(tp.topic, tp.partition)
            items = [decode_response(event.value)]
            snapshot = await store.load(engine.needs(items))
            outcome = engine.apply_batch(items, snapshot)
            offset = event.message.offset
            await store.persist(assignment, offset, offset, outcome.delta, snapshot, [], {})
            for e in outcome.events:
                await (await app.producer.send(settings.topics.summary_changes,
                                               e["message_id"].encode(), orjson.dumps(e),
                                               None, None, None))

    faust.Worker(app, loglevel="warn", quiet=True).execute_from_commandline()


def _compute_only(records: list[bytes]) -> float:
    """Seconds the pure part takes in this process: decode, engine, event encoding."""
    from schemas.codec import dumps
    from schemas.records import decode_response
    from streams.engine.engine import Engine
    from streams.engine.memory_store import MemoryStore

    start = time.monotonic()
    engine, store = Engine(), MemoryStore()
    for at in range(0, len(records), 500):
        outcome = engine.apply_batch([decode_response(r) for r in records[at:at + 500]], store)
        store.apply(outcome.delta)
        for event in outcome.events:
            dumps(event)
    return time.monotonic() - start


@click.command()
@click.option("--run-naive-worker", is_flag=True, hidden=True)
@click.option("--responses", "count", default=20_000, show_default=True)
@click.option("--hot", default=0.0, show_default=True, help="Share of records on one message id.")
@click.option("--py-spy", "flame", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--naive/--no-naive", default=True, show_default=True)
def main(run_naive_worker: bool, count: int, hot: float, flame: Path | None, naive: bool) -> None:
    if run_naive_worker:
        sys.argv[1:] = ["worker"]
        _run_naive_worker()
        return
    base = Settings.from_env()
    logs = base.stack_dir.resolve() / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    records = _records(count, hot)
    rows: list[tuple[str, float]] = []
    cpu: dict[str, float] = {}

    settings = _settings(base, uuid.uuid4().hex[:6])
    ensure_topics(settings)
    last = _publish(settings, records)
    argv = [sys.executable, "-m", "workers", "worker"]
    if flame is not None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        fmt = "raw" if flame.suffix == ".txt" else "flamegraph"  # raw: collapsed stacks
        argv = [spy, "record", "-o", str(flame), "-f", fmt, "-r", "100", "--", *argv]
    seconds, cpu["worker drain"] = _drain(settings, last, argv, logs / "prof-worker.log")
    rows.append(("worker drain", seconds))
    # The ceiling is short to measure, so noisy: the median of three reads.
    bare = sorted(asyncio.run(_bare_aiokafka(settings, count)) for _ in range(3))[1]
    rows.append(("bare aiokafka read+decode", bare))
    if naive:
        settings = _settings(base, uuid.uuid4().hex[:6])
        ensure_topics(settings)
        last = _publish(settings, records)
        argv = [sys.executable, "-m", "bench.profile_worker", "--run-naive-worker"]
        seconds, cpu["naive per-record agent"] = _drain(settings, last, argv, logs / "prof-naive.log")
        rows.append(("naive per-record agent", seconds))
    rows.append(("decode+engine+encode, no I/O", _compute_only(records)))
    ceiling = count / rows[1][1]
    for name, seconds in rows:
        rate = count / seconds
        used = f"  {1000 * cpu[name] / count:6.3f} CPU s per 1k" if name in cpu else ""
        print(f"{name:28s} {rate:9,.0f} responses/s  {seconds:7.2f} s  {rate / ceiling:6.1%} of bare{used}")


if __name__ == "__main__":
    main()
