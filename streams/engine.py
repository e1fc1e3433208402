"""The engine: a batch of decoded records in, events, rejections and writes out.

Pure: it reads the state through a `StateView` and never mutates it; every
write goes into the returned `StateDelta`, which doubles as the overlay that
lets later records of the batch see the writes of earlier ones. Replay, unit
tests and the workers all run this one implementation of SPEC sections 3-5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schemas.records import Response
from schemas.registry import check_registry
from schemas.rejections import DUPLICATE, INVALID_CHANGE, Rejection, rejection
from streams.rules import judge
from streams.state import Held, PartKey, PartMeta, StateDelta, StateNeeds, StateView
from streams.summary import decode_held

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


class Engine:
    """The rules of SPEC sections 3-5, with an optional registry of state types.

    Raises ConfigError for a registry with a bad name or type.
    """

    __slots__ = ("_registry",)

    def __init__(self, registry: Mapping[str, str] | None = None) -> None:
        self._registry = check_registry(registry or {})

    @property
    def registry(self) -> Mapping[str, str]:
        return dict(self._registry)

    def needs(self, items: Sequence[Item]) -> StateNeeds:
        """Every key `apply_batch` may read for these items."""
        needs = StateNeeds()
        for item in items:
            if not isinstance(item, Response):
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
        registry = self._registry
        metas: dict[PartKey, PartMeta] = {}  # overlay of every part touched
        dirty: set[PartKey] = set()  # parts whose meta changed
        taken: set[tuple[str, str]] = set()

        for index, item in enumerate(items):
            if not isinstance(item, Response):
                refused.append((index, item))
                continue
            mid = item.message_id
            rid = item.id
            ident = item.identity_id
            id_key = (mid, rid)
            if id_key in taken or view.seen(mid, rid):
                refused.append((index, _whole(item, DUPLICATE, _duplicate_detail(rid))))
                continue
            taken.add(id_key)
            delta.taken.append(id_key)

            pid = item.part_id
            part_key = (mid, pid)
            meta = metas.get(part_key)
            if meta is None:
                meta = metas[part_key] = view.part_meta(mid, pid).copy()
            types = meta.types
            # name -> (type, holding before this response), in first-accepted order
            before: dict[str, tuple[str, Held | None]] = {}

            for position, change in enumerate(item.changes):
                if change.error is not None:
                    refused.append((index, _refusal(item, position, INVALID_CHANGE, change.error)))
                    continue
                name = change.name
                fixed = types.get(name)
                value_key = (mid, pid, name, ident)
                held = values.get(value_key, _ABSENT)
                if held is _ABSENT:
                    held = view.held(value_key) if fixed is not None else None
                reason, detail, new = judge(change, fixed, registry.get(name), len(types), held)
                if reason is not None:
                    refused.append((index, _refusal(item, position, reason, detail)))
                    continue
                if fixed is None:
                    types[name] = change.type
                    dirty.add(part_key)
                if name not in before:
                    before[name] = (change.type, held)
                if new is not held and new != held:
                    values[value_key] = new
                    if isinstance(held, bytes):
                        tally = (mid, pid, name, held)
                        tallies[tally] = tallies.get(tally, 0) - 1
                    if isinstance(new, bytes):
                        tally = (mid, pid, name, new)
                        tallies[tally] = tallies.get(tally, 0) + 1
                    elif change.type == "Set":
                        # A Set change adds or removes exactly its own member.
                        member = change.value
                        assert member is not None
                        tally = (mid, pid, name, member)
                        tallies[tally] = tallies.get(tally, 0) + (1 if change.is_add else -1)

            changed = []
            for name, (kind, old) in before.items():
                new = values.get((mid, pid, name, ident), old)
                if new != old:
                    changed.append((name, kind, old, new))
            if changed:
                meta.version += 1
                dirty.add(part_key)
                version = meta.version
                status = item.status_text
                for name, kind, old, new in changed:
                    events.append(
                        {
                            "event_id": f"{mid}/{rid}/{name}",
                            "message_id": mid,
                            "part_id": pid,
                            "response_id": rid,
                            "identity_id": ident,
                            "name": name,
                            "type": kind,
                            "old": decode_held(old),
                            "new": decode_held(new),
                            "version": version,
                            "status_text": status,
                        }
                    )

        for part_key in dirty:
            delta.parts[part_key] = metas[part_key]
        if tallies:
            for tally in [tally for tally, n in tallies.items() if n == 0]:
                del tallies[tally]
        return out


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
