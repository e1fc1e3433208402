"""`msgstate publish FILE`: publish Response Messages, one JSON per line, keyed by message_id.

Built on the SDK's publisher; signs every record when `MSGSTATE_SIGNING_KEY` is set.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import BinaryIO

import click

from msgstate.schemas.exceptions import DeliveryError, ServiceUnreachable
from msgstate.schemas.wording import count
from msgstate.streams.engine.signing import parse_key
from msgstate.streams.sdk.publisher import Publisher, record_key
from msgstate.workers.cli.progress import reading
from msgstate.workers.config import Settings
from msgstate.workers.services import probes

__all__ = ["publish", "record_key", "responses_publisher"]

SIGNING_KEY_ENV = "MSGSTATE_SIGNING_KEY"


def responses_publisher(settings: Settings, client_id: str) -> Publisher:
    """A publisher to the responses topic, once Kafka answers; it signs every record when
    MSGSTATE_SIGNING_KEY is set."""
    spec = os.environ.get(SIGNING_KEY_ENV, "").strip()
    signing_key = parse_key(spec) if spec else None
    security = settings.kafka_security.kafka_python()
    probes.require_kafka(settings.kafka, options=security)
    return Publisher(settings.kafka_servers, settings.topics.responses, signing_key=signing_key,
                     client_id=client_id, producer_config=security)


@click.command()
@click.argument("file", type=click.File("rb"))
def publish(file: BinaryIO) -> None:
    """Publish the records of FILE (`-` for stdin) to the responses topic.

    Every non-blank line is sent as it is, even a bad one: the workers turn it into a rejection
    with a reason, so nothing disappears. With MSGSTATE_SIGNING_KEY=keyid:base64secret set,
    every record is signed.
    """
    settings = Settings.from_env()
    publisher = responses_publisher(settings, "msgstate-publish")
    sent = 0
    try:
        futures = []
        with contextlib.ExitStack() as stack:
            for raw in reading(file, f"publishing {file.name}", stack):
                line = raw.rstrip(b"\n")
                if not line.strip():
                    continue
                futures.append(publisher.send_raw(record_key(line), line))
                sent += 1
        publisher.flush(timeout=30)
        for future in futures:
            future.result(timeout=30)  # surfaces a delivery error instead of losing it
    except DeliveryError as exc:
        raise ServiceUnreachable("Kafka", settings.kafka, f"publishing failed: {exc}") from exc
    finally:
        publisher.close(timeout=5)
    click.echo(f"published {count(sent, 'record')} to {settings.topics.responses}", err=True)
    sys.stdout.flush()
