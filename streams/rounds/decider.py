"""The engine over a cache of the state in Redis, as a worker's round uses it: the `Decider`.

A round goes: `decide` (decode the records; returns the `Read` of what the cache lacks, or
None) → the store reads it → `load` the reply (which may return a second `Read`: what a
deletion or an erasure found it needs, read and loaded the same way) → `apply` (the
`Decision`: events, rejections and the `Writes` to persist) → `changelog` (the writes as
changelog records, when the worker logs them) → `commit` once the store holds the
writes, or `clear` when their fate is unknown. Two implementations, held equal by property
tests: `PythonDecider` (the reference, streams/rounds/python_decider.py) and `CompiledDecider`
(streams/rounds/compiled_decider.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from msgstate.schemas.rejections import Rejection
from msgstate.streams.rounds.changelog import RoundLog
from msgstate.streams.storage.protocol import Read, Writes


@dataclass(slots=True)
class Decision:
    """What one round's records produced."""

    # (record key: the message id in UTF-8, record value: the event as compact JSON, keys sorted)
    events: list[tuple[bytes, bytes]] = field(default_factory=list)
    # (index of the record in the round, rejection), in the order they arise
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)
    writes: Writes = field(default_factory=Writes)


class Decider(Protocol):
    @property
    def restarts(self) -> int:
        """Times the cache passed its limit of entries and started again empty."""

    def decide(self, values: Sequence[bytes], authentic: Sequence[bool] | None = None) -> Read | None:
        """Take a round's record values (and each one's signature verdict, all True when
        omitted); returns what they read that the cache does not hold, or None."""

    def load(self, reply: Any) -> Read | None:
        """Take in the store's reply to the `Read`; returns what the round reads next, or None."""

    def apply(self) -> Decision:
        """Decide the round taken by `decide`."""

    def changelog(self, where: Callable[[str], int], last: Mapping[int, int]) -> RoundLog:
        """The applied round's state changelog records (streams/rounds/changelog.py), as
        `round_records` makes them of its writes; `where` finds a message's partition, `last`
        is each round partition's last offset. Asked before `commit`."""

    def commit(self) -> None:
        """The store holds the round's writes: the cache keeps them."""

    def clear(self) -> None:
        """Drop everything held; the next round reads what it needs again."""
