"""The one JSON encoding msgstate writes: orjson, object keys sorted."""

from __future__ import annotations

from typing import Any

import orjson

_LINE = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE


def dumps(record: Any) -> bytes:
    """A record as compact JSON with sorted keys (stable bytes for equal records)."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def dumps_line(record: Any) -> bytes:
    """A record as one JSON line (sorted keys, trailing newline)."""
    return orjson.dumps(record, option=_LINE)
