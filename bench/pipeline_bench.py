"""End-to-end pipeline benchmark on the local stack.

    python -m bench.pipeline_bench [--responses 20000] [--rate 500] [--seconds 10]

Runs one state worker on fresh topics and measures, in one run:
- throughput: responses/s from the first produce to the last summary-change event, publishing
  as fast as possible;
- latency from produce to event (p50, p95, p99, max) at a fixed offered load (--rate), from the
  Kafka timestamps of each response and of its events;
- the baseline: a bare kafka-python consumer that only reads and decodes the same topic.
Uses the stack at MSGSTATE_KAFKA / MSGSTATE_REDIS, starting it when nothing answers there.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import click
import orjson
from kafka import KafkaConsumer, KafkaProducer
from rich.console import Console
from rich.table import Table

from msgstate.workers.cli.publish import record_key
from msgstate.workers.config import Settings, Topics
from msgstate.workers.services import probes
from msgstate.workers.tools import stack as local_stack
from msgstate.workers.tools.workload import responses
from msgstate.workers.topics import ensure_topics


def _settings(base: Settings, tag: str) -> Settings:
    return base.with_(topics=Topics(f"bench-{tag}"), key_prefix=f"bench-{tag}", app_id=f"bench-{tag}")


def _worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update({"MSGSTATE_KAFKA": settings.kafka, "MSGSTATE_REDIS": settings.redis,
                "MSGSTATE_TOPIC_PREFIX": settings.topics.prefix, "MSGSTATE_APP_ID": settings.app_id,
                "MSGSTATE_KEY_PREFIX": settings.key_prefix, "MSGSTATE_PARTITIONS": str(settings.partitions)})
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "msgstate.workers", "worker"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def _publish(settings: Settings, records: list[bytes], rate: float | None) -> dict[str, int]:
    """Publish; returns response id -> produce timestamp (ms) of the record."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all", linger_ms=2,
                             batch_size=256 * 1024)
    futures = []
    start = time.monotonic()
    for n, record in enumerate(records):
        if rate:
            wait = start + n / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        futures.append((record, producer.send(settings.topics.responses, key=record_key(record),
                                              value=record)))
    producer.flush()
    stamps = {}
    for record, future in futures:
        meta = future.get(timeout=60)
        stamps[orjson.loads(record)["id"]] = meta.timestamp
    producer.close()
    return stamps


def _events(settings: Settings, want: int, timeout: float) -> list[tuple[str, int]]:
    """(response id, event timestamp ms) of the first `want` distinct events."""
    consumer = KafkaConsumer(settings.topics.summary_changes, bootstrap_servers=settings.kafka_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=500)
    seen: dict[str, tuple[str, int]] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline:
        for message in consumer:
            event = orjson.loads(message.value)
            seen.setdefault(event["event_id"], (event["response_id"], message.timestamp))
            if len(seen) >= want:
                break
    consumer.close()
    return list(seen.values())


def _bare_consume(settings: Settings, count: int) -> float:
    """Seconds a bare consumer takes to read and decode `count` records of the topic."""
    consumer = KafkaConsumer(settings.topics.responses, bootstrap_servers=settings.kafka_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=2000,
                             group_id=f"bare-{uuid.uuid4().hex[:6]}", max_poll_records=2000)
    start = time.monotonic()
    for got, message in enumerate(consumer, start=1):
        with contextlib.suppress(orjson.JSONDecodeError):
            orjson.loads(message.value)
        if got >= count:
            break
    elapsed = time.monotonic() - start
    consumer.close()
    return elapsed


def _expected_events(records: list[bytes]) -> int:
    from msgstate.schemas.records import decode_response
    from msgstate.streams.engine.engine import Engine
    from msgstate.streams.engine.memory_store import MemoryStore

    return len(Engine().apply_batch([decode_response(r) for r in records], MemoryStore()).events)


def _percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


@click.command()
@click.option("--responses", "count", default=20_000, show_default=True)
@click.option("--rate", default=500.0, show_default=True, help="Offered load for the latency run.")
@click.option("--seconds", default=10.0, show_default=True, help="Length of the latency run.")
def main(count: int, rate: float, seconds: float) -> None:
    console = Console()
    base = Settings.from_env()
    started = not (probes.kafka_answers(base.kafka) and probes.redis_answers(base.redis))
    if started:
        local_stack.up(base, echo=console.print)
    logs = base.stack_dir.resolve() / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        # Throughput: as fast as possible.
        tag = uuid.uuid4().hex[:6]
        settings = _settings(base, tag)
        ensure_topics(settings)
        records = list(responses(count, bad_share=0.0, seed=3))
        want = _expected_events(records)
        worker = _worker(settings, logs / f"{tag}.log")
        # Let the worker join before the clock starts: a tiny warm-up batch.
        _publish(settings, list(responses(20, bad_share=0.0, seed=99)), None)
        _events(settings, 1, 120)
        warm = _expected_events(list(responses(20, bad_share=0.0, seed=99)))
        t0 = time.monotonic()
        _publish(settings, records, None)
        got = _events(settings, want + warm, 600)
        elapsed = time.monotonic() - t0
        worker.terminate()
        worker.wait(timeout=30)
        bare = _bare_consume(settings, count + 20)
        rows.append(("throughput (1 worker, as fast as possible)", f"{count / elapsed:,.0f} responses/s",
                     f"{len(got) - warm:,} events in {elapsed:.1f} s"))
        rows.append(("bare consumer, read + decode only", f"{count / bare:,.0f} responses/s",
                     f"pipeline at {bare / elapsed:.0%} of it"))

        # Latency at a fixed offered load.
        tag = uuid.uuid4().hex[:6]
        settings = _settings(base, tag)
        ensure_topics(settings)
        worker = _worker(settings, logs / f"{tag}.log")
        _publish(settings, list(responses(20, bad_share=0.0, seed=98)), None)
        _events(settings, 1, 120)
        n = int(rate * seconds)
        records = list(responses(n, bad_share=0.0, seed=5))
        stamps = _publish(settings, records, rate)
        got = _events(settings, _expected_events(records), 300)
        worker.terminate()
        worker.wait(timeout=30)
        latencies = [float(ts - stamps[rid]) for rid, ts in got if rid in stamps]
        rows.append((f"latency produce→event at {rate:,.0f} responses/s",
                     f"p50 {_percentile(latencies, 50):.0f} ms, p95 {_percentile(latencies, 95):.0f} ms",
                     f"p99 {_percentile(latencies, 99):.0f} ms, max {max(latencies):.0f} ms "
                     f"({len(latencies):,} events)"))
    finally:
        if started:
            local_stack.down(base, echo=console.print)
    table = Table(title="msgstate pipeline benchmark")
    for column in ("measure", "figure", "detail"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
