"""State types and their registration, like Layer's `CRDT_TYPES`, `customStates` and
`registerState`: every state a model writes is registered with its type first."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum

import orjson

from msgstate.schemas.exceptions import ValidationError
from msgstate.schemas.records import STATE_TYPES, is_state_name
from msgstate.schemas.registry import check_registry


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
    """State name → wire type; a name keeps the type it was first registered with."""

    def __init__(self, states: Mapping[str, str] | None = None) -> None:
        self._types: dict[str, str] = {}
        self._lock = threading.Lock()
        for name, kind in (states or {}).items():
            self.register_state(name, kind)

    def register_state(self, name: str, kind: str) -> None:
        """Register `name` as a state of type `kind` (a CRDT_TYPES member)."""
        if not is_state_name(name):
            raise ValidationError(f"{name!r} is not a valid state name: 1-128 characters of "
                                  "A-Z a-z 0-9 _ . : -")
        wire = wire_type(kind)
        with self._lock:
            known = self._types.get(name)
            if known is not None and known != wire:
                raise ValidationError(f"state {name} is already registered as {known}, not {wire}")
            self._types[name] = wire

    def update(self, other: Mapping[str, str]) -> None:
        for name, kind in other.items():
            self.register_state(name, kind)

    def clear(self) -> None:
        with self._lock:
            self._types.clear()

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
                    base: Mapping[str, str] | None = None) -> dict[str, str]:
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
    return check_registry(merged)


def registry_json(models: Iterable[type[object]] = (),
                  base: Mapping[str, str] | None = None) -> bytes:
    """`export_registry` as the JSON text that `schemas.registry.parse_registry` reads."""
    return orjson.dumps(export_registry(models, base), option=orjson.OPT_SORT_KEYS)
