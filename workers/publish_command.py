"""`msgstate publish FILE`: publish Response Messages, one JSON per line, keyed by message_id."""

from __future__ import annotations

import sys
from typing import BinaryIO

import click
import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from schemas.exceptions import ServiceUnreachable
from workers import probes
from workers.config import Settings


def record_key(line: bytes) -> bytes | None:
    """The message id of a record, as its key; None when the line has none (the worker rejects it)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    message_id = data.get("message_id") if isinstance(data, dict) else None
    return message_id.encode() if isinstance(message_id, str) else None


@click.command()
@click.argument("file", type=click.File("rb"))
def publish(file: BinaryIO) -> None:
    """Publish the records of FILE (`-` for stdin) to the responses topic.

    Every non-blank line is sent as it is, even a bad one: the workers turn it into a rejection
    with a reason, so nothing disappears.
    """
    settings = Settings.from_env()
    probes.require_kafka(settings.kafka)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all",
                             enable_idempotence=True, linger_ms=5, client_id="msgstate-publish")
    sent = 0
    try:
        futures = []
        for raw in file:
            line = raw.rstrip(b"\n")
            if not line.strip():
                continue
            futures.append(producer.send(settings.topics.responses, key=record_key(line), value=line))
            sent += 1
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)  # surfaces a delivery error instead of losing it
    except KafkaError as exc:
        raise ServiceUnreachable("Kafka", settings.kafka, f"publishing failed: {exc}") from exc
    finally:
        producer.close(timeout=5)
    click.echo(f"published {sent} records to {settings.topics.responses}", err=True)
    sys.stdout.flush()
