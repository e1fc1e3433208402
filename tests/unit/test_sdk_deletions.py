"""Deletion and erasure records, as the SDK and `msgstate delete` / `msgstate erase` send them
(SPEC section 3a), and what their events do to a model's local summary."""

from __future__ import annotations

from typing import Any, cast

import orjson
import pytest

from msgstate.schemas.exceptions import ValidationError
from msgstate.schemas.records import Deletion, Erasure, decode_response
from msgstate.streams.sdk.deletions import deletion, erasure, send_deletion, send_erasure
from msgstate.streams.sdk.publisher import Publisher

from .schema_check import check
from .sdk_fakes import RecordingPublisher, Wiring, empty_summary, open_poll


def as_publisher(fake: RecordingPublisher) -> Publisher:
    return cast(Publisher, fake)


def test_a_deletion_is_a_valid_record_with_a_time_ordered_d_id() -> None:
    first = deletion("layer:///messages/1", "mod", "removed by a moderator", sent_at=5)
    second = deletion("layer:///messages/1", "mod")
    check("delete-message", first)
    assert first == {"kind": "delete_message", "id": first["id"],
                     "message_id": "layer:///messages/1", "identity_id": "mod",
                     "status_text": "removed by a moderator", "sent_at": 5}
    assert first["id"].startswith("d-") and len(first["id"]) == 28 and first["id"] < second["id"]
    assert decode_response(orjson.dumps(first)) == Deletion(
        first["id"], "layer:///messages/1", "mod", "removed by a moderator", 5)


def test_an_erasure_is_a_valid_record_with_an_e_id() -> None:
    record = erasure("frodo", sent_at=7)
    check("erase-identity", record)
    assert record["id"].startswith("e-") and "message_id" not in record
    assert decode_response(orjson.dumps(record)) == Erasure(record["id"], "frodo", None, 7)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: deletion("", "mod"), '"message_id" has 0 characters'),
    (lambda: deletion("m" * 257, "mod"), '"message_id" has 257 characters'),
    (lambda: deletion("m", ""), '"identity_id" has 0 characters'),
    (lambda: erasure("u" * 257), '"identity_id" has 257 characters'),
    (lambda: erasure("u", "x" * 4097), '"status_text"'),
])
def test_a_record_the_workers_would_refuse_raises_when_made(make: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make()


def test_a_deletion_is_keyed_by_its_message_id_and_left_to_the_partitioner() -> None:
    fake = RecordingPublisher(partitions=4)
    record = deletion("m1", "mod")
    future = send_deletion(as_publisher(fake), record)
    assert future.result().response_id == record["id"]
    assert fake.sent == [(b"m1", orjson.dumps(record), record["id"])]
    assert fake.sent_to == [None]


def test_an_erasure_goes_once_to_every_partition_with_one_id_and_an_empty_key() -> None:
    fake = RecordingPublisher(partitions=4)
    record = erasure("frodo")
    futures = send_erasure(as_publisher(fake), record)
    assert [f.result().partition for f in futures] == [0, 1, 2, 3]
    assert fake.sent_to == [0, 1, 2, 3]
    assert fake.sent == [(b"", orjson.dumps(record), record["id"])] * 4


def event(name: str, identity: str, old: Any, new: Any, version: int, cause: str,
          rid: str, kind: str = "Set") -> dict[str, Any]:
    return {"event_id": f"m1/{rid}/root/{name}/{identity}", "message_id": "m1",
            "part_id": "root", "response_id": rid, "identity_id": identity, "name": name,
            "type": kind, "old": old, "new": new, "version": version, "status_text": None,
            "cause": cause}


def loaded_poll() -> Any:
    return open_poll(Wiring(), {**empty_summary(), "version": 2, "states": {
        "colors": {"type": "Set", "values": {"u1": ["red"], "u2": ["red", "blue"]},
                   "tally": [{"value": "red", "count": 2}, {"value": "blue", "count": 1}]},
        "latest": {"type": "LWW", "values": {"u2": [1, 2]},
                   "tally": [{"value": [1, 2], "count": 1}]}}})


def test_an_erasure_event_lowers_the_local_tally_and_carries_its_cause() -> None:
    model = loaded_poll()
    change = model.responses.apply_event(event("colors", "u2", ["red", "blue"], None, 3,
                                               "erase_identity", "e-1"))
    assert change is not None and change.cause == "erase_identity" and not change.deleted
    assert change.response_id == "e-1" and change.new_value is None
    states = model.responses.summary["states"]
    assert states["colors"]["tally"] == [{"value": "red", "count": 1}]
    assert states["latest"]["tally"] == [{"value": [1, 2], "count": 1}]  # an array, not a Set


def test_a_deletion_event_leaves_a_deleted_summary_with_no_states() -> None:
    model = loaded_poll()
    change = model.responses.apply_event(event("colors", "u1", ["red"], None, 3,
                                               "delete_message", "d-1"))
    assert change is not None and change.deleted and change.cause == "delete_message"
    later = model.responses.apply_event(event("latest", "u2", [1, 2], None, 3,
                                              "delete_message", "d-1", kind="LWW"))
    assert later is not None and later.deleted
    assert model.responses.summary == {**empty_summary(), "version": 3, "states": {},
                                       "deleted": True}


def test_an_event_without_a_cause_is_a_response() -> None:
    model = loaded_poll()
    plain = event("latest", "u1", None, {"choice": "a", "score": 0.5}, 3, "response", "r3",
                  kind="LWW")
    del plain["cause"]
    change = model.responses.apply_event(plain)
    assert change is not None and change.cause == "response"
    assert model.responses.summary["states"]["latest"]["values"]["u1"] == {"choice": "a",
                                                                          "score": 0.5}


@pytest.mark.parametrize("value", [1.5, [1, "a", None], {"custom_response_data": {"id": 3}},
                                   -0.0, False])
def test_values_of_any_json_kind_are_sent_as_given(value: Any) -> None:
    wiring = Wiring()
    model = open_poll(wiring)
    model.responses.add_state("latest", value)
    model.responses.remove_state("colors", value)
    model.responses.send_response_message()
    [sent] = wiring.publisher.records
    assert [c["value"] for c in sent["changes"]] == [value, value]
