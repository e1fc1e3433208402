"""The compiled engine on values of any JSON kind (SPEC v1.1 section 2): canonical encodings
byte for byte as orjson writes them with sorted keys, the limits, and the tally order."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstate.streams.engine.native_engine import NativeEngine

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

floats = st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: abs(f) < 2.0**63)
scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), floats,
                    st.text(max_size=20))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(st.one_of(inner, st.none()), max_size=4),
        st.dictionaries(st.text(max_size=6), st.one_of(inner, st.none()), max_size=4),
    ),
    max_leaves=12,
)


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def record(rid: str, identity: str, value: Any, *, kind: str = "LWW") -> bytes:
    return orjson.dumps({"id": rid, "message_id": "m", "identity_id": identity, "changes": [
        {"operation": "add", "type": kind, "name": "n", "value": value}]})


def state(engine: NativeEngine) -> Any:
    (line,) = engine.summary_lines()
    return orjson.loads(line)["states"]["n"]


def tally_order(encoded: bytes) -> tuple[Any, ...]:
    """SPEC section 4's order for entries of equal count, from the encoding."""
    value = orjson.loads(encoded)
    if value is False:
        return (0,)
    if value is True:
        return (1,)
    if isinstance(value, int | float):
        # Exact: an int and a float compare by value in Python; an equal int goes first.
        return (2, value, isinstance(value, float), encoded)
    if isinstance(value, str):
        return (3, value)
    return (4 if isinstance(value, list) else 5, encoded)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


def valid(value: Any) -> bool:
    return depth(value) <= 16 and (depth(value) == 0 or len(canonical(value)) <= 1024)


@SETTINGS
@given(st.lists(values, min_size=1, max_size=12))
def test_values_are_kept_as_their_canonical_encoding(drawn: list[Any]) -> None:
    engine = NativeEngine()
    lines = [record(f"r{i}", f"u{i:02}", value) for i, value in enumerate(drawn)]
    accepted = [value for value in drawn if valid(value)]
    events, rejections = engine.feed(lines)
    assert len(rejections) == len(drawn) - len(accepted)
    for event, value in zip(events, accepted, strict=True):
        assert b'"new":' + canonical(value) + b',"old":null,' in event
    if not accepted:
        return
    (line,) = engine.summary_lines()
    expected_values = b",".join(
        b'"u%02d":' % i + canonical(value) for i, value in enumerate(drawn) if valid(value))
    assert b'"values":{' + expected_values + b"}}" in line
    tally = orjson.loads(line)["states"]["n"]["tally"]
    got = [canonical(entry["value"]) for entry in tally]
    counts = {encoded: got.count(encoded) for encoded in got}
    assert max(counts.values()) == 1, "one entry per canonical encoding"
    held = {canonical(value) for value in accepted}
    by_count = sorted(held, key=lambda encoded: (
        -sum(canonical(value) == encoded for value in accepted), tally_order(encoded)))
    assert got == by_count
    assert [entry["count"] for entry in tally] == [
        sum(canonical(value) == encoded for value in accepted) for encoded in by_count]


def test_equal_values_share_a_tally_entry_and_kinds_stay_apart() -> None:
    engine = NativeEngine()
    lines = [
        b'{"id":"r1","message_id":"m","identity_id":"a","changes":[{"operation":"add",'
        b'"type":"Set","name":"n","value":{"b":2,"a":1}}]}',
        b'{"id":"r2","message_id":"m","identity_id":"b","changes":[{"operation":"add",'
        b'"type":"Set","name":"n","value":{ "a" : 1, "b" : 2 }}]}',
        # A repeated key keeps its last value.
        b'{"id":"r3","message_id":"m","identity_id":"c","changes":[{"operation":"add",'
        b'"type":"Set","name":"n","value":{"a":0,"b":2,"a":1}}]}',
    ]
    lines += [record(f"s{i}", "d", value, kind="Set") for i, value in enumerate([1, 1.0, "1", True])]
    _, rejections = engine.feed(lines)
    assert rejections == []
    assert state(engine)["tally"] == [
        {"count": 3, "value": {"a": 1, "b": 2}},
        {"count": 1, "value": True},
        {"count": 1, "value": 1},
        {"count": 1, "value": 1.0},
        {"count": 1, "value": "1"},
    ]


@pytest.mark.parametrize(("value", "detail"), [
    (None, "a value must not be null"),
    (2.0**63, "a number in a value must be below 2^63 in magnitude"),
    (-(2.0**63), "a number in a value must be below 2^63 in magnitude"),
    ({"a": [2**63]}, "an integer in a value must be in the 64-bit signed range"),
    ("x" * 1025, "a string value may hold at most 1024 UTF-8 bytes"),
    ([["x" * 1025]], "an array or object value may encode to at most 1024 bytes"),
    (["x" * 1021], "an array or object value may encode to at most 1024 bytes"),
    ({"k": "é" * 510}, "an array or object value may encode to at most 1024 bytes"),
    ([[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]],
     "a value may nest at most 16 levels of arrays and objects"),
])
def test_values_over_a_limit_are_invalid_changes(value: Any, detail: str) -> None:
    engine = NativeEngine()
    _, (rejection,) = engine.feed([record("r1", "u", value)])
    refused = orjson.loads(rejection)
    assert (refused["reason"], refused["detail"]) == ("invalid_change", f"bad value: {detail}")
    assert refused["change"]["value"] == value


@pytest.mark.parametrize("value", [
    9.223372036854775e18, -9.223372036854775e18, ["x" * 1020], "é" * 512,
    [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]], {"a": None, "b": [None]}, [],
])
def test_values_at_a_limit_are_taken(value: Any) -> None:
    engine = NativeEngine()
    events, rejections = engine.feed([record("r1", "u", value)])
    assert rejections == []
    assert orjson.loads(events[0])["new"] == value
    assert state(engine)["values"] == {"u": value}


def test_a_number_too_large_for_a_double_anywhere_is_malformed() -> None:
    engine = NativeEngine()
    line = (b'{"id":"r1","message_id":"m","identity_id":"u","changes":[{"operation":"add",'
            b'"type":"LWW","name":"n","value":{"a":[1e400]}}]}')
    _, (rejection,) = engine.feed([line])
    assert orjson.loads(rejection)["reason"] == "malformed"
    assert engine.summary_lines() == []


def test_a_layer_choice_response_with_custom_response_data() -> None:
    engine = NativeEngine()
    data = {"selection": "blue", "label": "Blue", "meta": {"score": 0.5, "tags": ["a", None]}}
    events, rejections = engine.feed([orjson.dumps({
        "id": "r-1", "message_id": "layer:///messages/940de862", "part_id": "root",
        "identity_id": "layer:///identities/FrodoTheDodo",
        "changes": [{"operation": "add", "type": "LWWN", "name": "custom_response_data",
                     "value": data}],
        "status_text": "Frodo chose Blue"})])
    assert rejections == []
    (event,) = [orjson.loads(line) for line in events]
    assert (event["old"], event["new"], event["version"]) == (None, data, 1)
    assert event["cause"] == "response"
    (summary,) = [orjson.loads(line) for line in engine.summary_lines()]
    held = summary["states"]["custom_response_data"]
    assert held["values"] == {"layer:///identities/FrodoTheDodo": data}
    assert held["tally"] == [{"count": 1, "value": data}]
    # The same object removed (keys in another order) unsets it.
    events, _ = engine.feed([orjson.dumps({
        "id": "r-2", "message_id": "layer:///messages/940de862",
        "identity_id": "layer:///identities/FrodoTheDodo",
        "changes": [{"operation": "remove", "type": "LWWN", "name": "custom_response_data",
                     "value": dict(reversed(list(data.items())))}]})])
    assert orjson.loads(events[0])["new"] is None
