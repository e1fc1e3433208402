"""Properties of deletions and erasures (SPEC section 3a), on random v1.1 workloads."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.streams.engine.replay import replay
from tests.unit import strategies as ws

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# One type per name, so that whose response fixed a name never decides another's fate.
TYPE_OF = dict(zip(ws.NAMES, ["Set", "FWW", "Set", "LWW", "LWWN"], strict=True))


@st.composite
def responses(draw: st.DrawFn, count: int) -> list[bytes]:
    """Valid-looking responses with unique ids, each name always with its one type."""
    out = []
    for n in range(count):
        changes = []
        for _ in range(draw(st.integers(1, 3))):
            name = draw(st.sampled_from(ws.NAMES))
            kind = TYPE_OF[name]
            op = "add" if kind in ("FWW", "LWW") else draw(st.sampled_from(["add", "remove"]))
            change: dict[str, Any] = {"operation": op, "type": kind, "name": name,
                                      "value": draw(ws.good_values)}
            changes.append(change)
        out.append(orjson.dumps({
            "id": f"r{n}", "message_id": draw(st.sampled_from(ws.MESSAGES)),
            "part_id": draw(st.sampled_from(ws.PARTS)),
            "identity_id": draw(st.sampled_from(ws.IDENTITIES)), "changes": changes,
        }))
    return out


def states(store: MemoryStore) -> dict[tuple[str, str, str], bytes]:
    """Each state's values and tally, as bytes; a state nobody holds is left out."""
    return {
        (summary["message_id"], summary["part_id"], name): orjson.dumps(
            [state["values"], state["tally"]], option=orjson.OPT_SORT_KEYS)
        for summary in store.summaries()
        for name, state in summary["states"].items()
        if state["values"]
    }


@SETTINGS
@given(st.integers(0, 40).flatmap(responses), st.sampled_from(ws.IDENTITIES))
def test_erasing_at_the_end_is_the_log_without_the_identity(
    lines: list[bytes], identity: str
) -> None:
    erasure = orjson.dumps({"kind": "erase_identity", "id": "e1", "identity_id": identity})
    events: list[dict[str, Any]] = []
    erased = replay([*lines, erasure], on_event=events.append)
    without = replay([line for line in lines if orjson.loads(line)["identity_id"] != identity])
    assert states(erased) == states(without)
    removed = [event for event in events if event["cause"] == "erase_identity"]
    assert all(event["identity_id"] == identity and event["new"] is None for event in removed)
    order = [(e["message_id"], e["part_id"], e["name"]) for e in removed]
    assert order == sorted(order)
    assert erased.identity_index(identity) == []


@SETTINGS
@given(ws.workloads, st.sampled_from(ws.MESSAGES), st.data())
def test_after_a_deletion_every_record_for_the_message_is_refused(
    lines: list[bytes], message: str, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(lines)))
    deletion = orjson.dumps({"kind": "delete_message", "id": "del-1", "message_id": message,
                             "identity_id": "mod"})
    events: list[dict[str, Any]] = []
    rejections: list[dict[str, Any]] = []
    store = replay(lines[:at])
    replay([deletion], store=store)
    assert store.deleted(message)
    replay(lines[at:], store=store, on_event=events.append, on_rejection=rejections.append)
    later = [
        record for record in map(_record, lines[at:])
        if isinstance(record, dict) and record.get("message_id") == message
    ]
    # Each later record for the message is refused whole; none changes it.
    assert [event for event in events if event["message_id"] == message] == []
    mine = [r for r in rejections if r["message_id"] == message]
    assert len(mine) == len(later)
    assert all(r["change_index"] is None for r in mine)
    # It holds nothing: every part reads as deleted, with no state.
    for part in store.parts_of(message):
        assert all(not held_by for held_by in store.part_holdings(message, part).values())
        assert store.summary(message, part)["deleted"] is True
    assert all(summary["states"] == {} for summary in store.summaries()
               if summary["message_id"] == message)


def _record(line: bytes) -> Any:
    """The record of a line, as the engine would see it (None for one it cannot read, or one
    over the size limit, whose rejection names no message)."""
    if len(line) > 65_536:
        return None
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
