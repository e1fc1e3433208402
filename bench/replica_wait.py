"""What waiting for a replica after each round costs, on a cluster stack of its own.

    python -m msgstate.bench.replica_wait [--pairs 3] [--responses 10000] [--rate 300] [--seconds 10]

Starts three Redis masters with a replica each and `--brokers` Kafka brokers (replication 3 and
min.insync.replicas 2 with three), then runs one state worker per turn on fresh topics, turns
alternating without and with MSGSTATE_REDIS_WAIT_REPLICAS=1, and measures in each:
- throughput: a backlog of --responses drained, from the first response's append to the last
  event's (broker timestamps, LogAppendTime);
- produce→event latency at --rate responses/s for --seconds (append to append);
- the worker's time in the rounds' persist step (the script, and the wait), per 1,000 responses,
  from its /metrics.
Prints each turn, then the medians of each setting. Then, without Kafka, the round trip of the
persist step alone: --probe-rounds rounds of 20 responses of one partition, each persisted by a
store that waits and one that does not, in turn.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import orjson
from prometheus_client.parser import text_string_to_metric_families

from msgstate.bench import kafka_io
from msgstate.bench.runner import percentile
from msgstate.schemas.records import decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.streams.rounds.compiled_decider import CompiledDecider
from msgstate.streams.rounds.outbox import EVENT, OutRecord, pack_outbox
from msgstate.streams.storage.protocol import PartitionWrite
from msgstate.streams.storage.redis_round_store import RedisRoundStore, ReplicaWait
from msgstate.workers.config import Settings, Topics, environment
from msgstate.workers.tools import stack
from msgstate.workers.tools.workload import responses


def _expected_events(records: list[bytes]) -> int:
    return len(Engine().apply_batch([decode_response(r) for r in records], MemoryStore()).events)


def _await_events(counter: kafka_io.Counter, want: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while counter.total() < want:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {counter.total()} of {want} events after {timeout:.0f} s")
        time.sleep(0.2)


def _persist_seconds(metrics_port: int) -> float:
    """The worker's seconds in the persist step so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "msgstate_worker_redis_seconds_sum" and sample.labels["step"] == "persist")


@contextmanager
def _worker(settings: Settings, replicas: int, metrics_port: int, log: Path) -> Iterator[None]:
    env = {**os.environ, **environment(settings), "MSGSTATE_REDIS_WAIT_REPLICAS": str(replicas),
           "MSGSTATE_METRICS_PORT": str(metrics_port), "MSGSTATE_METRICS_HOST": "127.0.0.1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "msgstate.workers", "worker", "-l", "warn"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def turn(base: Settings, replicas: int, count: int, rate: float, seconds: float, logs: Path
         ) -> tuple[float, float, float, float]:
    """One worker's throughput (responses/s), p50 and p99 produce→event (ms), and persist time
    per 1,000 responses (ms)."""
    tag = f"rw{uuid.uuid4().hex[:8]}"
    settings = base.with_(topics=Topics(tag), key_prefix=tag, app_id=tag)
    kafka_io.create_topics(settings)
    counter = kafka_io.Counter(settings, settings.topics.summary_changes)
    try:
        metrics_port = stack.free_port_pair()
        with _worker(settings, replicas, metrics_port, logs / f"{tag}-wait{replicas}.log"):
            warm = list(responses(50, bad_share=0.0, seed=99))
            kafka_io.publish(settings, warm)
            seen = _expected_events(warm)
            _await_events(counter, seen)
            backlog = list(responses(count, bad_share=0.0, seed=3))
            since = counter.ends()
            sent = kafka_io.publish(settings, backlog)
            seen += _expected_events(backlog)
            _await_events(counter, seen)
            stamps = [stamp for _, stamp in kafka_io.events(settings, since).values()]
            throughput = count / ((max(stamps) - min(sent.appended.values())) / 1000)
            paced = list(responses(int(rate * seconds), bad_share=0.0, seed=5))
            since = counter.ends()
            sent = kafka_io.publish(settings, paced, rate)
            _await_events(counter, seen + _expected_events(paced))
            latencies = [float(stamp - sent.appended[which])
                         for which, stamp in kafka_io.events(settings, since).values()
                         if which in sent.appended]
            persist = _persist_seconds(metrics_port) * 1000 / (len(warm) + count + len(paced)) * 1000
    finally:
        counter.close()
    return throughput, percentile(latencies, 50), percentile(latencies, 99), persist


async def persist_probe(base: Settings, rounds: int, size: int = 20) -> dict[int, list[float]]:
    """Replicas waited for -> the persist step's round trip of each round, ms."""
    client = base.async_redis_client()
    tag = f"rp{uuid.uuid4().hex[:8]}"
    keys = base.with_(key_prefix=tag).keys
    records = [r for r in responses(rounds * size * 20, bad_share=0.0, seed=11)
               if keys.partition_of(orjson.loads(r)["message_id"]) == 0][:rounds * size]
    home = {orjson.loads(r)["message_id"].encode(): 0 for r in records}
    stores = {n: RedisRoundStore(client, base.with_(key_prefix=f"{tag}-{n}").keys, ReplicaWait(n))
              for n in (0, 1)}
    deciders = {n: CompiledDecider() for n in stores}
    assignments = {n: await store.take(0) for n, store in stores.items()}
    times: dict[int, list[float]] = {n: [] for n in stores}
    try:
        for start in range(0, len(records), size):
            batch = records[start:start + size]
            # Which goes first alternates: neither always finds the replica link idle.
            for n in (0, 1) if start // size % 2 else (1, 0):
                decider = deciders[n]
                read = decider.decide(batch)
                while read is not None:
                    read = decider.load(await stores[n].read(read, home))
                decision = decider.apply()
                write = PartitionWrite(assignments[n], start, start + len(batch) - 1,
                                       pack_outbox(OutRecord(EVENT, k, v) for k, v in decision.events))
                began = time.perf_counter()
                await stores[n].persist([write], decision.writes, home)
                times[n].append((time.perf_counter() - began) * 1000)
                decider.commit()
    finally:
        await client.aclose()
    return times


@click.command()
@click.option("--pairs", default=3, show_default=True, help="Turns of each setting, alternated.")
@click.option("--responses", "count", default=10_000, show_default=True, help="Backlog drained per turn.")
@click.option("--rate", default=300.0, show_default=True, help="Offered load of the latency phase.")
@click.option("--seconds", default=10.0, show_default=True, help="Length of the latency phase.")
@click.option("--brokers", default=3, show_default=True, help="Kafka brokers of the stack (1 or 3).")
@click.option("--probe-rounds", default=2000, show_default=True, help="Rounds of the persist probe.")
def main(pairs: int, count: int, rate: float, seconds: float, brokers: int, probe_rounds: int) -> None:
    base = Settings.from_env()
    logs = base.stack_dir.resolve() / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[int, list[tuple[float, float, float, float]]] = {0: [], 1: []}
    with stack.private_stack(base, partitions=12, redis_masters=3, kafka_brokers=brokers) as cluster:
        for _ in range(pairs):
            for replicas in (0, 1):
                figures = turn(cluster, replicas, count, rate, seconds, logs)
                results[replicas].append(figures)
                print(f"wait for {replicas} replica(s): {_line(*figures)}", flush=True)
        probed = asyncio.run(persist_probe(cluster, probe_rounds))
    for replicas, runs in results.items():
        if not runs:
            continue
        medians = (statistics.median(column) for column in zip(*runs, strict=True))
        print(f"median, wait for {replicas} replica(s): {_line(*medians)} ({len(runs)} turns)")
    for replicas, times in probed.items():
        print(f"persist probe, wait for {replicas} replica(s): {len(times):,} rounds of 20 responses, "
              f"p50 {percentile(times, 50):.2f} ms, p99 {percentile(times, 99):.2f} ms, "
              f"mean {statistics.mean(times):.2f} ms")


def _line(throughput: float, p50: float, p99: float, persist: float) -> str:
    return (f"{throughput:,.0f} responses/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
            f"persist {persist:.0f} ms per 1,000 responses")


if __name__ == "__main__":
    main()
