"""The contract between the pure engine and the stores that hold its state.

The engine never does I/O. For a batch of records it reads the current state
through a `StateView` (an in-memory store in replay and unit tests, a snapshot
loaded from Redis in one round trip in the workers) and returns a `StateDelta`:
every write the batch makes. A store applies the delta in one atomic step.

Values are kept in their canonical JSON encoding (`b'1'`, `b'"1"'`,
`b'true'`, `b'1.0'`, `b'{"a":1,"b":2}'`: SPEC section 2, schemas/values.py),
never as Python objects: in Python `1 == True == 1.0`, while in msgstate `1`,
`1.0`, `"1"` and `true` are four different values. Equal values have equal
encodings, so a store compares bytes only. A Set's value for one identity is the
tuple of its members' encodings, in the order they were added.

What a store keeps (v1.1), and how each piece is written from a `StateDelta`:

- per (message, part): its `PartMeta` (version, fixed types), from `parts`;
- per (message, part, name, identity): the holding, from `values` (None deletes);
- per (message, part, name): the tally, encoded value -> count of identities
  holding it, from `tallies` (a count that reaches 0 is dropped, so the number
  of entries is the state's number of distinct values: `distinct`);
- per message: its dedupe memory (`taken`) and its deletion mark (`deleted`,
  kept for good, with the message's dedupe memory and its parts' metas; its
  holdings and tallies are gone, the delta removed them);
- per message: the part ids it has state in (every key of `parts` or `values`
  names one), for deleting a message whole;
- per identity: the index of the (message, part, name) where it holds a value.
  It follows `values` exactly and needs no field of its own: a holding set
  (not None) adds its (message, part, name) to its identity's index, a None
  removes it. The workers keep one index per input partition (an erasure is
  published to every partition), replay one for its store. Erasing an identity
  reads its index, so it costs what the identity holds, not what the store holds;
- the erasure ids taken (`erasures`): an erasure already taken is skipped.

All of one delta is applied in one atomic step (one Lua script in Redis), the
index and the deletion marks with the holdings they describe.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

# One value, canonically encoded with orjson (b'"red"', b'7', b'false').
Encoded = bytes
# What one identity holds for one state: a scalar encoding, or a Set's members.
Held = bytes | tuple[bytes, ...]

PartKey = tuple[str, str]  # (message_id, part_id)
ValueKey = tuple[str, str, str, str]  # (message_id, part_id, name, identity_id)
TallyKey = tuple[str, str, str, bytes]  # (message_id, part_id, name, encoded value)
StateKey = tuple[str, str, str]  # (message_id, part_id, name): one state of one part
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

    # -- v1.1 ------------------------------------------------------------------

    def deleted(self, message_id: str) -> bool:
        """Whether the message was deleted (SPEC section 3a); asked for `StateNeeds.deleted`."""

    def tally_count(self, key: TallyKey) -> int:
        """How many identities hold that value in that state of that part (0: nobody).
        Asked for any value of a state in `StateNeeds.capped`."""

    def distinct(self, key: StateKey) -> int:
        """How many distinct values that state's tally holds in that part (its entries
        with a count above 0). Asked for a state in `StateNeeds.capped`."""

    def parts_of(self, message_id: str) -> Collection[str]:
        """The part ids the message has state in (a meta or a holding); asked for
        `StateNeeds.whole`, with `part_meta` and `part_holdings` of each."""

    def part_holdings(self, message_id: str, part_id: str) -> Holdings:
        """One part's holdings whole (name -> identity -> holding); asked for
        `StateNeeds.whole`."""

    def identity_index(self, identity_id: str) -> Collection[StateKey]:
        """The identity's index: every (message, part, name) where it holds a value.
        Asked for `StateNeeds.identities`, with `held` and `part_meta` of each."""

    def erasure_taken(self, erasure_id: str) -> bool:
        """Whether that erasure id was already taken (then the erasure is skipped)."""


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
    # v1.1. Messages whose deletion mark is read: every message a record names.
    deleted: set[str] = field(default_factory=set)
    # States whose tally is read (`tally_count` of any value, `distinct`): those with
    # `max_values` that the batch adds to. A capped tally has at most `max_values`
    # entries, so a remote store can load it whole.
    capped: set[StateKey] = field(default_factory=set)
    # Messages read whole (`parts_of`, then each part's `part_meta` and `part_holdings`): deletions.
    whole: set[str] = field(default_factory=set)
    # Identities whose index is read (`identity_index`, then `held` and `part_meta` of each
    # entry): erasures.
    identities: set[str] = field(default_factory=set)
    # Erasure ids whose `erasure_taken` is read.
    erasures: set[str] = field(default_factory=set)


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
    # An engine built with `tallies=False` gives them only for states with `max_values`
    # (whose cap reads `tally_count` and `distinct`): enough for a store that renders
    # tallies from the holdings, like MemoryStore.
    tallies: dict[TallyKey, int] = field(default_factory=dict)
    # Response and deletion ids taken by this batch, per message, in order (the dedupe memory).
    taken: list[tuple[str, str]] = field(default_factory=list)
    # v1.1. Messages deleted by this batch (their holdings are None in `values`).
    deleted: list[str] = field(default_factory=list)
    # Erasure ids taken by this batch.
    erasures: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.parts or self.values or self.tallies or self.taken or self.deleted
            or self.erasures
        )
