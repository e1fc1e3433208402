"""State values (SPEC section 2, v1.1): validation, the canonical encoding, the tally order.

A value is any JSON value but `null`: a string (at most 1024 UTF-8 bytes), a
64-bit signed integer, a boolean, a float (magnitude below 2^63), an array or an
object (nesting at most 16 levels, canonical encoding at most 1024 bytes; `null`
allowed inside). It is kept as its canonical encoding: orjson's, object keys
sorted, so that `1`, `1.0`, `"1"` and `true` stay four values (in Python
`1 == 1.0 == True`, and they hash alike) and `{"a":1,"b":2}` equals
`{"b":2,"a":1}`.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgstate.schemas.limits import (
    FLOAT_LIMIT,
    INT_MAX,
    INT_MIN,
    MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH,
)

# What a decoded value may be: a scalar, or a container of JSON data.
Value = str | int | bool | float | list[Any] | dict[str, Any]

TRUE = b"true"
FALSE = b"false"
# A string of at most this many code points fits MAX_VALUE_BYTES whatever it holds.
SURELY_SHORT = MAX_VALUE_BYTES // 4
_SORTED = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps


def _inner_problem(value: Any, depth: int) -> str | None:
    """Why JSON data inside an array or object breaks the value rules, or None."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return None  # a string's length is bounded by the whole encoding's
    if kind is int:
        return None if INT_MIN <= value <= INT_MAX else (
            "an integer in a value must be in the 64-bit signed range"
        )
    if kind is float:
        return None if -FLOAT_LIMIT < value < FLOAT_LIMIT else (
            "a number in a value must be below 2^63 in magnitude"
        )
    if kind is list or kind is dict:
        if depth > MAX_VALUE_DEPTH:
            return f"a value may nest at most {MAX_VALUE_DEPTH} levels of arrays and objects"
        items = value.values() if kind is dict else value
        for item in items:
            problem = _inner_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    return f"{json_kind(value)} is not JSON data"


def value_problem(value: Any) -> str | None:
    """Why `value` is not a valid state value, or None when it is one."""
    kind = type(value)
    if kind is str:
        if len(value) > SURELY_SHORT and len(value.encode()) > MAX_VALUE_BYTES:
            return f"a string value may hold at most {MAX_VALUE_BYTES} UTF-8 bytes"
        return None
    if value is None:
        return "a value must not be null"
    if kind is list or kind is dict:
        problem = _inner_problem(value, 1)
        if problem is not None:
            return problem
        if len(_dumps(value, option=_SORTED)) > MAX_VALUE_BYTES:
            return f"an array or object value may encode to at most {MAX_VALUE_BYTES} bytes"
        return None
    return _inner_problem(value, 1)


def checked_encoding(value: Any) -> bytes | None:
    """The canonical encoding of `value`, or None when it is not a valid value (hot path)."""
    kind = type(value)
    if kind is str:
        if len(value) > SURELY_SHORT and len(value.encode()) > MAX_VALUE_BYTES:
            return None
        return _dumps(value)
    if kind is bool:
        return TRUE if value else FALSE
    if kind is int:
        return _dumps(value) if INT_MIN <= value <= INT_MAX else None
    if kind is float:
        return _dumps(value) if -FLOAT_LIMIT < value < FLOAT_LIMIT else None
    if (kind is list or kind is dict) and _inner_problem(value, 1) is None:
        encoded = _dumps(value, option=_SORTED)
        return encoded if len(encoded) <= MAX_VALUE_BYTES else None
    return None


def encode_value(value: Value) -> bytes:
    """The canonical encoding of a valid value (orjson's, object keys sorted)."""
    if value is True:
        return TRUE
    if value is False:
        return FALSE
    return _dumps(value, option=_SORTED)


def decode_value(encoded: bytes) -> Value:
    """The value an encoding stands for."""
    value: Value = orjson.loads(encoded)
    return value


# Ranks of the tally order's kinds, after the count (SPEC section 4, v1.1).
RANK_FALSE, RANK_TRUE, RANK_NUMBER, RANK_STRING, RANK_ARRAY, RANK_OBJECT = range(6)
TallyPayload = int | str | bytes | tuple[int | float, int, bytes]


def tally_key(encoded: bytes, count: int) -> tuple[int, int, TallyPayload]:
    """Sort key of a tally entry: count descending, then false, true, numbers, strings,
    arrays, objects.

    Numbers go by exact value (Python compares an int and a float exactly), an integer
    before a float of equal value; two floats of equal value (`-0.0` and `0.0`) by their
    encodings' bytes. Strings go by code point, arrays and objects by their encodings'
    bytes.
    """
    first = encoded[0]
    if first == 0x22:  # '"'
        text: str = orjson.loads(encoded)
        return (-count, RANK_STRING, text)
    if first == 0x66:  # 'f'
        return (-count, RANK_FALSE, 0)
    if first == 0x74:  # 't'
        return (-count, RANK_TRUE, 0)
    if first == 0x5B:  # '['
        return (-count, RANK_ARRAY, encoded)
    if first == 0x7B:  # '{'
        return (-count, RANK_OBJECT, encoded)
    number: int | float = orjson.loads(encoded)
    if type(number) is int:
        return (-count, RANK_NUMBER, (number, 0, b""))
    return (-count, RANK_NUMBER, (number, 1, encoded))


def json_kind(value: Any) -> str:
    """The JSON name of a decoded value's kind, for error details."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
