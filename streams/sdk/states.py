"""State types and their registration, like Layer's `CRDT_TYPES`, `customStates` and
`registerState`: every state a model writes is registered with its type first."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any

import orjson

from msgstate.schemas.exceptions import ConfigError, ValidationError
from msgstate.schemas.records import STATE_TYPES, is_state_name
from msgstate.schemas.registry import Entry, normalized_registry


class CRDT_TYPES(StrEnum):
    """The merge rules, by their Layer names; each member is its wire name."""

    SET = "Set"
    FIRST_WRITER_WINS = "FWW"
    LAST_WRITER_WINS = "LWW"
    LAST_WRITER_WINS_NULLABLE = "LWWN"


def wire_type(kind: str) -> str:
    """The wire name of a type given as a CRDT_TYPES member or a wire name."""
    text = str(kind.value if isinstance(kind, CRDT_TYPES) else kind)
    if text not in STATE_TYPES:
        raise ValidationError(f"{kind!r} is not a state type; use CRDT_TYPES "
                              f"({', '.join(STATE_TYPES)})")
    return text


class StateRegistry(Mapping[str, str]):
    """State name → wire type; a name keeps the type (and the cap on its distinct values,
    `max_values`) it was first registered with."""

    def __init__(self, states: Mapping[str, Any] | None = None) -> None:
        self._types: dict[str, str] = {}
        self._caps: dict[str, int] = {}
        self._lock = threading.Lock()
        self.update(states.entries() if isinstance(states, StateRegistry) else states or {})

    def register_state(self, name: str, kind: str, max_values: int | None = None) -> None:
        """Register `name` as a state of type `kind` (a CRDT_TYPES member); `max_values`
        caps its distinct values in one message part (SPEC section 3)."""
        if not is_state_name(name):
            raise ValidationError(f"{name!r} is not a valid state name: 1-128 characters of "
                                  "A-Z a-z 0-9 _ . : -")
        wire = wire_type(kind)
        if max_values is not None:
            try:
                normalized_registry({name: {"type": wire, "max_values": max_values}})
            except ConfigError as exc:
                raise ValidationError(str(exc)) from exc
        with self._lock:
            known = self._types.get(name)
            if known is not None and known != wire:
                raise ValidationError(f"state {name} is already registered as {known}, not {wire}")
            cap = self._caps.get(name)
            if known is not None and cap != max_values:
                raise ValidationError(f"state {name} is already registered with max_values "
                                      f"{cap}, not {max_values}")
            self._types[name] = wire
            if max_values is not None:
                self._caps[name] = max_values

    def update(self, other: Mapping[str, Any]) -> None:
        """Register every entry: a type, or {"type": ..., "max_values": ...}."""
        for name, entry in other.items():
            if isinstance(entry, Mapping):
                self.register_state(name, entry.get("type", ""), entry.get("max_values"))
            else:
                self.register_state(name, entry)

    def entries(self) -> dict[str, Entry]:
        """The registry in its written form: a type, or the type with its max_values."""
        with self._lock:
            return {
                name: kind if name not in self._caps
                else {"type": kind, "max_values": self._caps[name]}
                for name, kind in self._types.items()
            }

    def clear(self) -> None:
        with self._lock:
            self._types.clear()
            self._caps.clear()

    def __getitem__(self, name: str) -> str:
        return self._types[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._types))

    def __len__(self) -> int:
        return len(self._types)

    def __repr__(self) -> str:
        return f"StateRegistry({self._types!r})"


# States every message type supports (Layer's `Client.customStates`).
custom_states = StateRegistry()


def export_registry(models: Iterable[type[object]] = (),
                    base: Mapping[str, Any] | None = None) -> dict[str, Entry]:
    """The workers' state-type registry (SPEC section 3) for these model classes.

    It holds `custom_states` (or `base`) and every model's `register_all_states()`. A name
    registered with two types cannot be enforced by the workers and raises ValidationError.
    """
    merged = StateRegistry(custom_states if base is None else base)
    for model in models:
        states = getattr(model, "registered_states", None)
        if states is None:
            raise ValidationError(f"{model!r} is not a MessageTypeModel class")
        merged.update(states())
    return normalized_registry(merged.entries())


def registry_json(models: Iterable[type[object]] = (),
                  base: Mapping[str, Any] | None = None) -> bytes:
    """`export_registry` as the JSON text that `schemas.registry.parse_registry` reads."""
    return orjson.dumps(export_registry(models, base), option=orjson.OPT_SORT_KEYS)
