"""`msgstate tail`: follow summary changes and rejections live, optionally for one message."""

from __future__ import annotations

import logging
from typing import Any

import click
import orjson
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape

from msgstate.schemas.exceptions import ServiceUnreachable
from msgstate.workers.config import Settings
from msgstate.workers.services import probes

ABSENT = "-"
# Identities remembered to drop repeats: a worker repeats outputs when it takes a partition over,
# seconds after the first ones.
REMEMBERED = 100_000


class Repeats:
    """Whether a record was printed already: an event by its `event_id`, a rejection by
    (`partition`, `offset`, `change_index`). Both are at least once (a worker killed before Kafka
    acknowledged a round's outputs leaves them to the next holder, which produces them again)."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._seen: dict[tuple[Any, ...], None] = {}

    def seen(self, kind: str, record: dict[str, Any]) -> bool:
        if kind == "change":
            named = record.get("event_id") is not None
            identity: tuple[Any, ...] = (kind, record.get("event_id"))
        else:
            named = record.get("partition") is not None and record.get("offset") is not None
            identity = (kind, record.get("partition"), record.get("offset"), record.get("change_index"))
        if not named:  # not from a state worker: nothing tells its repeats
            return False
        if identity in self._seen:
            return True
        self._seen[identity] = None
        if len(self._seen) > self.size:
            del self._seen[next(iter(self._seen))]
        return False


def describe(topic_kind: str, record: dict[str, Any]) -> str:
    """One line a person reads; rich markup, values shown as JSON, an absent id as "-"."""
    def show(value: Any) -> str:
        return escape(orjson.dumps(value).decode())

    def field(name: str) -> str:
        value = record.get(name)
        return ABSENT if value is None else escape(str(value))

    if topic_kind == "change":
        # A deletion's or an erasure's change says so (SPEC section 5's `cause`).
        cause = record.get("cause")
        by = f"  [yellow]{field('cause')}[/]" if cause not in (None, "response") else ""
        return (f"[green]change[/]  {field('message_id')} [dim]{field('part_id')}[/]  "
                f"{field('identity_id')}  [bold]{field('name')}[/] {show(record.get('old'))} → "
                f"{show(record.get('new'))}  [dim]v{field('version')}[/]{by}")
    where = "" if record.get("change_index") is None else f" change {record['change_index']}"
    return (f"[red]reject[/]  {field('message_id')}  {field('identity_id')}  "
            f"[bold]{field('reason')}[/]{where}: {field('detail')}")


@click.command()
@click.option("--message", "message_id", default=None, help="Only this message's changes and rejections.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest records kept, not at the end.")
@click.option("--json", "as_json", is_flag=True, help="Print each record as one JSON line.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Exit after printing N records.")
def tail(message_id: str | None, from_beginning: bool, as_json: bool, count: int | None) -> None:
    """Follow summary-change events and rejections as they are published; a repeat of one
    (after a worker restarted) is dropped."""
    settings = Settings.from_env()
    probes.require_kafka(settings.kafka, options=settings.kafka_security.kafka_python())
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    kinds = {settings.topics.summary_changes: "change", settings.topics.rejections: "reject"}
    try:
        consumer = KafkaConsumer(*kinds, **settings.kafka_client(), group_id=None,
                                 enable_auto_commit=False, client_id="msgstate-tail",
                                 auto_offset_reset="earliest" if from_beginning else "latest")
    except KafkaError as exc:
        raise ServiceUnreachable("Kafka", settings.kafka, type(exc).__name__) from exc
    console = Console(highlight=False, soft_wrap=True)
    printed = 0
    repeats = Repeats()
    try:
        for message in consumer:
            try:
                record = orjson.loads(message.value)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            if message_id is not None and record.get("message_id") != message_id:
                continue
            kind = kinds[message.topic]
            if repeats.seen(kind, record):
                continue
            if as_json:
                click.echo(orjson.dumps({"kind": kind, **record}).decode())
            else:
                console.print(describe(kind, record))
            printed += 1
            if count is not None and printed >= count:
                return
    except KeyboardInterrupt:
        return
    finally:
        consumer.close()
