"""The engine: a batch of decoded records in, events, rejections and writes out.

Pure: it reads the state through a `StateView` and never mutates it; every
write goes into the returned `StateDelta`, which doubles as the overlay that
lets later records of the batch see the writes of earlier ones. Replay, unit
tests and the workers all run this one implementation of SPEC sections 3-5
(deletions and erasures, section 3a, in engine_removals.py).

A delta's PartMeta may share its `types` dict with the view's PartMeta (the
engine copies one only to change it): stores treat both as read-only.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any, NamedTuple

from msgstate.schemas.limits import MAX_MEMBERS, MAX_NAMES
from msgstate.schemas.records import KIND_DELETE, KIND_ERASE, KIND_RESPONSE, Deletion, Erasure, Response
from msgstate.schemas.registry import check_registry, registry_caps
from msgstate.schemas.rejections import (
    DUPLICATE,
    FWW_CONFLICT,
    INVALID_CHANGE,
    LIMIT_EXCEEDED,
    MESSAGE_DELETED,
    REMOVE_NOT_ALLOWED,
    TYPE_MISMATCH,
    Rejection,
    rejection,
)
from msgstate.schemas.wording import with_article
from msgstate.streams.engine.state import (
    Held,
    Holdings,
    PartKey,
    PartMeta,
    StateDelta,
    StateKey,
    StateNeeds,
    StateView,
    TallyKey,
)
from msgstate.streams.engine.summary import decode_held

Item = Response | Deletion | Erasure | Rejection
_ABSENT: Any = object()
CAUSE_RESPONSE = KIND_RESPONSE  # an event's cause is the kind of its record
CAUSE_DELETE = KIND_DELETE
CAUSE_ERASE = KIND_ERASE


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

    __slots__ = ("changed", "deleted", "holdings", "own_types", "taken", "types", "version")

    def __init__(self, meta: PartMeta, holdings: Holdings | None, taken: Container[str]) -> None:
        self.version = meta.version
        self.types = meta.types
        self.holdings = holdings
        self.taken = taken
        self.own_types = False
        self.changed = False
        self.deleted = False  # the message is deleted (SPEC section 3a)


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

    Raises ConfigError for a bad registry (schemas/registry.py: a type, or
    `{"type", "max_values"}` per name). With `events=False` versions still count
    but no event is built (replay without --changes); with `tallies=False` the
    delta carries tally changes only for capped states (for a store that counts
    tallies itself when it renders, like MemoryStore).
    """

    __slots__ = ("_caps", "_events", "_registry", "_tallies")

    def __init__(
        self,
        registry: Mapping[str, Any] | None = None,
        *,
        events: bool = True,
        tallies: bool = True,
    ) -> None:
        self._registry = check_registry(registry or {})
        self._caps = registry_caps(registry or {})
        self._events = events
        self._tallies = tallies

    @property
    def registry(self) -> Mapping[str, str]:
        """The registry's types (name -> type)."""
        return dict(self._registry)

    @property
    def caps(self) -> Mapping[str, int]:
        """The registry's `max_values` (name -> cap), for the capped states."""
        return dict(self._caps)

    def needs(self, items: Sequence[Item]) -> StateNeeds:
        """Every key `apply_batch` may read for these items."""
        needs = StateNeeds()
        caps = self._caps
        for item in items:
            kind = type(item)
            if kind is Response:
                mid, pid, ident = item.message_id, item.part_id, item.identity_id  # type: ignore[union-attr]
                needs.parts.add((mid, pid))
                needs.response_ids.add((mid, item.id))  # type: ignore[union-attr]
                needs.deleted.add(mid)
                for change in item.changes:  # type: ignore[union-attr]
                    if change.error is None:
                        needs.values.add((mid, pid, change.name, ident))
                        if caps and change.is_add and change.name in caps:
                            needs.capped.add((mid, pid, change.name))
            elif kind is Deletion:
                needs.response_ids.add((item.message_id, item.id))  # type: ignore[union-attr]
                needs.deleted.add(item.message_id)  # type: ignore[union-attr]
                needs.whole.add(item.message_id)  # type: ignore[union-attr]
            elif kind is Erasure:
                needs.identities.add(item.identity_id)  # type: ignore[union-attr]
                needs.erasures.add(item.id)  # type: ignore[union-attr]
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
        caps = self._caps
        view_deleted = view.deleted
        deleted_now: set[str] = set()  # messages deleted by this batch
        # Per capped state, the values whose tally this batch changed (for `distinct`).
        capped_touched: dict[StateKey, set[bytes]] = {}

        def work(mid: str, pid: str, of_response: bool = False) -> _PartWork:
            part = parts.get((mid, pid))
            if part is None:
                if part_state is None:
                    part = _PartWork(part_meta(mid, pid), None, _SeenFor(seen, mid))
                else:
                    part = _PartWork(*part_state(mid, pid))
                # Only a response asks the view: an erasure finds no deleted message (a
                # deletion emptied its index), a deletion marks its own parts.
                part.deleted = mid in deleted_now or (of_response and view_deleted(mid))
                parts[(mid, pid)] = part
            return part

        def count(key: TallyKey, change: int) -> None:
            """A tally change, kept apart for a capped state (whose `distinct` it moves)."""
            tallies[key] = tallies.get(key, 0) + change
            mid, pid, name, value = key
            if caps and name in caps:
                touched = capped_touched.get((mid, pid, name))
                if touched is None:
                    touched = capped_touched[(mid, pid, name)] = set()
                touched.add(value)

        def over_cap(mid: str, pid: str, name: str, value: bytes, cap: int) -> bool:
            """Whether adding `value` would put a new value in a full capped tally."""
            key = (mid, pid, name, value)
            if view.tally_count(key) + tallies.get(key, 0) > 0:
                return False  # someone holds it already
            state = (mid, pid, name)
            distinct = view.distinct(state)
            for other in capped_touched.get(state, ()):
                other_key = (mid, pid, name, other)
                before = view.tally_count(other_key)
                after = before + tallies.get(other_key, 0)
                distinct += (after > 0) - (before > 0)
            return distinct >= cap

        # A long loop on purpose: this is the hot path of every record. The rule
        # numbers below are those of SPEC section 3.
        for index, item in enumerate(items):
            if type(item) is not Response:
                if isinstance(item, dict):
                    refused.append((index, item))
                elif type(item) is Deletion:
                    counted = _Counting(count, caps, with_tallies)
                    _delete(item, index, out, work, counted, view, parts, taken, deleted_now,
                            with_events)
                else:
                    counted = _Counting(count, caps, with_tallies)
                    _erase(item, out, work, counted, view, with_events)  # type: ignore[arg-type]
                continue
            rid, mid, pid, ident, changes, status, _ = item
            part_key = (mid, pid)
            part = parts.get(part_key)
            if part is None:  # `work(mid, pid, True)`, inline on the hot path
                if part_state is None:
                    part = _PartWork(part_meta(mid, pid), None, _SeenFor(seen, mid))
                else:
                    part = _PartWork(*part_state(mid, pid))
                part.deleted = mid in deleted_now or view_deleted(mid)
                parts[part_key] = part
            id_key = (mid, rid)
            if id_key in taken or rid in part.taken:
                refused.append((index, _whole(item, DUPLICATE, _duplicate_detail(rid))))
                continue
            if part.deleted:
                refused.append((index, _whole(item, MESSAGE_DELETED, _DELETED_DETAIL)))
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
                if (
                    is_add
                    and caps
                    and name in caps
                    and new is not held
                    and new != held
                    and over_cap(mid, pid, name, value, caps[name])
                ):  # 5
                    detail = _full_tally(name, caps[name])
                    refused.append((index, _refusal(item, position, LIMIT_EXCEEDED, detail)))
                    continue

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
                if caps and name in caps:
                    if kind == "Set":
                        count((mid, pid, name, value), 1 if is_add else -1)
                        continue
                    if type(held) is bytes:
                        count((mid, pid, name, held), -1)
                    if type(new) is bytes:
                        count((mid, pid, name, new), 1)
                    continue
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
    cause: str = CAUSE_RESPONSE,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A summary-change event (SPEC section 5)."""
    return {
        "event_id": f"{mid}/{rid}/{name}" if event_id is None else event_id,
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
        "cause": cause,
    }


Work = Callable[[str, str], _PartWork]


class _Counting(NamedTuple):
    """How a removal counts tallies: all of them, or only the capped states'."""

    bump: Callable[[TallyKey, int], None]
    caps: Mapping[str, int]
    all: bool

    def drop(self, mid: str, pid: str, name: str, held: Held) -> None:
        if self.all or name in self.caps:
            for member in (held,) if isinstance(held, bytes) else held:
                self.bump((mid, pid, name, member), -1)


def _delete(
    item: Deletion,
    index: int,
    out: Outcome,
    work: Work,
    counted: _Counting,
    view: StateView,
    parts: dict[PartKey, _PartWork],
    taken: set[tuple[str, str]],
    deleted_now: set[str],
    with_events: bool,
) -> None:
    """A `delete_message` record (SPEC section 3a): checks, then every holding removed."""
    rid, mid = item.id, item.message_id
    id_key = (mid, rid)
    if id_key in taken or view.seen(mid, rid):
        out.rejections.append((index, _whole(item, DUPLICATE, _duplicate_detail(rid))))
        return
    if mid in deleted_now or view.deleted(mid):
        out.rejections.append((index, _whole(item, MESSAGE_DELETED, _DELETED_DETAIL)))
        return
    taken.add(id_key)
    out.delta.taken.append(id_key)
    out.delta.deleted.append(mid)
    values = out.delta.values
    # The message's holdings whole: the view's, under this batch's writes.
    written = [(key, held) for key, held in values.items() if key[0] == mid]
    stored = set(view.parts_of(mid))
    part_ids = stored | {pid for (m, pid) in parts if m == mid} | {key[1] for key, _ in written}
    removals: list[tuple[str, str, str, Held]] = []  # (part, name, identity, holding)
    for pid in part_ids:
        work(mid, pid)  # marks the part as deleted below
        now = {
            (name, ident): held
            for name, held_by in (view.part_holdings(mid, pid) if pid in stored else {}).items()
            for ident, held in held_by.items()
        }
        for key, held in written:
            if key[1] == pid:
                now[(key[2], key[3])] = held  # type: ignore[assignment]
        removals += [(pid, name, ident, held) for (name, ident), held in now.items() if held]
    for (m, _), part in parts.items():
        if m == mid:
            part.deleted = True
    deleted_now.add(mid)
    removals.sort(key=lambda removal: removal[:3])
    _remove(item, mid, removals, CAUSE_DELETE, out, work, counted, with_events)


def _erase(
    item: Erasure,
    out: Outcome,
    work: Work,
    counted: _Counting,
    view: StateView,
    with_events: bool,
) -> None:
    """An `erase_identity` record (SPEC section 3a): the identity's every holding removed."""
    rid, ident = item.id, item.identity_id
    delta = out.delta
    if rid in delta.erasures or view.erasure_taken(rid):
        return  # the same erasure, seen before: skipped silently
    delta.erasures.append(rid)
    values = delta.values
    # Where the identity holds a value: its index, under this batch's writes.
    where = set(view.identity_index(ident))
    where.update((key[0], key[1], key[2]) for key in values if key[3] == ident)
    found: list[tuple[str, str, str, Held]] = []
    for mid, pid, name in sorted(where):
        key = (mid, pid, name, ident)
        held = values.get(key, _ABSENT)
        if held is _ABSENT:
            held = view.held(key)
        if held:
            found.append((mid, pid, name, held))
    # In (message, part, name) order already; one message at a time.
    start = 0
    while start < len(found):
        mid = found[start][0]
        end = start
        while end < len(found) and found[end][0] == mid:
            end += 1
        removals = [(pid, name, ident, held) for _, pid, name, held in found[start:end]]
        _remove(item, mid, removals, CAUSE_ERASE, out, work, counted, with_events)
        start = end


def _remove(
    item: Deletion | Erasure,
    mid: str,
    removals: list[tuple[str, str, str, Held]],
    cause: str,
    out: Outcome,
    work: Work,
    counted: _Counting,
    with_events: bool,
) -> None:
    """Remove holdings of one message, in (part, name, identity) order: tallies drop, each
    part that lost one takes one version step, one event per holding."""
    values = out.delta.values
    rid, status = item.id, item.status_text
    bumped: set[str] = set()
    for pid, name, ident, held in removals:
        part = work(mid, pid)
        if pid not in bumped:
            bumped.add(pid)
            part.version += 1
            part.changed = True
        values[(mid, pid, name, ident)] = None
        counted.drop(mid, pid, name, held)
        if with_events:
            out.events.append(
                _event(
                    mid, pid, rid, ident, status, name, part.types[name], held, None,
                    part.version, cause, f"{mid}/{rid}/{pid}/{name}/{ident}",
                )
            )


_TOO_MANY_NAMES = f"this part already has {MAX_NAMES} state names"
_DELETED_DETAIL = "the message was deleted"


def _mismatch(name: str, kind: str, fixed: str | None, registry: Mapping[str, str]) -> str:
    if fixed is not None and fixed != kind:
        return f"{name} is {with_article(fixed)} state in this part, not {kind}"
    return f"{name} is registered as {with_article(registry[name])} state, not {kind}"


def _full_tally(name: str, cap: int) -> str:
    return f"{name} already holds max_values={cap} distinct values in this part"


def _full_set(name: str) -> str:
    return f"{name} already has {MAX_MEMBERS} members for this identity"


def _shown(held: Held) -> str:
    return held.decode() if isinstance(held, bytes) else repr(held)


def _duplicate_detail(rid: str) -> str:
    return f"response {rid} was already taken for this message"


def _whole(item: Response | Deletion, reason: str, detail: str) -> Rejection:
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
