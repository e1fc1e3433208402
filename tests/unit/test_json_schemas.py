"""The JSON Schemas in schemas/json/ cannot drift from the Python validators."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from msgstate.schemas.chat import chat_message_problem
from msgstate.schemas.json_schema import SCHEMAS, load, path_of, render
from msgstate.schemas.records import Response, decode_change, decode_response
from tests.unit import strategies as ws
from tests.unit.schema_check import is_valid

# Any JSON value, small.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=6,
)
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_shipped_files_are_generated_from_the_code(name: str) -> None:
    assert path_of(name).read_bytes() == render(name), "run: python -m schemas.json_schema"


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_schemas_are_valid_draft_2020_12(name: str) -> None:
    schema = load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def python_accepts(record: Any) -> bool:
    """decode_response takes the record whole and every one of its changes is well formed."""
    out = decode_response(json.dumps(record).encode())
    return isinstance(out, Response) and all(change.error is None for change in out.changes)


def _agree_on_record(record: Any) -> None:
    assert is_valid("response-message", record) == python_accepts(record), record


@SETTINGS
@given(ws.records())
def test_response_schema_agrees_with_the_decoder(record: dict[str, Any]) -> None:
    _agree_on_record(json.loads(json.dumps(record)))


@SETTINGS
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "id": json_values | st.text(max_size=130),
            "message_id": json_values | st.just("m"),
            "identity_id": json_values | st.just("a"),
            "part_id": json_values | st.just("p"),
            "changes": json_values | st.lists(ws.changes(), max_size=3),
            "status_text": json_values,
            "sent_at": json_values,
        },
    )
)
def test_response_schema_agrees_on_arbitrary_fields(record: dict[str, Any]) -> None:
    _agree_on_record(record)


@SETTINGS
@given(
    ws.changes(valid_share=0.5)
    | st.fixed_dictionaries(
        {},
        optional={
            "operation": st.sampled_from(["add", "remove"]) | json_values,
            "type": st.sampled_from(list(ws.TYPES)) | json_values,
            "name": st.text(alphabet="ab_.:-/ \n\u00e9", max_size=4) | json_values,
            "value": json_values | ws.good_values | ws.bad_values,
        },
    )
)
def test_change_schema_agrees_with_the_change_decoder(change: Any) -> None:
    change = json.loads(json.dumps(change))
    assert is_valid("change", change) == (decode_change(change).error is None), change


@SETTINGS
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.just("c1") | json_values,
            "room_id": st.just("GENERAL") | st.text(max_size=3),
            "sender_id": st.just("u1") | json_values,
            "text": st.text(max_size=3) | json_values,
            "ts": st.integers(-(2**64), 2**64) | json_values,
            "tmid": json_values,
        },
    )
    | json_values
)
def test_chat_schema_agrees_with_the_chat_decoder(record: Any) -> None:
    assert is_valid("chat-message-event", record) == (chat_message_problem(record) is None)


def test_output_schemas_are_not_vacuous() -> None:
    rejection = {
        "response_id": None,
        "message_id": None,
        "identity_id": None,
        "reason": "malformed",
        "detail": "x",
        "change_index": None,
        "change": None,
        "raw": "eA==",
    }
    assert is_valid("rejection", rejection)
    assert is_valid("rejection", {**rejection, "partition": 3, "offset": 9})
    assert not is_valid("rejection", {**rejection, "raw": None})
    assert not is_valid("rejection", {**rejection, "response_id": "r1"})
    assert not is_valid("rejection", {**rejection, "reason": "fww_conflict"})
    assert not is_valid("rejection", {**rejection, "surprise": 1})
    event = {
        "event_id": "m/r/s",
        "message_id": "m",
        "part_id": "root",
        "response_id": "r",
        "identity_id": "a",
        "name": "s",
        "type": "Set",
        "old": None,
        "new": ["x", 1, True],
        "version": 1,
        "status_text": None,
        "cause": "response",
    }
    assert is_valid("summary-change-event", event)
    assert not is_valid("summary-change-event", {**event, "cause": "other"})
    assert not is_valid("summary-change-event", {**event, "new": "x"})
    assert not is_valid("summary-change-event", {**event, "new": []})
    assert not is_valid("summary-change-event", {**event, "new": [1, 1]})
    assert is_valid("summary-change-event", {**event, "new": [1, 1.0, True, {"a": [None]}]})
    assert not is_valid("summary-change-event", {**event, "type": "LWW", "new": 2.0**63})
    assert not is_valid("summary-change-event", {**event, "type": "LWW", "new": ["x" * 1100]})
    summary = {
        "message_id": "m",
        "part_id": "root",
        "version": 1,
        "states": {
            "s": {"type": "Set", "values": {"a": [1, True, "1"]},
                  "tally": [{"value": True, "count": 1}]},
            "c": {"type": "LWW", "values": {"a": "x"}, "tally": [], "clipped": True,
                  "identities": 3},
        },
    }
    assert is_valid("response-summary", summary)
    summary["states"]["c"].pop("identities")
    assert not is_valid("response-summary", summary)
