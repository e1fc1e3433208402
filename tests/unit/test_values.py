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

valid_values = st.one_of(
    st.text(max_size=300),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
)


@given(valid_values)
def test_encoding_is_orjson_and_round_trips(value: Any) -> None:
    assert value_problem(value) is None
    encoded = checked_encoding(value)
    assert encoded == encode_value(value) == orjson.dumps(value)
    decoded = decode_value(encoded)
    assert decoded == value and type(decoded) is type(value)


def test_one_true_and_the_string_one_are_three_values() -> None:
    encodings = {encode_value(1), encode_value(True), encode_value("1")}
    assert encodings == {b"1", b"true", b'"1"'}
    assert encode_value(0) != encode_value(False)


@pytest.mark.parametrize(
    "bad", [1.0, 1e2, float("nan"), 2**63, -(2**63) - 1, None, [], {}, ("x",), "x" * 1025,
            "\u00e9" * 513, "\U0001f600" * 257]
)
def test_invalid_values(bad: Any) -> None:
    assert value_problem(bad)
    assert checked_encoding(bad) is None


def test_string_limit_is_in_utf8_bytes() -> None:
    assert value_problem("\U0001f600" * 256) is None  # 1024 bytes, 256 code points
    assert value_problem("x" * 1024) is None


@given(st.lists(st.tuples(valid_values, st.integers(1, 5)), max_size=12))
def test_tally_key_orders_kinds(entries: list[tuple[Any, int]]) -> None:
    keys = [tally_key(encode_value(v), n) for v, n in entries]
    for (value, count), key in zip(entries, keys, strict=True):
        assert key[0] == -count
        rank = 0 if value is False else 1 if value is True else 2 if isinstance(value, int) else 3
        assert key[1] == rank


def test_registry_parsing() -> None:
    assert parse_registry(b'{"poll": "FWW", "tags": "Set"}') == {"poll": "FWW", "tags": "Set"}
    for bad in (b"[]", b"{", b'{"poll": "Counter"}', b'{"bad name": "Set"}', b'{"p": 1}'):
        with pytest.raises(ConfigError):
            parse_registry(bad)


def test_codec_sorts_keys() -> None:
    assert dumps({"b": 1, "a": {"d": 1, "c": 2}}) == b'{"a":{"c":2,"d":1},"b":1}'
    assert dumps_line({"b": 1, "a": 2}) == b'{"a":2,"b":1}\n'
