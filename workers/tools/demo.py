"""`msgstate demo`: the whole pipeline on the local stack, live.

Starts what is missing of the stack, runs state workers, publishes a chat-like workload (a poll,
reactions, favourites, a latest pick over a few hundred messages and identities, and a few bad
records on purpose), follows the summary-change events and rejections as they arrive, says what
the workers accepted and rejected, prints the final tallies and where to look next, and stops
what it started. Every figure it prints after the run is one the run saw: records Kafka
acknowledged, events and rejections read back from their topics, summaries read from Redis.
"""

from __future__ import annotations

import os
import random
import shlex
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import orjson
import redis
from kafka import KafkaConsumer, KafkaProducer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.records import decode_response
from msgstate.schemas.wording import count
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.streams.storage.reader import SummaryReader
from msgstate.workers.config import Settings, Topics, environment, split_host_port
from msgstate.workers.services import probes
from msgstate.workers.tools import stack as local_stack
from msgstate.workers.topics import ensure_topics

MESSAGES = 300
IDENTITIES = 400
RESPONSES = 4000
REACTIONS = ("👍", "❤️", "😂", "🎉", "👀", "🚀")
COLORS = ("red", "green", "blue", "yellow")
BUSIEST = 5


@dataclass(frozen=True, slots=True)
class Bad:
    """A record made bad on purpose, and the rejection reason the workers give it."""

    what: str
    reason: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Workload:
    """The records to publish, in order: the responses, then the bad ones."""

    responses: list[bytes]
    bad: list[Bad]

    @property
    def records(self) -> list[bytes]:
        return self.responses + [b.value for b in self.bad]

    def messages(self) -> Counter[str]:
        """Records per message, busiest first."""
        return Counter(orjson.loads(r)["message_id"] for r in self.responses)

    def identities(self) -> set[str]:
        return {orjson.loads(r)["identity_id"] for r in self.responses}

    def states(self) -> dict[str, str]:
        """State name → type, in the order they first appear."""
        found: dict[str, str] = {}
        for record in self.responses:
            for change in orjson.loads(record)["changes"]:
                found.setdefault(change["name"], change["type"])
        return found


def sample_workload(seed: int = 1) -> Workload:
    """Responses a busy chat room would send (polls, reactions, favourites, a latest pick; a few
    messages get most of them), then a few records made bad on purpose."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(MESSAGES)]
    now = int(time.time() * 1000)
    responses: list[dict[str, Any]] = []
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
        responses.append({
            "id": f"demo-{seed}-{n:06d}", "message_id": f"chat/messages/{message:04d}",
            "identity_id": f"chat/identities/user{user}", "changes": changes,
            "status_text": text, "sent_at": now,
        })
    return Workload([orjson.dumps(r) for r in responses], _bad_records(responses, seed, now))


def _bad_records(responses: list[dict[str, Any]], seed: int, now: int) -> list[Bad]:
    voted = next(r["message_id"] for r in responses if r["changes"][0]["name"] == "poll_choice")
    picked = next(r for r in responses if r["changes"][-1]["name"] == "latest_color")

    def record(n: int, message_id: str, changes: list[dict[str, Any]]) -> bytes:
        return orjson.dumps({"id": f"demo-{seed}-bad-{n}", "message_id": message_id,
                             "identity_id": "chat/identities/mallory", "changes": changes,
                             "sent_at": now})

    return [
        Bad("a line that is not JSON", "malformed", b'{"id": "demo-bad-0", "message_id": '),
        Bad("a response without message_id", "invalid", orjson.dumps(
            {"id": f"demo-{seed}-bad-1", "identity_id": "chat/identities/mallory",
             "changes": [{"operation": "add", "type": "Set", "name": "reactions", "value": "👍"}]})),
        Bad("a remove on an LWW state", "remove_not_allowed", record(
            2, picked["message_id"],
            [{"operation": "remove", "type": "LWW", "name": "latest_color", "value": "red"}])),
        Bad("a poll vote sent as LWW, where poll_choice is FWW", "type_mismatch", record(
            3, voted, [{"operation": "add", "type": "LWW", "name": "poll_choice", "value": "a"}])),
        Bad("a response sent twice", "duplicate", orjson.dumps(picked)),
    ]


def key_of(record: bytes) -> bytes | None:
    """The record's Kafka key, its message id (none for a record without one)."""
    try:
        message_id = orjson.loads(record).get("message_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return message_id.encode() if isinstance(message_id, str) else None


@dataclass(frozen=True, slots=True)
class Expected:
    events: int
    rejections: int
    # Reasons of the rejections of the responses (not of the records bad on purpose).
    of_responses: Counter[str]


def expected_outputs(workload: Workload) -> Expected:
    """What the engine, run here on the same records, produces: the progress bars' totals."""
    engine, store = Engine(), MemoryStore()
    outcome = engine.apply_batch([decode_response(r) for r in workload.records], store)
    of_responses = Counter(r["reason"] for index, r in outcome.rejections
                           if index < len(workload.responses))
    return Expected(len(outcome.events), len(outcome.rejections), of_responses)


def workload_lines(workload: Workload, topic: str, expected: Expected) -> list[str]:
    """What the run is about to publish, counted from the records themselves."""
    messages = workload.messages()
    busiest, most = messages.most_common(1)[0]
    kinds = workload.states()
    states = ", ".join(f"{name} ({kind})" for name, kind in kinds.items())
    lines = [
        f"[bold]Workload[/]: {count(len(workload.records), 'record')} to {escape(topic)}",
        f"  {count(len(workload.responses), 'response')} from "
        f"{count(len(workload.identities()), 'identity', 'identities')} on "
        f"{count(len(messages), 'message')}; the busiest, {busiest}, gets {count(most, 'response')}",
        f"  {count(len(kinds), 'state')} of {count(len(set(kinds.values())), 'type')}: {states}",
        f"  {count(len(workload.bad), 'record')} bad on purpose, each with the reason it will be "
        "rejected for:",
        *(f"    {b.what}: {b.reason}" for b in workload.bad),
        f"  the engine, run here on the same records, expects {count(expected.events, 'summary change')} "
        f"and {count(expected.rejections, 'rejection')}",
    ]
    if expected.of_responses:
        lines[-1] += (f": the {len(workload.bad):,} above, and {_reasons(expected.of_responses)} "
                      "among the responses")
    if expected.of_responses["fww_conflict"]:
        lines.append("    fww_conflict: an identity's second vote in a poll "
                     "(poll_choice is first writer wins)")
    return lines


def _reasons(reasons: Counter[str]) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(reasons.items(),
                                                              key=lambda kv: (-kv[1], kv[0])))


@dataclass
class Seen:
    """What the run read back: summary-change events (by event id) and rejections (by record
    and change: a worker may publish one again after a restart)."""

    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejections: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=8))

    def add_event(self, event: dict[str, Any]) -> None:
        if event["event_id"] not in self.events:
            self.events[event["event_id"]] = event
            self.recent.append(event)

    def add_rejection(self, rejection: dict[str, Any]) -> None:
        key = (rejection.get("partition"), rejection.get("offset"), rejection.get("change_index"))
        self.rejections.setdefault(key, rejection)


def outcome_lines(published: int, seen: Seen) -> list[str]:
    """Accepted, rejected (with the reasons counted) and events, as the run saw them."""
    whole = [r for r in seen.rejections.values() if r.get("change_index") is None]
    partly = {(r.get("partition"), r.get("offset")) for r in seen.rejections.values()
              if r.get("change_index") is not None}
    changes = len(seen.rejections) - len(whole)
    by_reason = _reasons(Counter(r["reason"] for r in seen.rejections.values()))
    changed = {e["message_id"] for e in seen.events.values()}
    accepted = f"  accepted   {count(published - len(whole), 'record')}"
    if changes:
        accepted += f", {len(partly):,} of them with {count(changes, 'change')} rejected"
    return [
        f"[bold]Outcome[/]: what the workers did with the {count(published, 'record')} Kafka "
        "acknowledged",
        accepted,
        f"  rejected   {count(len(whole), 'record')} whole; "
        f"{count(len(seen.rejections), 'rejection')} in all, by reason: {by_reason or 'none'}",
        f"  events     {count(len(seen.events), 'summary change')} on "
        f"{count(len(changed), 'message')}",
    ]


def stack_settings(base: Settings, redis_masters: int, kafka_brokers: int) -> Settings:
    """The settings of the stack the demo runs on: with `redis_masters`, a Redis Cluster from
    MSGSTATE_REDIS's port; with more than one of `kafka_brokers`, that many brokers from
    MSGSTATE_KAFKA's, and topics replicated as `msgstate stack up` would."""
    settings = base.with_(redis_cluster=True) if redis_masters else base
    if kafka_brokers > 1:
        first = split_host_port(base.kafka_servers[0], "MSGSTATE_KAFKA")[1]
        settings = settings.with_(kafka=local_stack.kafka_addresses(first, kafka_brokers),
                                  replication=local_stack.replication_for(kafka_brokers)[0])
    return settings


def next_steps(base: Settings, settings: Settings, busiest: str, replay_file: Path,
               stopped: bool) -> list[str]:
    """The commands that show this run's outputs: its topics and keys have their own prefixes."""
    env = {"MSGSTATE_TOPIC_PREFIX": settings.topics.prefix, "MSGSTATE_KEY_PREFIX": settings.key_prefix}
    default = Settings()
    for name, value, usual in (("MSGSTATE_KAFKA", settings.kafka, default.kafka),
                               ("MSGSTATE_REDIS", settings.redis, default.redis),
                               ("MSGSTATE_REDIS_CLUSTER", str(settings.redis_cluster).lower(),
                                str(default.redis_cluster).lower()),
                               ("MSGSTATE_REPLICATION", str(settings.replication), str(default.replication))):
        if value != usual:
            env[name] = value
    live = f"http://{base.http_host}:{base.http_port}/live?message={quote(busiest, safe='/')}"
    steps = [
        (f"msgstate summary {busiest}", "the busiest message's summary, read from Redis"),
        ("msgstate tail --from-beginning", "the run's changes and rejections, one line each"),
        ("msgstate http", f"the read API; the live page of that message is {live}"),
        (f"msgstate replay {shlex.quote(str(replay_file))}",
         "every summary again, from the records alone (no Kafka, no Redis)"),
    ]
    if stopped:
        up = "msgstate stack up"
        if settings.redis_cluster:
            up += f" --redis-cluster {len(local_stack.cluster_nodes(settings)) // 2 or 3}"
        if len(settings.kafka_servers) > 1:
            up += f" --kafka-brokers {len(settings.kafka_servers)}"
        steps.insert(0, (up, "first: the demo stopped the stack it started (its data stay)"))
    width = max(len(command) for command, _ in steps)
    export = "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    lines = ["[bold]Where to look next[/]: this run's topics and Redis keys have prefixes of their own, so",
             f"  {escape(export)}",
             "then:"]
    for command, what in steps:
        lines.append(f"  {escape(command)}{' ' * (width + 2 - len(command))}[dim]{escape(what)}[/]")
    return lines


@click.command()
@click.option("--workers", "worker_count", default=2, show_default=True, type=click.IntRange(1, 8),
              help="State workers to run; they share the partitions.")
@click.option("--redis-cluster", "redis_masters", type=click.IntRange(3, 16), default=None,
              help="Run on a Redis Cluster of this many masters, each with a replica, from "
                   "MSGSTATE_REDIS's port (started as `msgstate stack up --redis-cluster` would).")
@click.option("--kafka-brokers", "kafka_brokers", type=click.IntRange(1, 5), default=None,
              help="Run on this many Kafka brokers from MSGSTATE_KAFKA's port, topics replicated "
                   "min(M, 3) times (as `msgstate stack up --kafka-brokers` would).")
def demo(worker_count: int, redis_masters: int | None, kafka_brokers: int | None) -> None:
    """Run the pipeline on the local stack with a sample workload, live.

    It says what it publishes (records, messages, identities, states, the records bad on
    purpose), shows the summary changes as they arrive, then what the workers accepted and
    rejected and why, the final tallies of the busiest messages, and the commands that look
    further. It uses the stack that runs, or starts one and stops it at the end.
    """
    console = Console()
    base = stack_settings(Settings.from_env(), redis_masters or 0, kafka_brokers or 0)
    run = f"demo-{int(time.time())}"
    settings = base.with_(topics=Topics(f"{base.topics.prefix}.{run}"), key_prefix=f"{base.key_prefix}-{run}",
                          app_id=f"{base.app_id}-{run}")
    started = not (probes.kafka_answers(settings.kafka) and probes.redis_answers(settings.redis))
    if started:
        console.print("[bold]Starting the local stack[/] (Kafka + Redis)…")
        local_stack.up(settings, echo=lambda line: console.print("  " + line),
                       redis_masters=redis_masters or 0, kafka_brokers=kafka_brokers or 0)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        probes.require_kafka(settings.kafka, options=settings.kafka_security.kafka_python())
        probes.require_redis(settings.redis)
        if settings.redis_cluster:
            _require_cluster(settings)
        ensure_topics(settings)
        logs = settings.stack_dir.resolve() / "demo-logs"
        logs.mkdir(parents=True, exist_ok=True)
        workload = sample_workload()
        replay_file = logs / f"{run}-responses.jsonl"
        replay_file.write_bytes(b"".join(r + b"\n" for r in workload.records))
        expected = expected_outputs(workload)
        _say(console, workload_lines(workload, settings.topics.responses, expected))
        for n in range(worker_count):
            workers.append(_start_worker(settings, logs / f"{run}-worker{n}.log"))
        console.print(f"[bold]{count(worker_count, 'state worker')}[/] started (logs in {logs})")
        published, seen = _publish_and_follow(console, settings, workload.records, expected, workers)
        _say(console, outcome_lines(published, seen))
        busiest = [m for m, _ in workload.messages().most_common(BUSIEST)]
        _print_tallies(console, settings, busiest)
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
    _say(console, next_steps(base, settings, busiest[0], replay_file, stopped=started))


def _require_cluster(settings: Settings) -> None:
    """A single Redis already on the cluster's first port would fail every worker: say so."""
    client = redis.Redis.from_url(settings.redis.split(",")[0], socket_timeout=5)
    try:
        enabled = client.info("cluster").get("cluster_enabled") == 1
    finally:
        client.close()
    if not enabled:
        raise ConfigError(f"{settings.redis.split(',')[0]} is a Redis that is not a cluster: stop it "
                          "(msgstate stack down) or set MSGSTATE_REDIS to another port for the cluster")


def _say(console: Console, lines: Iterable[str]) -> None:
    console.print()
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


def _start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **environment(settings)}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "msgstate.workers", "worker"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _publish_and_follow(console: Console, settings: Settings, records: list[bytes], expected: Expected,
                        workers: list[subprocess.Popen[bytes]]) -> tuple[int, Seen]:
    """Publish the records in steps while reading the events and rejections back; returns how
    many records Kafka acknowledged, and what was read back once every expected output was."""
    producer = KafkaProducer(**settings.kafka_client(), acks="all", linger_ms=5)
    topics = settings.topics
    consumer = KafkaConsumer(topics.summary_changes, topics.rejections, **settings.kafka_client(),
                             auto_offset_reset="earliest", consumer_timeout_ms=200)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    sent_task = progress.add_task("records published      ", total=len(records))
    events_task = progress.add_task("summary changes read   ", total=expected.events)
    rejections_task = progress.add_task("rejections read        ", total=expected.rejections)
    seen = Seen()
    futures = []
    deadline = time.monotonic() + 180

    def show() -> Group:
        progress.update(events_task, completed=len(seen.events))
        progress.update(rejections_task, completed=len(seen.rejections))
        return Group(progress, _recent_table(seen, topics.summary_changes))

    with Live(show(), console=console, refresh_per_second=8) as live:
        for start in range(0, len(records), 100):
            for record in records[start:start + 100]:
                futures.append(producer.send(topics.responses, key=key_of(record), value=record))
            producer.flush()
            progress.update(sent_task, completed=min(start + 100, len(records)))
            _drain(consumer, seen, topics)
            live.update(show())
        while len(seen.events) < expected.events or len(seen.rejections) < expected.rejections:
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise click.ClickException(
                    f"only {len(seen.events):,} of {count(expected.events, 'summary change')} and "
                    f"{len(seen.rejections):,} of {count(expected.rejections, 'rejection')} arrived; "
                    "see the worker logs")
            _drain(consumer, seen, topics)
            live.update(show())
    published = sum(1 for future in futures if future.succeeded())
    producer.close()
    consumer.close()
    return published, seen


def _drain(consumer: KafkaConsumer, seen: Seen, topics: Topics) -> None:
    for message in consumer:
        record = orjson.loads(message.value)
        if message.topic == topics.summary_changes:
            seen.add_event(record)
        else:
            seen.add_rejection(record)


def _recent_table(seen: Seen, topic: str) -> Table:
    table = Table(title="Latest summary changes", expand=True,
                  caption=f"each row is one event of {topic}: one identity's value of a state on a "
                          "message changed; version = how many responses have changed that "
                          "message's summary so far")
    for column in ("message", "identity", "state", "old → new", "version"):
        table.add_column(column)
    for e in seen.recent:
        table.add_row(e["message_id"], e["identity_id"].rsplit("/", 1)[-1], e["name"],
                      f"{orjson.dumps(e['old']).decode()} → {orjson.dumps(e['new']).decode()}",
                      str(e["version"]))
    return table


def _print_tallies(console: Console, settings: Settings, busiest: list[str]) -> None:
    client = settings.redis_client()
    try:
        reader = SummaryReader(client, settings.keys)
        summaries = [reader.get_summary(message_id) for message_id in busiest]
    finally:
        client.close()
    table = Table(title=f"Final tallies of the {count(len(busiest), 'busiest message')}, read from Redis",
                  caption="each row is one state of one message; tally = value × how many identities "
                          "hold it, most held first (at most six shown)")
    for column in ("message", "version", "state", "type", "tally (value × identities)"):
        table.add_column(column)
    for summary in summaries:
        for name, state in sorted(summary["states"].items()):
            tally = ", ".join(f"{t['value']}×{t['count']}" for t in state["tally"][:6])
            table.add_row(summary["message_id"], str(summary["version"]), name, state["type"], tally)
    console.print()
    console.print(table)
