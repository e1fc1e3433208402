"""The Response Summary (SPEC section 4), rendered from plain stored state.

Any store can call `render_summary` with what it holds for one part: the
in-memory store in replay and tests, the Redis store after loading its hashes.
A `SummaryRenderer` keeps its decoding caches across parts, for rendering
many summaries in one go.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from msgstate.schemas.exceptions import ValidationError
from msgstate.schemas.values import TallyPayload, Value, tally_key
from msgstate.streams.engine.state import Held, PartMeta

Tallies = Mapping[str, Mapping[bytes, int]]  # name -> encoded value -> identities holding it
_NOTHING: Mapping[str, Held] = {}


def decode_held(held: Held | None) -> Value | list[Value] | None:
    """A holding as JSON data: a value, a Set's member list, or None."""
    if held is None:
        return None
    if isinstance(held, bytes):
        value: Value = orjson.loads(held)
        return value
    members: list[Value] = orjson.loads(b"[" + b",".join(held) + b"]")
    return members


def count_tallies(held_by: Mapping[str, Held]) -> dict[bytes, int]:
    """One state's tally counted from its holdings (each Set member counts once)."""
    counts: dict[bytes, int] = {}
    get = counts.get
    for held in held_by.values():
        if isinstance(held, bytes):
            counts[held] = get(held, 0) + 1
        else:
            for member in held:
                counts[member] = get(member, 0) + 1
    return counts


class SummaryRenderer:
    """Renders summaries, decoding each distinct value encoding once."""

    __slots__ = ("_keys", "_scalars", "_sets")

    def __init__(self) -> None:
        self._scalars: dict[bytes, Value] = {}
        self._sets: dict[tuple[bytes, ...], tuple[Value, ...]] = {}
        self._keys: dict[bytes, tuple[int, TallyPayload, Value]] = {}

    def render(
        self,
        message_id: str,
        part_id: str,
        meta: PartMeta,
        holdings: Mapping[str, Mapping[str, Held]],
        tallies: Tallies | None = None,
        clip: int | None = None,
    ) -> dict[str, Any]:
        """See `render_summary`."""
        if clip is not None and clip < 0:
            raise ValidationError(f"clip must be 0 or more, not {clip}")
        states: dict[str, Any] = {}
        for name, kind in meta.types.items():
            held_by = holdings.get(name) or _NOTHING
            total = len(held_by)
            if tallies is None and (clip is None or total <= clip):
                # The usual case: values shown and tallies counted in one pass.
                shown, counts = self._values_and_counts(held_by)
                states[name] = {"type": kind, "values": shown, "tally": self._tally(counts)}
                continue
            clipped = clip is not None and total > clip
            visible: Mapping[str, Held] = held_by
            if clipped:
                visible = {ident: held_by[ident] for ident in sorted(held_by)[:clip]}
            state: dict[str, Any] = {
                "type": kind,
                "values": self._values_and_counts(visible)[0],
                "tally": self._tally(
                    count_tallies(held_by) if tallies is None else tallies.get(name) or {}
                ),
            }
            if clipped:
                state["clipped"] = True
                state["identities"] = total
            states[name] = state
        return {
            "message_id": message_id,
            "part_id": part_id,
            "version": meta.version,
            "states": states,
        }

    def _values_and_counts(
        self, held_by: Mapping[str, Held]
    ) -> tuple[dict[str, Any], dict[bytes, int]]:
        """`_values` and `count_tallies` in one pass over the holdings."""
        shown: dict[str, Any] = {}
        counts: dict[bytes, int] = {}
        get = counts.get
        sets = self._sets
        scalars = self._scalars
        for ident, held in held_by.items():
            if isinstance(held, bytes):
                value = scalars.get(held)
                if value is None:
                    value = scalars[held] = orjson.loads(held)
                shown[ident] = value
                counts[held] = get(held, 0) + 1
            else:
                members = sets.get(held)
                if members is None:
                    members = sets[held] = tuple(orjson.loads(b"[" + b",".join(held) + b"]"))
                shown[ident] = list(members)
                for member in held:
                    counts[member] = get(member, 0) + 1
        return shown, counts

    def _tally(self, counts: Mapping[bytes, int]) -> list[dict[str, Any]]:
        keys = self._keys
        entries = []
        for encoded, n in counts.items():
            if n <= 0:
                continue
            key = keys.get(encoded)
            if key is None:
                _, rank, payload = tally_key(encoded, 0)
                key = keys[encoded] = (rank, payload, orjson.loads(encoded))
            entries.append((-n, key[0], key[1], key[2]))
        # Distinct encodings never tie on (count, rank, payload): the values are not compared.
        entries.sort()
        return [{"value": value, "count": -negative} for negative, _, _, value in entries]


def render_summary(
    message_id: str,
    part_id: str,
    meta: PartMeta,
    holdings: Mapping[str, Mapping[str, Held]],
    tallies: Tallies | None = None,
    clip: int | None = None,
) -> dict[str, Any]:
    """The summary of one part.

    holdings: name -> identity -> holding. tallies: name -> encoded value ->
    count, as a store keeps them (counts of 0 or less are ignored); None counts
    them from the holdings. With `clip`, each state lists at most that many
    identities, the first in code-point order, and says how many there are.
    Identities are listed in the holdings' order otherwise.
    """
    return SummaryRenderer().render(message_id, part_id, meta, holdings, tallies, clip)


def deleted_summary(message_id: str, part_id: str, version: int) -> dict[str, Any]:
    """The summary of a part of a deleted message (SPEC section 3a)."""
    return {
        "message_id": message_id,
        "part_id": part_id,
        "version": version,
        "states": {},
        "deleted": True,
    }


def render_tally(counts: Mapping[bytes, int]) -> list[dict[str, Any]]:
    """Tally entries: count descending, then false, true, numbers, strings, arrays, objects."""
    return SummaryRenderer()._tally(counts)
