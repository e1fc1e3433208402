"""What the state changelog costs and what it buys, on a private local stack.

    python -m msgstate.bench.changelog_bench [--responses 30000] [--pairs 3]

- A state worker's throughput draining a backlog with the changelog on and off, alternated
  (on, off, on, off, ...) on fresh topics holding the same records: responses/s from its first
  applied record to its last (group join and start-up left out), read from the fences; and the
  CPU per response, over the same span, of the worker, Redis and the broker. Each drain
  starts from the same empty stack: the topics and keys of the one before are gone.
- The changelog's bytes per live value: what compaction keeps (the latest record of each key,
  tombstones dropped), and what the worker wrote, over the live value fields.
- `msgstate rebuild`'s read and restore of that changelog into empty keys, and of a synthetic
  changelog of `--rebuild-values` live values (100 identities a part, two states each, one part
  a message, 12 partitions): seconds, values/s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click
import orjson
from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from msgstate.bench.kafka_io import delete_topics, publish, scan
from msgstate.bench.procs import cpu_of, stack_pids
from msgstate.workers.config import Settings, Topics, environment
from msgstate.workers.tools.rebuild import read_changelog, restore
from msgstate.workers.tools.stack import private_stack
from msgstate.workers.tools.workload import responses
from msgstate.workers.topics import ensure_topics

POLL_SECONDS = 0.05


def fresh(settings: Settings) -> Settings:
    tag = f"cl{uuid.uuid4().hex[:8]}"
    return settings.with_(topics=Topics(tag), key_prefix=tag, app_id=tag)


@dataclass
class Drain:
    rate: float  # responses/s
    cpu: dict[str, float]  # process -> µs of CPU per response


def clean(settings: Settings) -> None:
    """Leave the private stack as a drain found it: the drain's topics deleted, Redis emptied and
    its append-only file rewritten, so that no drain pays for the data of those before it."""
    delete_topics(settings, settings.topics.prefix)
    redis = settings.redis_client()
    try:
        redis.flushall()
        redis.bgrewriteaof()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            persistence = redis.info("persistence")
            if not (persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"]):
                return
            time.sleep(POLL_SECONDS)
        raise RuntimeError("Redis did not rewrite its append-only file in 60 s")
    finally:
        redis.close()


def drain(settings: Settings, records: list[bytes], changelog: bool, log: Path) -> Drain:
    """One worker through a backlog of `records` on fresh topics."""
    ensure_topics(settings)
    sent = publish(settings, records)
    last = {p: n - 1 for p, n in sent.per_partition.items()}
    total = sum(sent.per_partition.values())
    env = {**os.environ, **environment(settings), "MSGSTATE_CHANGELOG": str(changelog).lower()}
    redis = settings.redis_client()
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "msgstate.workers", "worker"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    pids = {"worker": worker.pid, **stack_pids(settings)}

    def cpu() -> dict[str, float]:
        return {name: cpu_of(pid) for name, pid in pids.items()}

    try:
        first: tuple[float, int, dict[str, float]] | None = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            fences = {p: int(redis.hget(settings.keys.fence(p), "offset") or -1) for p in last}
            applied = sum(f + 1 for f in fences.values())
            now = time.monotonic()
            if first is None and applied:
                first = (now, applied, cpu())
            if all(fences[p] >= o for p, o in last.items()):
                assert first is not None
                done = total - first[1]
                spent = {name: 1e6 * (seconds - first[2][name]) / done
                         for name, seconds in cpu().items()}
                return Drain(done / max(now - first[0], 1e-9), spent)
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited ({worker.returncode}); see {log}")
            time.sleep(POLL_SECONDS)
        raise RuntimeError(f"the backlog was not drained in 600 s; see {log}")
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        redis.close()


def changelog_bytes(settings: Settings) -> tuple[int, int, int]:
    """(bytes compaction keeps, bytes written, live value fields) of the changelog."""
    latest: dict[bytes, int] = {}
    written = 0
    for key, value, _ in scan(settings, settings.topics.state):
        size = len(key or b"") + len(value or b"")
        written += size
        if value is None:
            latest.pop(key or b"", None)
        else:
            latest[key or b""] = size
    values = sum(1 for key in latest if orjson.loads(key)[1:2] == ["vals"])
    return sum(latest.values()), written, values


def synthetic_changelog(settings: Settings, values: int) -> None:
    """A changelog of `values` live values, as workers would have left it."""
    ensure_topics(settings, [settings.topics.state])
    producer = Producer({"bootstrap.servers": settings.kafka, "linger.ms": 50,
                         "queue.buffering.max.messages": 1_000_000, "log_level": 3})
    topic, partitions = settings.topics.state, settings.partitions

    def send(p: int, key: list[object], value: bytes) -> None:
        while True:
            try:
                producer.produce(topic, value, orjson.dumps([p, *key]), partition=p)
                return
            except BufferError:
                producer.poll(0.1)

    for n in range(values // 200 + 1):
        message = f"layer:///messages/{n:08x}"
        p = n % partitions
        send(p, ["meta", message, "root", "v"], b"200")
        send(p, ["meta", message, "root", "t:rsvp"], b"LWWN")
        send(p, ["meta", message, "root", "t:reactions"], b"Set")
        for i in range(min(100, (values - n * 200 + 1) // 2)):
            who = f"layer:///identities/u{i}"
            send(p, ["vals", message, "root", f"rsvp\0{who}"], b'"yes"')
            send(p, ["vals", message, "root", f"reactions\0{who}"], '["👍","🎉"]'.encode())
            send(p, ["ids", message, "", f"r-{n}-{i}"], orjson.dumps([i, f"r-{n}-{i}"]))
    for p in range(partitions):
        send(p, [], b"%d" % (values // 200))
    producer.flush(120)


def timed_rebuild(settings: Settings) -> tuple[float, float, int]:
    """(seconds to read and restore, of which reading, values restored)."""
    started = time.monotonic()
    state, first_kept = read_changelog(settings, lambda _done, _total: None)
    read_s = time.monotonic() - started
    outcome = restore(settings, state, first_kept, lambda _done, _total: None)
    return time.monotonic() - started, read_s, outcome.values


@click.command()
@click.option("--responses", "count", default=30_000, show_default=True, help="Responses per drain.")
@click.option("--pairs", default=3, show_default=True, type=click.IntRange(min=1),
              help="Drains with the changelog on and off, each.")
@click.option("--messages", default=2_000, show_default=True, help="Distinct messages of the workload.")
@click.option("--rebuild-values", default=1_000_000, show_default=True,
              help="Live values of the synthetic changelog rebuilt (0: none).")
def main(count: int, pairs: int, messages: int, rebuild_values: int) -> None:
    console = Console()
    records = list(responses(count, messages=messages, bad_share=0.02, seed=11))
    logs = Path(tempfile.mkdtemp(prefix="changelog-bench-"))
    with private_stack(Settings.from_env(), partitions=12) as stack:
        drains: dict[bool, list[Drain]] = {True: [], False: []}
        for n in range(pairs):
            for on in (True, False):
                settings = fresh(stack)
                result = drain(settings, records, on, logs / f"{n}-{on}.log")
                drains[on].append(result)
                console.print(f"drain {n + 1} changelog {'on ' if on else 'off'}: "
                              f"{result.rate:,.0f} responses/s, CPU per response "
                              + ", ".join(f"{name} {us:.1f} µs" for name, us in result.cpu.items()))
                if on and n == pairs - 1:
                    kept, written, values = changelog_bytes(settings)
                    rebuild_s, read_s, restored = timed_rebuild(
                        settings.with_(key_prefix=settings.key_prefix + "r"))
                clean(settings)
        big: tuple[float, float, int] | None = None
        if rebuild_values:
            synthetic = fresh(stack)
            synthetic_changelog(synthetic, rebuild_values)
            big = timed_rebuild(synthetic)
    rates = {state: [d.rate for d in drains[state]] for state in drains}
    rate_on, rate_off = statistics.median(rates[True]), statistics.median(rates[False])
    paired = [a / b for a, b in zip(rates[True], rates[False], strict=True)]
    table = Table(title=f"state changelog: {count:,} responses over {messages:,} messages, 12 partitions")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("worker, changelog off (median)", f"{rate_off:,.0f} responses/s")
    table.add_row("worker, changelog on (median)", f"{rate_on:,.0f} responses/s")
    table.add_row("on / off", f"{rate_on / rate_off:.1%} (pair by pair, median "
                  f"{statistics.median(paired):.1%}: " + ", ".join(f"{r:.0%}" for r in paired) + ")")
    for name in drains[True][0].cpu:
        cpu_on = statistics.median([d.cpu[name] for d in drains[True]])
        cpu_off = statistics.median([d.cpu[name] for d in drains[False]])
        table.add_row(f"CPU per response, {name} (on, off)", f"{cpu_on:.1f} µs, {cpu_off:.1f} µs")
    table.add_row("drains on", ", ".join(f"{r:,.0f}" for r in rates[True]))
    table.add_row("drains off", ", ".join(f"{r:,.0f}" for r in rates[False]))
    table.add_row("live value fields", f"{values:,}")
    table.add_row("changelog kept by compaction", f"{kept:,} B: {kept / max(values, 1):.0f} B per live value")
    table.add_row("changelog written", f"{written:,} B: {written / max(values, 1):.0f} B per live value")
    table.add_row("rebuild of that changelog", f"{restored:,} values in {rebuild_s:.1f} s "
                  f"(read {read_s:.1f} s)")
    if big is not None:
        table.add_row("rebuild of a synthetic changelog", f"{big[2]:,} values in {big[0]:.1f} s "
                      f"(read {big[1]:.1f} s), {big[2] / big[0]:,.0f} values/s")
    console.print(table)


if __name__ == "__main__":
    main()
