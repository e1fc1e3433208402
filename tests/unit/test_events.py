"""Summary-change events (SPEC section 5)."""

from __future__ import annotations

from tests.unit.helpers import add, line, remove, run

KEYS = [
    "event_id",
    "message_id",
    "part_id",
    "response_id",
    "identity_id",
    "name",
    "type",
    "old",
    "new",
    "version",
    "status_text",
    "cause",
]


def test_an_event_has_every_key() -> None:
    r = run(line("r1", add("LWW", "c", "red"), part="p2"))
    assert r.events == [
        {
            "event_id": "m1/r1/c",
            "message_id": "m1",
            "part_id": "p2",
            "response_id": "r1",
            "identity_id": "alice",
            "name": "c",
            "type": "LWW",
            "old": None,
            "new": "red",
            "version": 1,
            "status_text": None,
            "cause": "response",
        }
    ]
    assert list(r.events[0]) == KEYS


def test_one_event_per_response_and_name_from_before_to_after() -> None:
    r = run(
        line("r1", add("Set", "s", "a")),
        line(
            "r2",
            add("Set", "s", "b"),
            add("LWW", "c", 1),
            add("Set", "s", "c"),
            remove("Set", "s", "a"),
            add("LWW", "c", 2),
            status_text="two changes",
        ),
    )
    second = r.events[1:]
    assert [(e["name"], e["old"], e["new"]) for e in second] == [
        ("s", ["a"], ["b", "c"]),
        ("c", None, 2),
    ]
    assert {e["version"] for e in second} == {2}
    assert {e["status_text"] for e in second} == {"two changes"}


def test_no_event_when_the_value_ends_where_it_began() -> None:
    r = run(
        line("r1", add("LWW", "c", "red"), add("Set", "s", "a")),
        line("r2", add("LWW", "c", "blue"), add("LWW", "c", "red")),
        line("r3", add("Set", "s", "b"), remove("Set", "s", "b")),
        line("r4", add("LWW", "c", "red")),
    )
    assert len(r.events) == 2
    assert r.summary()["version"] == 1


def test_set_order_changes_are_changes() -> None:
    r = run(
        line("r1", add("Set", "s", "a"), add("Set", "s", "b")),
        line("r2", remove("Set", "s", "a"), add("Set", "s", "a")),
    )
    assert [(e["old"], e["new"]) for e in r.events] == [(None, ["a", "b"]), (["a", "b"], ["b", "a"])]
    assert r.summary()["version"] == 2


def test_values_of_different_kinds_are_changes() -> None:
    r = run(line("r1", add("LWW", "c", 1)), line("r2", add("LWW", "c", True)))
    r.each(line("r3", add("LWW", "c", "1")), line("r4", add("LWW", "c", "1")))
    assert [(e["old"], e["new"]) for e in r.events] == [(None, 1), (1, True), (True, "1")]
    assert [type(e["new"]) for e in r.events] == [int, bool, str]


def test_event_order_follows_first_accepted_change() -> None:
    r = run(
        line("r0", add("FWW", "f", 1)),
        line(
            "r1",
            add("FWW", "f", 2),  # rejected: does not count for the order
            add("LWW", "b", 1),
            add("LWW", "a", 1),
            add("LWWN", "f2", 1),
            add("LWW", "b", 2),
        ),
    )
    assert [e["name"] for e in r.events[1:]] == ["b", "a", "f2"]


def test_unsetting_gives_null() -> None:
    r = run(
        line("r1", add("LWWN", "c", "x"), add("Set", "s", "a")),
        line("r2", remove("LWWN", "c"), remove("Set", "s", "a")),
    )
    assert [(e["name"], e["old"], e["new"]) for e in r.events[2:]] == [
        ("c", "x", None),
        ("s", ["a"], None),
    ]


def test_event_ids_are_stable_and_per_part_version() -> None:
    r = run(
        line("r1", add("LWW", "c", 1), message="layer:///messages/9"),
        line("r2", add("LWW", "c", 1), part="p"),
        line("r3", add("LWW", "c", 2), part="p"),
    )
    assert [e["event_id"] for e in r.events] == ["layer:///messages/9/r1/c", "m1/r2/c", "m1/r3/c"]
    assert [e["version"] for e in r.events] == [1, 1, 2]


def test_events_off_still_counts_versions() -> None:
    from msgstate.streams.engine.replay import replay

    lines = [line("r1", add("LWW", "c", 1)), line("r2", add("LWW", "c", 2))]
    quiet = replay(lines)
    events: list[dict[str, object]] = []
    loud = replay(lines, on_event=events.append)
    assert quiet.summaries() == loud.summaries()
    assert quiet.summaries()[0]["version"] == 2
    assert len(events) == 2
