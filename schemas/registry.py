"""The registry of state types (like Layer's `customStates` / `registerState`).

A JSON object of state name -> entry. An entry is a type, `{"poll_choice": "FWW"}`,
or (v1.1) an object with the type and a cap on the state's distinct values in one
part, `{"reactions": {"type": "Set", "max_values": 20}}`. Every change to a
registered name must carry its type, from the first one on; an add of a value
nobody holds yet in the part is refused while the state already holds
`max_values` distinct values (SPEC section 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.limits import MAX_VALUES_CAP
from msgstate.schemas.records import STATE_TYPES, is_state_name

Entry = str | dict[str, Any]  # "Set", or {"type": "Set", "max_values": 20}
_ENTRY_KEYS = frozenset({"type", "max_values"})


def _checked_entry(name: Any, entry: Any) -> Entry:
    if not is_state_name(name):
        raise ConfigError(f"state registry: {name!r} is not a valid state name")
    if type(entry) is dict:
        unknown = sorted(set(entry) - _ENTRY_KEYS)
        if unknown:
            raise ConfigError(
                f"state registry: {name} has the unknown key {unknown[0]!r}; "
                "an entry holds \"type\" and, optionally, \"max_values\""
            )
        kind = entry.get("type")
        cap = entry.get("max_values")
        if cap is not None and not (type(cap) is int and 1 <= cap <= MAX_VALUES_CAP):
            raise ConfigError(
                f"state registry: {name} has max_values {cap!r}; "
                f"it must be an integer from 1 to {MAX_VALUES_CAP}"
            )
    else:
        kind, cap = entry, None
    if kind not in STATE_TYPES:
        raise ConfigError(
            f"state registry: {name} has type {kind!r}; "
            f"it must be one of {', '.join(STATE_TYPES)}"
        )
    return kind if cap is None else {"type": kind, "max_values": cap}


def normalized_registry(registry: Mapping[Any, Any]) -> dict[str, Entry]:
    """A validated copy of a registry in its written form (an entry without a cap is its
    type alone); ConfigError names the first bad entry."""
    return {name: _checked_entry(name, entry) for name, entry in registry.items()}


def check_registry(registry: Mapping[Any, Any]) -> dict[str, str]:
    """The types of a registry (state name -> type), validated; ConfigError names the
    first bad entry."""
    return {
        name: entry if isinstance(entry, str) else entry["type"]
        for name, entry in normalized_registry(registry).items()
    }


def registry_caps(registry: Mapping[Any, Any]) -> dict[str, int]:
    """The `max_values` of each capped state of a registry, validated."""
    return {
        name: entry["max_values"]
        for name, entry in normalized_registry(registry).items()
        if isinstance(entry, dict)
    }


def parse_registry(data: bytes | str) -> dict[str, Entry]:
    """A registry from its JSON text, validated, in its written form."""
    try:
        registry = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"state registry: not JSON ({exc})") from exc
    if type(registry) is not dict:
        raise ConfigError(
            'state registry: must be a JSON object of state name -> type or '
            '{"type": ..., "max_values": ...}'
        )
    return normalized_registry(registry)
