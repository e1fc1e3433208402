"""The engine: a batch of decoded records in, events, rejections and writes out.

Pure: it reads the state through a `StateView` and never mutates it; every
write goes into the returned `StateDelta`, which doubles as the overlay that
lets later records of the batch see the writes of earlier ones. Replay, unit
tests and the workers all run this one implementation of SPEC sections 3-5.

A delta's PartMeta may share its `types` dict with the view's PartMeta (the
engine copies one only to change it): stores treat both as read-only.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

from msgstate.schemas.limits import MAX_MEMBERS, MAX_NAMES
from msgstate.schemas.records import Response
from msgstate.schemas.registry import check_registry
from msgstate.schemas.rejections import (
    DUPLICATE,
    FWW_CONFLICT,
    INVALID_CHANGE,
    LIMIT_EXCEEDED,
    REMOVE_NOT_ALLOWED,
    TYPE_MISMATCH,
    Rejection,
    rejection,
)
from msgstate.schemas.wording import with_article
from msgstate.streams.engine.state import Held, Holdings, PartKey, PartMeta, StateDelta, StateNeeds, StateView
from msgstate.streams.engine.summary import decode_held

Item = Response | Rejection
_ABSENT: Any = object()


class Outcome:
    """What one batch produced."""

    __slots__ = ("delta", "events", "rejections")

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []  # SPEC section 5, in the order they arise
        # (index of the item in the batch, rejection), in the order they arise.
        self.rejections: list[tuple[int, Rejection]] = []
        self.delta = StateDelta()


class _PartWork:
    """A part's meta during a batch; the view's `types` dict is copied only to be changed.

    With a `PartStateView`, `holdings` and `taken` are the view's own mappings for
    the part and its message, read directly; otherwise `holdings` is None (reads go
    through `StateView.held`) and `taken` asks `StateView.seen`.
    """

    __slots__ = ("changed", "holdings", "own_types", "taken", "types", "version")

    def __init__(self, meta: PartMeta, holdings: Holdings | None, taken: Container[str]) -> None:
        self.version = meta.version
        self.types = meta.types
        self.holdings = holdings
        self.taken = taken
        self.own_types = False
        self.changed = False


class _SeenFor:
    """`rid in _SeenFor(view.seen, mid)` asks the view whether that id was taken."""

    __slots__ = ("_message_id", "_seen")

    def __init__(self, seen: Callable[[str, str], bool], message_id: str) -> None:
        self._seen = seen
        self._message_id = message_id

    def __contains__(self, response_id: object) -> bool:
        return isinstance(response_id, str) and self._seen(self._message_id, response_id)


class Engine:
    """The rules of SPEC sections 3-5, with an optional registry of state types.

    Raises ConfigError for a registry with a bad name or type. With
    `events=False` versions still count but no event is built (replay without
    --changes); with `tallies=False` the delta carries no tally changes (for a
    store that counts tallies itself, like MemoryStore).
    """

    __slots__ = ("_events", "_registry", "_tallies")

    def __init__(
        self,
        registry: Mapping[str, str] | None = None,
        *,
        events: bool = True,
        tallies: bool = True,
    ) -> None:
        self._registry = check_registry(registry or {})
        self._events = events
        self._tallies = tallies

    @property
    def registry(self) -> Mapping[str, str]:
        return dict(self._registry)

    def needs(self, items: Sequence[Item]) -> StateNeeds:
        """Every key `apply_batch` may read for these items."""
        needs = StateNeeds()
        for item in items:
            if isinstance(item, dict):
                continue
            mid, pid, ident = item.message_id, item.part_id, item.identity_id
            needs.parts.add((mid, pid))
            needs.response_ids.add((mid, item.id))
            for change in item.changes:
                if change.error is None:
                    needs.values.add((mid, pid, change.name, ident))
        return needs

    def apply_batch(self, items: Sequence[Item], view: StateView) -> Outcome:
        """Apply the items in order. Rejections given as items pass through in place."""
        out = Outcome()
        delta = out.delta
        events = out.events
        refused = out.rejections
        values = delta.values
        tallies = delta.tallies
        taken_log = delta.taken
        registry = self._registry
        with_events = self._events
        with_tallies = self._tallies
        seen = view.seen
        view_held = view.held
        part_meta = view.part_meta
        part_state: Callable[[str, str], tuple[PartMeta, Holdings, Container[str]]] | None = (
            getattr(view, "part_state", None)
        )
        parts: dict[PartKey, _PartWork] = {}
        taken: set[tuple[str, str]] = set()
        absent = _ABSENT

        # A long loop on purpose: this is the hot path of every record. The rule
        # numbers below are those of SPEC section 3.
        for index, item in enumerate(items):
            if isinstance(item, dict):
                refused.append((index, item))
                continue
            rid, mid, pid, ident, changes, status, _ = item
            part_key = (mid, pid)
            part = parts.get(part_key)
            if part is None:
                if part_state is None:
                    part = _PartWork(part_meta(mid, pid), None, _SeenFor(seen, mid))
                else:
                    part = _PartWork(*part_state(mid, pid))
                parts[part_key] = part
            id_key = (mid, rid)
            if id_key in taken or rid in part.taken:
                refused.append((index, _whole(item, DUPLICATE, _duplicate_detail(rid))))
                continue
            taken.add(id_key)
            taken_log.append(id_key)

            types = part.types
            holdings = part.holdings
            # name -> [type, the author's holding before this response, and after it so far],
            # in the order of each name's first accepted change. A response of one change
            # (the most common) needs none: its one change is the whole story.
            touched: dict[str, list[Any]] | None = {} if len(changes) > 1 else None
            accepted = False

            position = -1
            for is_add, kind, name, value, _, error in changes:
                position += 1
                if error is not None:  # 1
                    refused.append((index, _refusal(item, position, INVALID_CHANGE, error)))
                    continue
                fixed = types.get(name)
                if (fixed is not None and fixed != kind) or (  # 2
                    registry and registry.get(name, kind) != kind
                ):
                    detail = _mismatch(name, kind, fixed, registry)
                    refused.append((index, _refusal(item, position, TYPE_MISMATCH, detail)))
                    continue
                if not is_add and (kind == "LWW" or kind == "FWW"):  # 3
                    detail = f"{with_article(kind)} value cannot be removed"
                    refused.append((index, _refusal(item, position, REMOVE_NOT_ALLOWED, detail)))
                    continue
                value_key = (mid, pid, name, ident)
                if fixed is None:
                    # Nobody holds a name that is not fixed yet: only the limit can refuse it.
                    if len(types) >= MAX_NAMES:  # 5
                        detail = _TOO_MANY_NAMES
                        refused.append((index, _refusal(item, position, LIMIT_EXCEEDED, detail)))
                        continue
                    held = None
                else:
                    held = values.get(value_key, absent)
                    if held is absent:
                        if holdings is None:
                            held = view_held(value_key)
                        else:
                            held_by = holdings.get(name)
                            held = None if held_by is None else held_by.get(ident)

                new: Held | None
                if kind == "Set":
                    if held is None:
                        new = (value,) if is_add else None
                    elif is_add:
                        if value in held:
                            new = held
                        elif len(held) >= MAX_MEMBERS:  # 5
                            detail = _full_set(name)
                            refused.append(
                                (index, _refusal(item, position, LIMIT_EXCEEDED, detail))
                            )
                            continue
                        else:
                            new = (*held, value)
                    elif value in held:
                        new = tuple([member for member in held if member != value]) or None
                    else:
                        new = held
                elif is_add:
                    if kind == "FWW" and held is not None:  # 4
                        detail = f"{name} already holds {_shown(held)} for this identity"
                        refused.append((index, _refusal(item, position, FWW_CONFLICT, detail)))
                        continue
                    new = value
                else:  # an LWWN remove: unset when no value is given or the value is held
                    new = None if not value or value == held else held

                # Accepted, even when it has no effect: the name is fixed from now on.
                if fixed is None:
                    if not part.own_types:
                        types = part.types = dict(types)
                        part.own_types = True
                    types[name] = kind
                    part.changed = True
                if touched is None:
                    accepted = True
                else:
                    entry = touched.get(name)
                    if entry is None:
                        touched[name] = [kind, held, new]
                    else:
                        entry[2] = new
                if new is held or new == held:
                    continue
                values[value_key] = new
                if not with_tallies:
                    continue
                if kind == "Set":  # a Set change adds or removes exactly its own member
                    tally = (mid, pid, name, value)
                    tallies[tally] = tallies.get(tally, 0) + (1 if is_add else -1)
                    continue
                if type(held) is bytes:
                    tally = (mid, pid, name, held)
                    tallies[tally] = tallies.get(tally, 0) - 1
                if type(new) is bytes:
                    tally = (mid, pid, name, new)
                    tallies[tally] = tallies.get(tally, 0) + 1

            # One event per state whose value for the author changed over the whole response.
            if touched is None:
                if not accepted or new is held or new == held:
                    continue
                part.version += 1
                part.changed = True
                if with_events:
                    events.append(
                        _event(mid, pid, rid, ident, status, name, kind, held, new, part.version)
                    )
                continue
            bumped = False
            for name, (kind, old, now) in touched.items():
                if now is old or now == old:
                    continue
                if not bumped:
                    part.version += 1
                    part.changed = bumped = True
                    if not with_events:
                        break
                events.append(
                    _event(mid, pid, rid, ident, status, name, kind, old, now, part.version)
                )

        metas = delta.parts
        for part_key, part in parts.items():
            if part.changed:
                metas[part_key] = PartMeta(part.version, part.types)
        if tallies:
            for tally in [tally for tally, n in tallies.items() if n == 0]:
                del tallies[tally]
        return out


def _event(
    mid: str,
    pid: str,
    rid: str,
    ident: str,
    status: str | None,
    name: str,
    kind: str,
    old: Held | None,
    now: Held | None,
    version: int,
) -> dict[str, Any]:
    """A summary-change event (SPEC section 5)."""
    return {
        "event_id": f"{mid}/{rid}/{name}",
        "message_id": mid,
        "part_id": pid,
        "response_id": rid,
        "identity_id": ident,
        "name": name,
        "type": kind,
        "old": decode_held(old),
        "new": decode_held(now),
        "version": version,
        "status_text": status,
    }


_TOO_MANY_NAMES = f"this part already has {MAX_NAMES} state names"


def _mismatch(name: str, kind: str, fixed: str | None, registry: Mapping[str, str]) -> str:
    if fixed is not None and fixed != kind:
        return f"{name} is {with_article(fixed)} state in this part, not {kind}"
    return f"{name} is registered as {with_article(registry[name])} state, not {kind}"


def _full_set(name: str) -> str:
    return f"{name} already has {MAX_MEMBERS} members for this identity"


def _shown(held: Held) -> str:
    return held.decode() if isinstance(held, bytes) else repr(held)


def _duplicate_detail(rid: str) -> str:
    return f"response {rid} was already taken for this message"


def _whole(item: Response, reason: str, detail: str) -> Rejection:
    return rejection(
        reason,
        detail,
        response_id=item.id,
        message_id=item.message_id,
        identity_id=item.identity_id,
    )


def _refusal(item: Response, position: int, reason: str, detail: str) -> Rejection:
    return rejection(
        reason,
        detail,
        response_id=item.id,
        message_id=item.message_id,
        identity_id=item.identity_id,
        change_index=position,
        change=item.changes[position].raw,
    )
