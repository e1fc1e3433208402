"""The registry of state types (like Layer's `customStates` / `registerState`).

A JSON object of state name -> type, e.g. `{"poll_choice": "FWW"}`. Every
change to a registered name must carry its type, from the first one on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.records import STATE_TYPES, is_state_name


def check_registry(registry: Mapping[Any, Any]) -> dict[str, str]:
    """A validated copy of a registry; ConfigError names the first bad entry."""
    checked: dict[str, str] = {}
    for name, kind in registry.items():
        if not is_state_name(name):
            raise ConfigError(f"state registry: {name!r} is not a valid state name")
        if kind not in STATE_TYPES:
            raise ConfigError(
                f"state registry: {name} has type {kind!r}; "
                f"it must be one of {', '.join(STATE_TYPES)}"
            )
        checked[name] = kind
    return checked


def parse_registry(data: bytes | str) -> dict[str, str]:
    """A registry from its JSON text."""
    try:
        registry = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"state registry: not JSON ({exc})") from exc
    if type(registry) is not dict:
        raise ConfigError("state registry: must be a JSON object of state name -> type")
    return check_registry(registry)
