"""The Response Summary (SPEC section 4), rendered from plain stored state.

Any store can call `render_summary` with what it holds for one part: the
in-memory store in replay and tests, the Redis store after loading its hashes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import chain
from typing import Any, cast

import orjson

from schemas.exceptions import ValidationError
from schemas.values import Value, tally_key
from streams.state import Held, PartMeta

_ABSENT: Any = object()


def decode_held(held: Held | None) -> Value | list[Value] | None:
    """A holding as JSON data: a value, a Set's member list, or None."""
    if held is None:
        return None
    if isinstance(held, bytes):
        value: Value = orjson.loads(held)
        return value
    members: list[Value] = orjson.loads(b"[" + b",".join(held) + b"]")
    return members


def render_summary(
    message_id: str,
    part_id: str,
    meta: PartMeta,
    holdings: Mapping[str, Mapping[str, Held]],
    tallies: Mapping[str, Mapping[bytes, int]],
    clip: int | None = None,
) -> dict[str, Any]:
    """The summary of one part.

    holdings: name -> identity -> holding; tallies: name -> encoded value -> count
    (counts of 0 or less are ignored). With `clip`, each state lists at most that
    many identities, the first in code-point order, and says how many there are.
    """
    if clip is not None and clip < 0:
        raise ValidationError(f"clip must be 0 or more, not {clip}")
    states: dict[str, Any] = {}
    for name, kind in meta.types.items():
        held_by = holdings.get(name) or {}
        identities = sorted(held_by)
        total = len(identities)
        clipped = clip is not None and total > clip
        if clipped:
            identities = identities[:clip]
        if kind == "Set":
            shown = {ident: decode_held(held_by[ident]) for ident in identities}
        else:
            # Scalars repeat across identities: decode each distinct encoding once.
            decoded: dict[Held, Any] = {}
            shown = {}
            for ident in identities:
                held = held_by[ident]
                value = decoded.get(held, _ABSENT)
                if value is _ABSENT:
                    value = decoded[held] = decode_held(held)
                shown[ident] = value
        state: dict[str, Any] = {
            "type": kind,
            "values": shown,
            "tally": render_tally(tallies.get(name) or {}),
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


def count_tallies(
    holdings: Mapping[str, Mapping[str, Held]], types: Mapping[str, str]
) -> dict[str, Counter[bytes]]:
    """Tallies counted from holdings (name -> encoded value -> identities holding it)."""
    tallies: dict[str, Counter[bytes]] = {}
    for name, held_by in holdings.items():
        if types.get(name) == "Set":
            members = cast("Iterable[tuple[bytes, ...]]", held_by.values())
            tallies[name] = Counter(chain.from_iterable(members))
        else:
            tallies[name] = Counter(cast("Iterable[bytes]", held_by.values()))
    return tallies


def render_tally(counts: Mapping[bytes, int]) -> list[dict[str, Any]]:
    """Tally entries: count descending, then false, true, integers, strings by code point."""
    ordered = sorted(
        ((encoded, n) for encoded, n in counts.items() if n > 0),
        key=lambda entry: tally_key(entry[0], entry[1]),
    )
    return [{"value": orjson.loads(encoded), "count": n} for encoded, n in ordered]
