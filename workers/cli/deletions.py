"""`msgstate delete MESSAGE_ID` and `msgstate erase IDENTITY_ID` (SPEC sections 3a and 9).

Both publish through the SDK's deletions module, so the command line and the SDK send the same
records; signed when MSGSTATE_SIGNING_KEY is set, as `msgstate publish` signs.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from msgstate.schemas.exceptions import DeliveryError, ServiceUnreachable
from msgstate.streams.sdk.deletions import deletion, erasure, send_deletion, send_erasure
from msgstate.streams.sdk.publisher import Delivery, DeliveryFuture, Publisher
from msgstate.workers.cli.publish import responses_publisher
from msgstate.workers.config import Settings

# Who deleted the message when --by is not given: the operator at the command line.
DEFAULT_DELETER = "msgstate:cli"
_SEND_TIMEOUT = 30.0


@click.command()
@click.argument("message_id")
@click.option("--by", "by", default=DEFAULT_DELETER, show_default=True, metavar="IDENTITY",
              help="The identity that deletes the message (the record's identity_id).")
@click.option("--status-text", default=None, metavar="T",
              help="The status text the deletion's summary-change events carry.")
def delete(message_id: str, by: str, status_text: str | None) -> None:
    """Delete MESSAGE_ID: every holding is removed, every later record for it is refused."""
    record = deletion(message_id, by, status_text)
    settings = Settings.from_env()
    delivery, = _send(settings, lambda publisher: [send_deletion(publisher, record)])
    click.echo(f"published delete_message {record['id']} for {message_id} to "
               f"{delivery.topic} partition {delivery.partition} offset {delivery.offset}")


@click.command()
@click.argument("identity_id")
@click.option("--status-text", default=None, metavar="T",
              help="The status text the erasure's summary-change events carry.")
def erase(identity_id: str, status_text: str | None) -> None:
    """Erase IDENTITY_ID: its values are removed from every message, in every partition."""
    record = erasure(identity_id, status_text)
    settings = Settings.from_env()
    deliveries = _send(settings, lambda publisher: send_erasure(publisher, record))
    click.echo(f"published erase_identity {record['id']} for {identity_id} to "
               f"{deliveries[0].topic} partitions 0-{len(deliveries) - 1} "
               f"({len(deliveries)} records)")


def _send(settings: Settings, send: Callable[[Publisher], list[DeliveryFuture]]
          ) -> list[Delivery]:
    """Run `send(publisher)` and wait for every record it sent; Kafka's failures name Kafka."""
    publisher = responses_publisher(settings, "msgstate-delete")
    try:
        futures = send(publisher)
        publisher.flush(timeout=_SEND_TIMEOUT)
        return [future.result(timeout=_SEND_TIMEOUT) for future in futures]
    except DeliveryError as exc:
        raise ServiceUnreachable("Kafka", settings.kafka, f"publishing failed: {exc}") from exc
    finally:
        publisher.close(timeout=5)
