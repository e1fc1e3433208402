"""The merge rules of one change (SPEC section 3), given what its author holds.

`judge` is the whole per-change decision: the first rule the change breaks
(reason and a human detail), or the author's holding after it. The engine
around it does the bookkeeping (overlay, tallies, events, versions).
"""

from __future__ import annotations

from schemas.limits import MAX_MEMBERS, MAX_NAMES
from schemas.records import Change
from schemas.rejections import FWW_CONFLICT, LIMIT_EXCEEDED, REMOVE_NOT_ALLOWED, TYPE_MISMATCH
from streams.state import Held

# (reason, detail, None) for a refused change; (None, "", new holding) for an accepted one.
Verdict = tuple[str | None, str, Held | None]


def judge(
    change: Change,
    fixed: str | None,
    registered: str | None,
    name_count: int,
    held: Held | None,
) -> Verdict:
    """Decide one shape-valid change.

    fixed: the type fixed for the name in this part (None while the name is new);
    registered: the registry's type for the name, if any; name_count: how many
    names the part has fixed; held: what the author holds for the name now.
    Returns (reason, detail, None) when refused, else (None, "", the new holding).
    """
    kind = change.type
    name = change.name
    if fixed is not None and fixed != kind:
        return TYPE_MISMATCH, f"{name} is a {fixed} state in this part, not {kind}", None
    if registered is not None and registered != kind:
        return TYPE_MISMATCH, f"{name} is registered as a {registered} state, not {kind}", None
    value = change.value
    if kind == "Set":
        return _judge_set(change.is_add, name, value, fixed, name_count, held)
    if not change.is_add:
        if kind != "LWWN":
            return REMOVE_NOT_ALLOWED, f"a {kind} value cannot be removed", None
        # Nobody holds a name that is not fixed yet, so the limit is the only question.
        if fixed is None and name_count >= MAX_NAMES:
            return _too_many_names()
        if held is None or (value is not None and value != held):
            return None, "", held  # no effect
        return None, "", None
    if kind == "FWW" and held is not None:
        shown = held.decode() if isinstance(held, bytes) else repr(held)
        return FWW_CONFLICT, f"{name} already holds {shown} for this identity", None
    if fixed is None and name_count >= MAX_NAMES:
        return _too_many_names()
    return None, "", value


def _judge_set(
    is_add: bool,
    name: str,
    value: bytes | None,
    fixed: str | None,
    name_count: int,
    held: Held | None,
) -> Verdict:
    if fixed is None and name_count >= MAX_NAMES:
        return _too_many_names()
    assert isinstance(value, bytes)  # decode_change gives every Set change a value
    if not isinstance(held, tuple):
        return (None, "", (value,)) if is_add else (None, "", None)
    if is_add:
        if value in held:
            return None, "", held
        if len(held) >= MAX_MEMBERS:
            detail = f"{name} already has {MAX_MEMBERS} members for this identity"
            return LIMIT_EXCEEDED, detail, None
        return None, "", (*held, value)
    if value not in held:
        return None, "", held
    left = tuple([member for member in held if member != value])
    return None, "", (left or None)


def _too_many_names() -> Verdict:
    return LIMIT_EXCEEDED, f"this part already has {MAX_NAMES} state names", None
