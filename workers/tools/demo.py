"""`msgstate demo`: the whole pipeline on the local stack, live.

Starts what is missing of the stack, runs two state workers, publishes a chat-like workload
(a poll, reactions, favourites, a latest pick) over a few hundred messages and identities,
follows the summary-change events as they arrive, prints the final tallies, and stops what it
started.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import click
import orjson
import redis
from kafka import KafkaConsumer, KafkaProducer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from msgstate.schemas.records import decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.streams.storage.reader import SummaryReader
from msgstate.workers.config import Settings, Topics
from msgstate.workers.services import probes
from msgstate.workers.tools import stack as local_stack
from msgstate.workers.topics import ensure_topics

MESSAGES = 300
IDENTITIES = 400
RESPONSES = 4000
REACTIONS = ("👍", "❤️", "😂", "🎉", "👀", "🚀")
COLORS = ("red", "green", "blue", "yellow")


def sample_workload(seed: int = 1) -> list[bytes]:
    """Responses a busy chat room would send: polls, reactions, favourites, a latest pick."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(MESSAGES)]
    records = []
    for n in range(RESPONSES):
        message = rng.choices(range(MESSAGES), weights=weights)[0]
        user = rng.randrange(IDENTITIES)
        roll = rng.random()
        if roll < 0.45:
            op = "add" if rng.random() < 0.8 else "remove"
            changes = [{"operation": op, "type": "Set", "name": "reactions",
                        "value": rng.choice(REACTIONS)}]
            text = f"user{user} reacted"
        elif roll < 0.7:
            changes = [{"operation": "add", "type": "FWW", "name": "poll_choice",
                        "value": rng.choice("abcd")}]
            text = f"user{user} voted"
        else:
            color = rng.choice(COLORS)
            op = "add" if rng.random() < 0.85 else "remove"
            changes = [{"operation": op, "type": "Set", "name": "favorite_colors", "value": color},
                       {"operation": "add", "type": "LWW", "name": "latest_color", "value": color}]
            text = f"user{user} picked {color}"
        records.append(orjson.dumps({
            "id": f"demo-{seed}-{n:06d}", "message_id": f"chat/messages/{message:04d}",
            "identity_id": f"chat/identities/user{user}", "changes": changes,
            "status_text": text, "sent_at": int(time.time() * 1000),
        }))
    return records


def expected_events(records: list[bytes]) -> int:
    engine, store = Engine(), MemoryStore()
    outcome = engine.apply_batch([decode_response(r) for r in records], store)
    return len(outcome.events)


@click.command()
@click.option("--workers", "worker_count", default=2, show_default=True, type=click.IntRange(1, 8))
def demo(worker_count: int) -> None:
    """Run the pipeline on the local stack with a sample workload, live."""
    console = Console()
    base = Settings.from_env()
    run = f"demo-{int(time.time())}"
    settings = base.with_(topics=Topics(f"{base.topics.prefix}.{run}"), key_prefix=f"{base.key_prefix}-{run}",
                          app_id=f"{base.app_id}-{run}")
    started = not (probes.kafka_answers(settings.kafka) and probes.redis_answers(settings.redis))
    if started:
        console.print("[bold]Starting the local stack[/] (Kafka + Redis)…")
        local_stack.up(settings, echo=lambda line: console.print("  " + line))
    workers: list[subprocess.Popen[bytes]] = []
    try:
        probes.require_kafka(settings.kafka, options=settings.kafka_security.kafka_python())
        probes.require_redis(settings.redis)
        ensure_topics(settings)
        logs = settings.stack_dir.resolve() / "demo-logs"
        logs.mkdir(parents=True, exist_ok=True)
        for n in range(worker_count):
            workers.append(_start_worker(settings, logs / f"{run}-worker{n}.log"))
        console.print(f"[bold]{worker_count} state workers[/] started (logs in {logs})")
        records = sample_workload()
        want = expected_events(records)
        _publish_and_follow(console, settings, records, want, workers)
        _print_tallies(console, settings)
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if started:
            console.print("[bold]Stopping the local stack[/] it started")
            local_stack.down(settings, echo=lambda line: console.print("  " + line))


def _start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update({"MSGSTATE_KAFKA": settings.kafka, "MSGSTATE_REDIS": settings.redis,
                "MSGSTATE_TOPIC_PREFIX": settings.topics.prefix,
                "MSGSTATE_KEY_PREFIX": settings.key_prefix, "MSGSTATE_APP_ID": settings.app_id,
                "MSGSTATE_PARTITIONS": str(settings.partitions)})
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "msgstate.workers", "worker"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _publish_and_follow(console: Console, settings: Settings, records: list[bytes], want: int,
                        workers: list[subprocess.Popen[bytes]]) -> None:
    producer = KafkaProducer(**settings.kafka_client(), acks="all", linger_ms=5)
    consumer = KafkaConsumer(settings.topics.summary_changes, **settings.kafka_client(),
                             auto_offset_reset="earliest", consumer_timeout_ms=200)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    sent_task = progress.add_task("published responses", total=len(records))
    seen_task = progress.add_task("summary changes    ", total=want)
    recent: deque[dict[str, Any]] = deque(maxlen=8)
    seen: set[str] = set()
    deadline = time.monotonic() + 180
    with Live(Group(progress, _recent_table(recent)), console=console, refresh_per_second=8) as live:
        for start in range(0, len(records), 100):
            for record in records[start:start + 100]:
                message_id = orjson.loads(record)["message_id"].encode()
                producer.send(settings.topics.responses, key=message_id, value=record)
            producer.flush()
            progress.update(sent_task, completed=min(start + 100, len(records)))
            _drain(consumer, seen, recent)
            progress.update(seen_task, completed=len(seen))
            live.update(Group(progress, _recent_table(recent)))
        while len(seen) < want:
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise click.ClickException(f"only {len(seen)} of {want} changes arrived; "
                                           "see the worker logs")
            _drain(consumer, seen, recent)
            progress.update(seen_task, completed=len(seen))
            live.update(Group(progress, _recent_table(recent)))
    producer.close()
    consumer.close()


def _drain(consumer: KafkaConsumer, seen: set[str], recent: deque[dict[str, Any]]) -> None:
    for message in consumer:
        event = orjson.loads(message.value)
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            recent.append(event)


def _recent_table(recent: deque[dict[str, Any]]) -> Table:
    table = Table(title="latest summary changes", expand=True)
    for column in ("message", "who", "state", "old → new", "v"):
        table.add_column(column)
    for e in recent:
        table.add_row(e["message_id"], e["identity_id"].rsplit("/", 1)[-1], e["name"],
                      f"{orjson.dumps(e['old']).decode()} → {orjson.dumps(e['new']).decode()}",
                      str(e["version"]))
    return table


def _print_tallies(console: Console, settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis)
    reader = SummaryReader(client, settings.key_prefix)
    summaries = [reader.get_summary(f"chat/messages/{m:04d}") for m in range(5)]
    table = Table(title="final tallies of the five busiest messages")
    for column in ("message", "version", "state", "type", "tally (value × identities)"):
        table.add_column(column)
    for summary in summaries:
        for name, state in sorted(summary["states"].items()):
            tally = ", ".join(f"{t['value']}×{t['count']}" for t in state["tally"][:6])
            table.add_row(summary["message_id"], str(summary["version"]), name, state["type"], tally)
    console.print(table)
    client.close()
