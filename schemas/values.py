"""State values: validation, the canonical encoding, and the tally order.

A value is a string (at most 1024 UTF-8 bytes), a 64-bit signed integer or a
boolean. It is kept as its orjson encoding, so that `1`, `"1"` and `true`
stay three values (in Python `1 == True`, and both hash alike).
"""

from __future__ import annotations

from typing import Any

import orjson

from msgstate.schemas.limits import INT_MAX, INT_MIN, MAX_VALUE_BYTES

Value = str | int | bool

TRUE = b"true"
FALSE = b"false"
# A string of at most this many code points fits MAX_VALUE_BYTES whatever it holds.
SURELY_SHORT = MAX_VALUE_BYTES // 4


def value_problem(value: Any) -> str | None:
    """Why `value` is not a valid state value, or None when it is one."""
    kind = type(value)
    if kind is str:
        if len(value) > SURELY_SHORT and len(value.encode()) > MAX_VALUE_BYTES:
            return f"a string value may hold at most {MAX_VALUE_BYTES} UTF-8 bytes"
        return None
    if kind is int:
        if INT_MIN <= value <= INT_MAX:
            return None
        return "an integer value must be in the 64-bit signed range"
    if kind is bool:
        return None
    if kind is float:
        return "a number with a fraction or an exponent is not an integer value"
    return f"a value must be a string, an integer or a boolean, not {json_kind(value)}"


def checked_encoding(value: Any) -> bytes | None:
    """The canonical encoding of `value`, or None when it is not a valid value (hot path)."""
    kind = type(value)
    if kind is str:
        if len(value) > SURELY_SHORT and len(value.encode()) > MAX_VALUE_BYTES:
            return None
        return orjson.dumps(value)
    if kind is bool:
        return TRUE if value else FALSE
    if kind is int and INT_MIN <= value <= INT_MAX:
        return orjson.dumps(value)
    return None


def encode_value(value: Value) -> bytes:
    """The canonical encoding of a valid value (what orjson.dumps gives)."""
    if value is True:
        return TRUE
    if value is False:
        return FALSE
    return orjson.dumps(value)


def decode_value(encoded: bytes) -> Value:
    """The value an encoding stands for."""
    value: Value = orjson.loads(encoded)
    return value


def tally_key(encoded: bytes, count: int) -> tuple[int, int, int | str]:
    """Sort key of a tally entry: count descending, then false, true, integers, strings."""
    first = encoded[0]
    if first == 0x22:  # '"'
        text: str = orjson.loads(encoded)
        return (-count, 3, text)
    if first == 0x66:  # 'f'
        return (-count, 0, 0)
    if first == 0x74:  # 't'
        return (-count, 1, 0)
    return (-count, 2, int(encoded))


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
