"""Pure parts of the change feed, the analytics counting and `msgstate tail`'s lines."""

from __future__ import annotations

import orjson
from rich.console import Console

from msgstate.workers.cli.tail import describe
from msgstate.workers.services import change_feed
from msgstate.workers.services.analytics_store import (
    removes,
    split_member,
    value_member,
    values_removed,
    values_set,
)
from msgstate.workers.services.change_feed import ChangeFeed


def test_the_feed_hands_each_event_only_to_its_message_subscribers() -> None:
    feed = ChangeFeed("127.0.0.1:1", "t.summary-changes")
    event = {"event_id": "m/r1/x", "message_id": "m"}
    with feed.subscribe("m") as one, feed.subscribe("m") as two, feed.subscribe("other") as other:
        assert feed.subscribers == 3
        feed._dispatch(b"m", orjson.dumps(event))
        feed._dispatch(b"m", b"not json")  # logged and skipped
        feed._dispatch(None, orjson.dumps(event))
        assert one.drain() == [event] and two.drain() == [event] and other.drain() == []
    assert feed.subscribers == 0


def test_a_full_subscriber_is_marked_for_a_resync_instead_of_blocking() -> None:
    feed = ChangeFeed("127.0.0.1:1", "t")
    with feed.subscribe("m") as sub:
        for n in range(change_feed.QUEUE_SIZE + 5):
            feed._dispatch(b"m", orjson.dumps({"n": n}))
        assert sub.overflowed
        assert [e["n"] for e in sub.drain()] == list(range(change_feed.QUEUE_SIZE))


def test_values_set_counts_what_the_author_took_on() -> None:
    assert values_set({"type": "LWW", "old": None, "new": "b"}) == ["b"]
    assert values_set({"type": "LWWN", "old": "a", "new": None}) == []
    assert values_set({"type": "Set", "old": ["x"], "new": ["x", "y", 1]}) == ["y", 1]
    assert values_set({"type": "Set", "old": ["x", "y"], "new": ["y"]}) == []
    assert values_set({"type": "Set", "old": None, "new": [True]}) == [True]
    assert values_set({"type": "Set", "old": [1], "new": [1, True, 1.0]}) == [True, 1.0]
    assert values_set({"type": "LWW", "old": None, "new": [1, 2]}) == [[1, 2]]  # one array value
    assert split_member(value_member("poll:choice", "a\0b")) == ("poll:choice", "a\0b")
    assert split_member(value_member("n", 1)) != split_member(value_member("n", "1"))
    assert value_member("n", {"b": 2, "a": 1}) == value_member("n", {"a": 1, "b": 2})
    assert value_member("n", 1) != value_member("n", 1.0) != value_member("n", True)


def test_deletions_and_erasures_take_away_the_holding_in_old() -> None:
    def removal(cause: str, kind: str, old: object) -> dict[str, object]:
        return {"type": kind, "old": old, "new": None, "cause": cause}

    assert values_removed(removal("delete_message", "Set", ["a", "b"])) == ["a", "b"]
    assert values_removed(removal("erase_identity", "LWW", [1, 2])) == [[1, 2]]
    assert values_removed(removal("erase_identity", "FWW", {"c": 1})) == [{"c": 1}]
    assert values_removed(removal("response", "LWWN", "a")) == []  # an unset is no removal
    assert values_removed({"type": "LWW", "old": "a", "new": "b"}) == []  # v1 events
    assert removes(removal("delete_message", "Set", ["a"]))
    assert not removes({"type": "Set", "old": ["a"], "new": None, "cause": "response"})
    assert values_set(removal("erase_identity", "Set", ["a"])) == []


def test_tail_lines_escape_markup_in_values() -> None:
    console = Console(width=200, record=True, color_system=None)
    console.print(describe("change", {"message_id": "m", "part_id": "root", "identity_id": "[u]",
                                      "name": "n", "old": None, "new": "[bold]x", "version": 2}))
    console.print(describe("change", {"message_id": "m", "part_id": "root", "identity_id": "u",
                                      "name": "n", "old": ["a"], "new": None, "version": 3,
                                      "cause": "erase_identity"}))
    console.print(describe("reject", {"message_id": None, "identity_id": None, "reason": "invalid",
                                      "detail": "changes is not an array", "change_index": None}))
    assert console.export_text().splitlines() == [
        'change  m root  [u]  n null → "[bold]x"  v2',
        'change  m root  u  n ["a"] → null  v3  erase_identity',
        "reject  -  -  invalid: changes is not an array",
    ]
