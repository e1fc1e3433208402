"""Deleting a message and erasing an identity (SPEC section 3a)."""

from __future__ import annotations

from typing import Any

import orjson

from tests.unit.helpers import add, line, run


def deletion(rid: str, message: str = "m1", **extra: Any) -> bytes:
    return orjson.dumps({"kind": "delete_message", "id": rid, "message_id": message,
                         "identity_id": "mod", **extra})


def erasure(rid: str, identity: str = "alice", **extra: Any) -> bytes:
    return orjson.dumps({"kind": "erase_identity", "id": rid, "identity_id": identity, **extra})


def test_a_deletion_removes_every_holding_with_one_event_each_in_order() -> None:
    r = run(
        line("r1", add("Set", "s", "x"), add("LWW", "c", {"a": 1}), identity="bob"),
        line("r2", add("Set", "s", "y"), identity="alice"),
        line("r3", add("FWW", "f", 1.5), identity="alice", part="p2"),
        line("r4", add("LWW", "c", 1), message="m2"),
    )
    before = len(r.events)
    r.feed(deletion("d1", status_text="spam"))
    removed = r.events[before:]
    assert [(e["part_id"], e["name"], e["identity_id"], e["old"]) for e in removed] == [
        ("p2", "f", "alice", 1.5),
        ("root", "c", "bob", {"a": 1}),
        ("root", "s", "alice", ["y"]),
        ("root", "s", "bob", ["x"]),
    ]
    for event in removed:
        assert event["new"] is None
        assert event["cause"] == "delete_message"
        assert event["response_id"] == "d1"
        assert event["status_text"] == "spam"
        assert event["event_id"] == (
            f"m1/d1/{event['part_id']}/{event['name']}/{event['identity_id']}"
        )
    # One version step per part that lost a holding.
    assert [e["version"] for e in removed] == [2, 3, 3, 3]
    assert r.summary() == {"message_id": "m1", "part_id": "root", "version": 3, "states": {},
                           "deleted": True}
    assert r.summary(part="p2")["deleted"] is True
    assert r.summary(part="never")["deleted"] is True
    assert r.values("c", message="m2") == {"alice": 1}  # another message is untouched


def test_every_later_record_for_a_deleted_message_is_refused() -> None:
    r = run(line("r1", add("Set", "s", "x")), deletion("d1"))
    r.each(
        line("r2", add("Set", "s", "y")),
        deletion("d2"),
        deletion("d1"),  # sent again: a duplicate first
        line("r1", add("Set", "s", "z")),  # an id already taken: a duplicate too
    )
    assert r.reasons() == ["message_deleted", "message_deleted", "duplicate", "duplicate"]
    assert r.rejections[0]["response_id"] == "r2"
    assert r.rejections[1]["identity_id"] == "mod"
    assert r.summary()["states"] == {}


def test_deleting_a_message_that_never_had_state_is_remembered() -> None:
    r = run(deletion("d1"), line("r1", add("Set", "s", "x")))
    assert r.events == []
    assert r.reasons() == ["message_deleted"]
    assert r.summary() == {"message_id": "m1", "part_id": "root", "version": 0, "states": {},
                           "deleted": True}


def test_a_deletion_in_the_same_batch_as_the_writes_it_removes() -> None:
    r = run()
    r.feed(
        line("r1", add("Set", "s", "x")),
        line("r2", add("LWWN", "n", [1, 2]), identity="bob"),
        deletion("d1"),
        line("r3", add("Set", "s", "y")),
    )
    assert [(e["name"], e["cause"]) for e in r.events] == [
        ("s", "response"), ("n", "response"), ("n", "delete_message"), ("s", "delete_message"),
    ]
    assert r.reasons() == ["message_deleted"]
    assert r.summary()["version"] == 3


def test_an_erasure_removes_the_identity_everywhere_and_keeps_the_others() -> None:
    r = run(
        line("r1", add("Set", "s", "x"), add("FWW", "f", True)),
        line("r2", add("Set", "s", "x"), identity="bob"),
        line("r3", add("LWW", "c", "hi"), message="m2", part="p"),
        line("r4", add("LWW", "c", "yo"), message="m2", part="p", identity="bob"),
    )
    before = len(r.events)
    r.feed(erasure("e1", status_text="gdpr"))
    removed = r.events[before:]
    assert [(e["message_id"], e["part_id"], e["name"], e["old"], e["version"])
            for e in removed] == [
        ("m1", "root", "f", True, 3),
        ("m1", "root", "s", ["x"], 3),
        ("m2", "p", "c", "hi", 3),
    ]
    assert {(e["cause"], e["identity_id"], e["status_text"]) for e in removed} == {
        ("erase_identity", "alice", "gdpr")
    }
    assert removed[0]["event_id"] == "m1/e1/root/f/alice"
    assert r.values("s") == {"bob": ["x"]}
    assert r.summary()["states"]["s"]["tally"] == [{"value": "x", "count": 1}]
    assert r.values("c", message="m2", part="p") == {"bob": "yo"}
    # Not a ban: the identity writes again, an FWW state anew.
    r.feed(line("r5", add("FWW", "f", False)))
    assert r.values("f") == {"alice": False}


def test_an_erasure_seen_again_is_skipped_silently() -> None:
    r = run(line("r1", add("Set", "s", "x")), erasure("e1"), line("r2", add("Set", "s", "y")))
    r.feed(erasure("e1"))
    assert r.rejections == []
    assert r.values("s") == {"alice": ["y"]}
    r.feed(erasure("e2"))
    assert r.values("s") == {}


def test_an_erasure_skips_deleted_messages_and_keeps_the_dedupe_memory() -> None:
    r = run(line("r1", add("Set", "s", "x")), line("r2", add("Set", "s", "x"), message="m2"),
            deletion("d1", message="m2"), erasure("e1"))
    assert [e["cause"] for e in r.events] == ["response", "response", "delete_message",
                                             "erase_identity"]
    r.feed(line("r1", add("Set", "s", "z")))
    assert r.reasons() == ["duplicate"]


def test_an_erasure_of_an_identity_holding_nothing_changes_nothing() -> None:
    r = run(line("r1", add("Set", "s", "x")), erasure("e1", identity="nobody"))
    assert len(r.events) == 1
    assert r.summary()["version"] == 1


def test_records_of_the_new_kinds_are_checked_whole() -> None:
    r = run(
        orjson.dumps({"kind": None, "id": "x", "message_id": "m1", "identity_id": "a"}),
        orjson.dumps({"kind": "ban", "id": "x", "identity_id": "a"}),
        orjson.dumps({"kind": "delete_message", "id": "x", "identity_id": "a"}),
        orjson.dumps({"kind": "erase_identity", "id": "", "identity_id": "a"}),
        orjson.dumps({"kind": "erase_identity", "id": "e", "identity_id": "a", "sent_at": 1.5}),
        orjson.dumps({"kind": "delete_message", "id": "d", "message_id": "m1",
                      "identity_id": "a", "status_text": "x" * 4097}),
    )
    assert r.reasons() == ["invalid"] * 6
    assert r.rejections[0]["response_id"] == "x"
    assert r.events == []
    # "kind": "response" is an ordinary response; other fields of the new kinds are ignored.
    r.each(line("r1", add("Set", "s", "x"), kind="response"),
           erasure("e1", message_id="m9", changes=5, part_id=7))
    assert [e["cause"] for e in r.events] == ["response", "erase_identity"]


def test_a_layer_choice_response_with_an_object_value() -> None:
    choice = {"id": "like", "custom_response_data": {"emoji": "👍", "score": 1.5,
                                                      "tags": ["a", None]}}
    r = run(line("r1", add("LWWN", "custom_response_data", choice["custom_response_data"]),
                 add("LWWN", "selection", choice["id"])),
            line("r2", add("LWWN", "custom_response_data",
                           {"tags": ["a", None], "score": 1.5, "emoji": "👍"}), identity="bob"))
    assert r.rejections == []
    state = r.summary()["states"]["custom_response_data"]
    assert state["values"] == {"alice": choice["custom_response_data"],
                               "bob": choice["custom_response_data"]}
    assert state["tally"] == [{"value": choice["custom_response_data"], "count": 2}]
    assert r.events[0]["new"] == choice["custom_response_data"]
    assert r.events[0]["type"] == "LWWN"
