"""The contract between the pure engine and the stores that hold its state.

The engine never does I/O. For a batch of records it reads the current state
through a `StateView` (an in-memory store in replay and unit tests, a snapshot
loaded from Redis in one round trip in the workers) and returns a `StateDelta`:
every write the batch makes. A store applies the delta in one atomic step.

Values are kept in their canonical JSON encoding (`b'1'`, `b'"1"'`,
`b'true'`), never as Python objects: in Python `1 == True`, while in msgstate
`1`, `"1"` and `true` are three different values. A Set's value for one identity
is the tuple of its members' encodings, in the order they were added.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

# One value, canonically encoded with orjson (b'"red"', b'7', b'false').
Encoded = bytes
# What one identity holds for one state: a scalar encoding, or a Set's members.
Held = bytes | tuple[bytes, ...]

PartKey = tuple[str, str]  # (message_id, part_id)
ValueKey = tuple[str, str, str, str]  # (message_id, part_id, name, identity_id)
TallyKey = tuple[str, str, str, bytes]  # (message_id, part_id, name, encoded value)
Holdings = Mapping[str, Mapping[str, Held]]  # one part's holdings: name -> identity -> holding

STATE_TYPES = ("Set", "FWW", "LWW", "LWWN")


@dataclass(slots=True)
class PartMeta:
    """What is always loaded for a touched (message, part): small and bounded."""

    version: int = 0
    # name -> type, in the order the names were fixed (at most 64 entries).
    types: dict[str, str] = field(default_factory=dict)

    def copy(self) -> PartMeta:
        return PartMeta(self.version, dict(self.types))


class StateView(Protocol):
    """Read access to the state a batch needs; must answer for every key of `needs()`."""

    def part_meta(self, message_id: str, part_id: str) -> PartMeta:
        """The part's version and fixed types; an empty PartMeta for a new part."""

    def held(self, key: ValueKey) -> Held | None:
        """What the identity holds for that state, or None."""

    def seen(self, message_id: str, response_id: str) -> bool:
        """Whether that response id was already taken for that message (dedupe memory)."""


class PartStateView(StateView, Protocol):
    """A view that also hands out one part's state whole (optional, for speed).

    The engine reads through `part_state` when the view has it (instead of
    `held` and `seen`), and only reads: nothing returned is changed while a
    batch runs.
    """

    def part_state(
        self, message_id: str, part_id: str
    ) -> tuple[PartMeta, Holdings, Container[str]]:
        """The part's meta, its holdings (name -> identity -> holding), and the
        response ids taken for its message (what `seen` answers)."""


@dataclass(slots=True)
class StateNeeds:
    """The keys a batch reads, so a remote store can load them in one round trip."""

    parts: set[PartKey] = field(default_factory=set)
    values: set[ValueKey] = field(default_factory=set)
    response_ids: set[tuple[str, str]] = field(default_factory=set)  # (message_id, response_id)


class Loaded(NamedTuple):
    """What a remote store read for a batch's `StateNeeds`."""

    metas: dict[PartKey, PartMeta]
    held: dict[ValueKey, Held | None]  # None: known absent
    seen: dict[str, list[str]]  # message id -> its whole dedupe memory, oldest first
    # Parts whose every value is in `held`: a value of theirs it lacks is absent.
    whole: set[PartKey]


@dataclass(slots=True)
class StateDelta:
    """Every write of a batch. Applying it to the view's state gives the state after the batch."""

    # New meta of every part the batch changed (whole, it is small).
    parts: dict[PartKey, PartMeta] = field(default_factory=dict)
    # New holding per touched (message, part, name, identity); None deletes it.
    values: dict[ValueKey, Held | None] = field(default_factory=dict)
    # Tally count changes, non-zero only: (message, part, name, encoded value) -> +n / -n.
    tallies: dict[TallyKey, int] = field(default_factory=dict)
    # Response ids taken by this batch, per message, in order (for the dedupe memory).
    taken: list[tuple[str, str]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.parts or self.values or self.tallies or self.taken)
