"""Deleting a message and erasing an identity (SPEC section 3a): the records and how they are
published. The SDK's client and `msgstate delete` / `msgstate erase` both send through here.

A deletion is keyed by its message id, so it lands in the message's partition behind the
message's responses. An erasure has an empty key and goes once to every partition of the
responses topic with one id: each worker erases in the messages it holds, and a copy seen twice
is skipped by its id.
"""

from __future__ import annotations

import time
from typing import Any

from msgstate.schemas.records import KIND_DELETE, KIND_ERASE
from msgstate.streams.sdk.ids import DELETION_PREFIX, ERASURE_PREFIX, ResponseIds
from msgstate.streams.sdk.publisher import DeliveryFuture, Publisher
from msgstate.streams.sdk.validation import encode_record

_ids = ResponseIds()


def deletion(message_id: str, by: str, status_text: str | None = None, *,
             record_id: str | None = None, sent_at: int | None = None) -> dict[str, Any]:
    """A `delete_message` record: `by` is the identity that deleted the message;
    ValidationError if the workers would refuse it as `invalid`."""
    return _checked({"kind": KIND_DELETE, "id": record_id or _ids.new(prefix=DELETION_PREFIX),
                     "message_id": message_id, "identity_id": by, "status_text": status_text,
                     "sent_at": _now_ms() if sent_at is None else sent_at})


def erasure(identity_id: str, status_text: str | None = None, *, record_id: str | None = None,
            sent_at: int | None = None) -> dict[str, Any]:
    """An `erase_identity` record; ValidationError if the workers would refuse it as `invalid`."""
    return _checked({"kind": KIND_ERASE, "id": record_id or _ids.new(prefix=ERASURE_PREFIX),
                     "identity_id": identity_id, "status_text": status_text,
                     "sent_at": _now_ms() if sent_at is None else sent_at})


def send_deletion(publisher: Publisher, record: dict[str, Any]) -> DeliveryFuture:
    """Publish a deletion (made by `deletion`) keyed by its message id."""
    return publisher.send_raw(str(record["message_id"]).encode(), encode_record(record),
                              response_id=str(record["id"]))


def send_erasure(publisher: Publisher, record: dict[str, Any]) -> list[DeliveryFuture]:
    """Publish an erasure (made by `erasure`) once to every partition of the publisher's topic,
    with an empty key; one future per partition, in partition order."""
    encoded = encode_record(record)
    return [publisher.send_raw(b"", encoded, response_id=str(record["id"]), partition=partition)
            for partition in publisher.partitions()]


def _checked(record: dict[str, Any]) -> dict[str, Any]:
    encode_record(record)
    return record


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
