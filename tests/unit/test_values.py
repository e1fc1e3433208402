"""Values: validity, the canonical encoding, the tally order key; the registry; the codec."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstate.schemas.codec import dumps, dumps_line
from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.registry import parse_registry
from msgstate.schemas.values import checked_encoding, decode_value, encode_value, tally_key, value_problem

scalar_values = st.one_of(
    st.text(max_size=300),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False, min_value=-(2.0**63), max_value=2.0**63, exclude_min=True,
              exclude_max=True),
)
inner_data = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e18, max_value=1e18),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=8,
)
valid_values = scalar_values | st.lists(inner_data, max_size=3) | st.dictionaries(
    st.text(max_size=3), inner_data, max_size=3
)


@given(valid_values)
def test_encoding_is_canonical_orjson_and_round_trips(value: Any) -> None:
    assert value_problem(value) is None
    encoded = checked_encoding(value)
    assert encoded == encode_value(value) == orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert orjson.dumps(decode_value(encoded), option=orjson.OPT_SORT_KEYS) == encoded
    if not isinstance(value, float):  # -0.0 == 0.0: compared by encoding above
        decoded = decode_value(encoded)
        assert decoded == value and type(decoded) is type(value)


def test_one_float_one_true_and_the_string_one_are_four_values() -> None:
    encodings = {encode_value(1), encode_value(1.0), encode_value(True), encode_value("1")}
    assert encodings == {b"1", b"1.0", b"true", b'"1"'}
    assert encode_value(0) != encode_value(False)
    assert encode_value(-0.0) != encode_value(0.0)


def test_objects_are_equal_whatever_their_key_order() -> None:
    assert encode_value({"b": 2, "a": 1}) == encode_value({"a": 1, "b": 2}) == b'{"a":1,"b":2}'
    # A repeated key keeps its last value (as the record's JSON is decoded).
    assert checked_encoding(orjson.loads(b'{"a":1,"a":2}')) == b'{"a":2}'


@pytest.mark.parametrize(
    "text, encoded",
    [("1.0", b"1.0"), ("1e2", b"100.0"), ("0.5", b"0.5"), ("1e-7", b"1e-7"), ("1e16", b"1e+16"),
     ("-0.0", b"-0.0"), ('[1, {"b": null, "a": [true]}]', b'[1,{"a":[true],"b":null}]')],
)
def test_canonical_encodings_of_the_spec(text: str, encoded: bytes) -> None:
    assert checked_encoding(orjson.loads(text)) == encoded


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), 2.0**63, -(2.0**63), 1e19, 2**63, -(2**63) - 1, None,
            ("x",), "x" * 1025, "\u00e9" * 513, "\U0001f600" * 257, [2**63], {"a": 1e19},
            ["x" * 1023], {"k": "v" * 1020}, _nested(17), [float("nan")]]
)
def test_invalid_values(bad: Any) -> None:
    assert value_problem(bad)
    assert checked_encoding(bad) is None


def test_limits_of_containers() -> None:
    assert value_problem(_nested(16)) is None
    assert value_problem([None, [], {}]) is None  # null inside a container is allowed
    assert value_problem(["x" * 1020]) is None  # 1024 bytes encoded
    assert value_problem(["x" * 1021]) is not None


def test_string_limit_is_in_utf8_bytes() -> None:
    assert value_problem("\U0001f600" * 256) is None  # 1024 bytes, 256 code points
    assert value_problem("x" * 1024) is None


def test_tally_order_of_kinds_and_numbers() -> None:
    values: list[Any] = [{"a": 1}, [2], [1], "b", "a", 2, 1.5, 1.0, 1, -0.0, 0.0, 0, -3.5,
                         True, False]
    ordered = sorted(values, key=lambda v: tally_key(encode_value(v), 1))
    assert [encode_value(v) for v in ordered] == [
        b"false", b"true", b"-3.5", b"0", b"-0.0", b"0.0", b"1", b"1.0", b"1.5", b"2",
        b'"a"', b'"b"', b"[1]", b"[2]", b'{"a":1}',
    ]


@given(st.lists(st.tuples(valid_values, st.integers(1, 5)), max_size=12))
def test_tally_key_orders_kinds(entries: list[tuple[Any, int]]) -> None:
    keys = [tally_key(encode_value(v), n) for v, n in entries]
    for (value, count), key in zip(entries, keys, strict=True):
        assert key[0] == -count
        rank = (0 if value is False else 1 if value is True else 2
                if isinstance(value, int | float) else 3 if isinstance(value, str)
                else 4 if isinstance(value, list) else 5)
        assert key[1] == rank
    # Distinct encodings never tie.
    distinct = {encode_value(v): key for (v, _), key in zip(entries, keys, strict=True)}
    assert len(set(distinct.values())) == len(distinct)


def test_registry_parsing() -> None:
    assert parse_registry(b'{"poll": "FWW", "tags": "Set"}') == {"poll": "FWW", "tags": "Set"}
    for bad in (b"[]", b"{", b'{"poll": "Counter"}', b'{"bad name": "Set"}', b'{"p": 1}'):
        with pytest.raises(ConfigError):
            parse_registry(bad)


def test_codec_sorts_keys() -> None:
    assert dumps({"b": 1, "a": {"d": 1, "c": 2}}) == b'{"a":{"c":2,"d":1},"b":1}'
    assert dumps_line({"b": 1, "a": 2}) == b'{"a":2,"b":1}\n'
