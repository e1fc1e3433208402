"""The SDK's models without services: registration, local validation, batching by the clock."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest

from msgstate.schemas.exceptions import DeliveryError, ValidationError
from msgstate.schemas.limits import MAX_CHANGES, MAX_RECORD_BYTES, MAX_STATUS_TEXT
from msgstate.schemas.records import Response, decode_response
from msgstate.schemas.registry import parse_registry
from msgstate.streams.sdk import (
    CHANGE,
    CRDT_TYPES,
    SEND_FAILED,
    SENDING,
    MessageTypeModel,
    StateRegistry,
    custom_states,
    export_registry,
    registry_json,
)

from .helpers import add, record, run
from .sdk_fakes import PollModel, Wiring, empty_summary, open_poll


@pytest.fixture(autouse=True)
def no_custom_states() -> Any:
    saved = dict(custom_states)
    custom_states.clear()
    yield
    custom_states.clear()
    custom_states.update(saved)


# -- registration -------------------------------------------------------------------------


def test_crdt_types_are_the_wire_names() -> None:
    assert [t.value for t in CRDT_TYPES] == ["Set", "FWW", "LWW", "LWWN"]
    assert CRDT_TYPES.LAST_WRITER_WINS_NULLABLE == "LWWN"


def test_a_model_writes_its_own_and_the_custom_states() -> None:
    custom_states.register_state("reactions", CRDT_TYPES.SET)
    model = open_poll(Wiring())
    assert model.responses.registry == {"reactions": "Set", "poll_choice": "FWW", "colors": "Set",
                                        "latest": "LWW", "answer": "LWWN"}


def test_registration_refuses_bad_names_types_and_a_second_type() -> None:
    registry = StateRegistry()
    with pytest.raises(ValidationError, match="not a valid state name"):
        registry.register_state("has space", CRDT_TYPES.SET)
    with pytest.raises(ValidationError, match="not a state type"):
        registry.register_state("x", "Counter")
    registry.register_state("x", "LWW")
    registry.register_state("x", CRDT_TYPES.LAST_WRITER_WINS)  # the same again is fine
    with pytest.raises(ValidationError, match="already registered as LWW"):
        registry.register_state("x", CRDT_TYPES.SET)
    custom_states.register_state("shared", CRDT_TYPES.SET)

    class Clashing(MessageTypeModel):
        def register_all_states(self) -> None:
            self.responses.register_state("shared", CRDT_TYPES.LAST_WRITER_WINS)

    with pytest.raises(ValidationError, match="custom state of type Set"):
        Clashing("m", "u")


def test_the_exported_registry_is_what_the_workers_read_and_enforce() -> None:
    custom_states.register_state("reactions", CRDT_TYPES.SET)
    exported = export_registry([PollModel])
    assert exported == {"reactions": "Set", "poll_choice": "FWW", "colors": "Set", "latest": "LWW",
                        "answer": "LWWN"}
    assert parse_registry(registry_json([PollModel])) == exported
    # The engine with that registry rejects a change that carries another type, from the first.
    applied = run(record("r1", add("LWW", "poll_choice", "a"), add("FWW", "poll_choice", "b")),
                  registry=parse_registry(registry_json([PollModel])))
    assert applied.reasons() == ["type_mismatch"]
    assert applied.values("poll_choice") == {"alice": "b"}

    class Other(MessageTypeModel):
        def register_all_states(self) -> None:
            self.responses.register_state("poll_choice", CRDT_TYPES.SET)

    with pytest.raises(ValidationError, match="poll_choice is already registered as FWW"):
        export_registry([PollModel, Other])


def test_a_cap_on_distinct_values_is_exported_in_the_object_form() -> None:
    custom_states.register_state("reactions", CRDT_TYPES.SET, max_values=20)

    class Capped(MessageTypeModel):
        def register_all_states(self) -> None:
            self.responses.register_state("pick", CRDT_TYPES.LAST_WRITER_WINS, max_values=1)

    exported = export_registry([Capped])
    assert exported == {"reactions": {"type": "Set", "max_values": 20},
                        "pick": {"type": "LWW", "max_values": 1}}
    assert parse_registry(registry_json([Capped])) == exported
    applied = run(record("r1", add("LWW", "pick", "a")),
                  record("r2", add("LWW", "pick", "b"), identity="bob"), registry=exported)
    assert applied.reasons() == ["limit_exceeded"]
    with pytest.raises(ValidationError, match="already registered with max_values 20"):
        custom_states.register_state("reactions", CRDT_TYPES.SET, max_values=50)
    with pytest.raises(ValidationError, match="from 1 to 10000"):
        custom_states.register_state("other", CRDT_TYPES.SET, max_values=0)


# -- local validation: raises before anything is sent ---------------------------------------


@pytest.mark.parametrize(("call", "message"), [
    (lambda r: r.add_state("nope", "x"), "not registered for PollModel"),
    (lambda r: r.add_state("latest", 2.0**63), r"below 2\^63"),
    (lambda r: r.add_state("latest", {"a": [2**64]}), "64-bit signed range"),
    (lambda r: r.add_state("latest", 2**63), "64-bit signed range"),
    (lambda r: r.add_state("latest", "é" * 600), "1024 UTF-8 bytes"),
    (lambda r: r.add_state("latest", None), "bad value"),
    (lambda r: r.remove_state("latest", "x"), "remove_not_allowed"),
    (lambda r: r.remove_state("poll_choice"), "remove_not_allowed"),
    (lambda r: r.remove_state("colors"), "bad value"),
    (lambda r: r.set_response_message_text("x" * (MAX_STATUS_TEXT + 1)), "at most 4096"),
])
def test_a_bad_operation_raises_and_sends_nothing(call: Any, message: str) -> None:
    wiring = Wiring()
    model = open_poll(wiring)
    with pytest.raises(ValidationError, match=message):
        call(model.responses)
    wiring.scheduler.advance(10)
    assert model.responses.send_response_message() is None
    assert wiring.publisher.sent == []


def test_bad_ids_raise_when_the_model_is_made() -> None:
    with pytest.raises(ValidationError, match="message_id"):
        PollModel("", "u1")
    with pytest.raises(ValidationError, match="identity_id"):
        PollModel("m", "u" * 257)


def test_what_the_loaded_summary_already_decides_raises() -> None:
    summary = empty_summary()
    summary["states"] = {
        "poll_choice": {"type": "FWW", "values": {"u1": "a"}, "tally": [{"value": "a", "count": 1}]},
        "latest": {"type": "Set", "values": {}, "tally": []},
    }
    summary["states"].update({f"s{i}": {"type": "LWW", "values": {}, "tally": []} for i in range(62)})
    wiring = Wiring()
    model = open_poll(wiring, summary)
    with pytest.raises(ValidationError, match="fww_conflict"):
        model.responses.add_state("poll_choice", "b")
    with pytest.raises(ValidationError, match="type_mismatch"):
        model.responses.add_state("latest", "b")
    with pytest.raises(ValidationError, match="limit_exceeded"):
        model.responses.add_state("colors", "red")  # the 65th name
    # Another identity may still make its first choice.
    other = open_poll(wiring, {**summary, "states": {"poll_choice": summary["states"]["poll_choice"]}},
                      identity="u2")
    other.responses.add_state("poll_choice", "b")
    with pytest.raises(ValidationError, match="fww_conflict"):
        other.responses.add_state("poll_choice", "c")  # its first one is still pending


# -- batching -------------------------------------------------------------------------------


def test_a_type_mismatch_names_the_fixed_type_with_its_article() -> None:
    summary = empty_summary()
    summary["states"] = {
        "colors": {"type": "LWW", "values": {}, "tally": []},
        "latest": {"type": "Set", "values": {}, "tally": []},
    }
    model = open_poll(Wiring(), summary)
    with pytest.raises(ValidationError, match="state colors is an LWW state on this message, not Set"):
        model.responses.add_state("colors", "red")
    with pytest.raises(ValidationError, match="state latest is a Set state on this message, not LWW"):
        model.responses.add_state("latest", "b")


def test_operations_accumulate_and_go_out_together_after_the_delay() -> None:
    wiring = Wiring(send_delay=0.1)
    model = open_poll(wiring)
    first = model.responses.add_state("colors", "red")
    wiring.scheduler.advance(0.05)
    second = model.responses.remove_state("colors", "blue")
    model.responses.set_response_message_text("u1 likes red, not blue")
    model.responses.add_state("answer", 42)
    model.responses.remove_state("answer")
    assert first is second and wiring.publisher.sent == []
    wiring.scheduler.advance(0.0499)
    assert wiring.publisher.sent == []
    wiring.scheduler.advance(0.0002)  # 100 ms after the first operation
    [record] = wiring.publisher.records
    assert record["changes"] == [
        {"operation": "add", "type": "Set", "name": "colors", "value": "red"},
        {"operation": "remove", "type": "Set", "name": "colors", "value": "blue"},
        {"operation": "add", "type": "LWWN", "name": "answer", "value": 42},
        {"operation": "remove", "type": "LWWN", "name": "answer"},
    ]
    assert record["status_text"] == "u1 likes red, not blue"
    assert (record["message_id"], record["part_id"], record["identity_id"]) == ("m1", "root", "u1")
    assert record["id"] == first.response_id and record["id"].startswith("r-")
    assert isinstance(decode_response(wiring.publisher.sent[0][1]), Response)
    assert wiring.publisher.sent[0][0] == b"m1"
    assert first.result(timeout=0).response_id == record["id"]
    # The next operation starts a new response with a new id and no text.
    later = model.responses.add_state("latest", True)
    wiring.scheduler.advance(0.1)
    assert later.response_id != first.response_id
    assert wiring.publisher.records[1]["status_text"] is None
    assert later.response_id > first.response_id  # time-ordered


def test_send_response_message_sends_at_once_and_cancels_the_timer() -> None:
    wiring = Wiring()
    model = open_poll(wiring)
    model.responses.add_state("latest", "x")
    future = model.responses.send_response_message()
    assert future is not None and len(wiring.publisher.sent) == 1
    assert wiring.scheduler.pending == 0
    wiring.scheduler.advance(1)
    assert len(wiring.publisher.sent) == 1


def test_a_full_response_goes_out_and_the_next_change_starts_another() -> None:
    wiring = Wiring()
    model = open_poll(wiring)
    for i in range(MAX_CHANGES + 1):
        model.responses.add_state("colors", f"c{i}")
    assert [len(r["changes"]) for r in wiring.publisher.records] == [MAX_CHANGES]
    wiring.scheduler.advance(0.1)
    assert [len(r["changes"]) for r in wiring.publisher.records] == [MAX_CHANGES, 1]


def test_a_response_never_passes_the_record_size_limit() -> None:
    wiring = Wiring()
    model = open_poll(wiring)
    big = "v" * 1000
    for i in range(90):
        model.responses.add_state("colors", f"{i}{big}")
    model.responses.send_response_message()
    sizes = [len(value) for _, value, _ in wiring.publisher.sent]
    assert len(sizes) == 2 and max(sizes) <= MAX_RECORD_BYTES
    assert sizes[0] > MAX_RECORD_BYTES - 1100  # the first was sent because one more would not fit
    assert sum(len(r["changes"]) for r in wiring.publisher.records) == 90


def test_the_before_send_hook_can_cancel() -> None:
    wiring = Wiring()
    model = open_poll(wiring)
    seen: list[dict[str, Any]] = []

    def hook(event: Any) -> None:
        seen.append(event.record)
        if event.record["changes"][0]["value"] == "drop":
            event.cancel()

    model.on(SENDING, hook)
    dropped = model.responses.add_state("latest", "drop")
    wiring.scheduler.advance(0.1)
    assert dropped.cancelled() and wiring.publisher.sent == []
    kept = model.responses.add_state("latest", "keep")
    model.responses.send_response_message()
    assert kept.done() and not kept.cancelled()
    assert [r["changes"][0]["value"] for r in seen] == ["drop", "keep"]
    assert len(wiring.publisher.sent) == 1


def test_a_delivery_error_reaches_the_future_and_the_listeners() -> None:
    wiring = Wiring()
    wiring.publisher.fail_with = DeliveryError("broker said no")
    model = open_poll(wiring)
    failures: list[Any] = []
    model.on(SEND_FAILED, failures.append)
    future = model.responses.add_state("latest", "x")
    wiring.scheduler.advance(0.1)
    with pytest.raises(DeliveryError, match="broker said no"):
        future.result(timeout=0)
    assert [f.record_id for f in failures] == [future.response_id]


def test_close_flushes_what_is_pending() -> None:
    wiring = Wiring()
    model = open_poll(wiring)
    model.responses.add_state("latest", "x")
    model.close()
    assert len(wiring.publisher.sent) == 1


def test_threads_adding_at_once_lose_nothing() -> None:
    wiring = Wiring(send_delay=0.1)
    model = open_poll(wiring)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: model.responses.add_state("colors", f"c{i}"), range(400)))
    model.responses.send_response_message()
    values = [c["value"] for r in wiring.publisher.records for c in r["changes"]]
    assert sorted(values) == sorted(f"c{i}" for i in range(400))
    assert all(len(r["changes"]) <= MAX_CHANGES for r in wiring.publisher.records)


# -- change events --------------------------------------------------------------------------


def event(name: str, identity: str, old: Any, new: Any, version: int, kind: str = "Set",
          rid: str = "r1") -> dict[str, Any]:
    return {"event_id": f"m1/{rid}/{name}", "message_id": "m1", "part_id": "root",
            "response_id": rid, "identity_id": identity, "name": name, "type": kind, "old": old,
            "new": new, "version": version, "status_text": None}


def test_change_events_update_the_local_summary_once_each() -> None:
    model = open_poll(Wiring(), {**empty_summary(), "version": 1, "states": {
        "colors": {"type": "Set", "values": {"u2": ["red"]}, "tally": [{"value": "red", "count": 1}]}}})
    assert model.responses.apply_event(event("colors", "u2", None, ["red"], 1)) is None  # in it
    change = model.responses.apply_event(event("colors", "u1", None, ["red", "blue"], 2, rid="r2"))
    assert change is not None and change.has_property("colors") and not change.has_property("x")
    assert (change.old_value, change.new_value) == (None, ["red", "blue"])
    assert model.responses.apply_event(event("colors", "u1", None, ["red", "blue"], 2, rid="r2")) is None
    model.responses.apply_event(event("latest", "u1", None, 7, 3, kind="LWW", rid="r3"))
    summary = model.responses.summary
    assert summary is not None and summary["version"] == 3
    assert summary["states"]["colors"]["tally"] == [{"value": "red", "count": 2},
                                                    {"value": "blue", "count": 1}]
    assert summary["states"]["latest"] == {"type": "LWW", "values": {"u1": 7},
                                           "tally": [{"value": 7, "count": 1}]}
    gone = model.responses.apply_event(event("latest", "u1", 7, None, 4, kind="LWW", rid="r4"))
    assert gone is not None and summary["states"]["latest"]["values"] == {}


def test_changed_reparses_then_tells_the_listeners() -> None:
    calls: list[str] = []

    class Tracking(PollModel):
        def parse_model_responses(self) -> None:
            calls.append("parse")

    model = Tracking("m1", "u1", wiring=Wiring())  # type: ignore[arg-type]
    model.responses.load(empty_summary())
    model.on(CHANGE, lambda evt: calls.append(f"change {evt.name} {evt.new_value}"))
    change = model.responses.apply_event(event("latest", "u2", None, "x", 1, kind="LWW"))
    assert change is not None
    model.changed(change)
    assert calls == ["parse", "change latest x"]


def test_a_text_that_would_pass_the_size_limit_raises() -> None:
    wiring = Wiring()
    model = open_poll(wiring)
    for i in range(59):
        model.responses.add_state("colors", f"{i:02}" + "v" * 1000)
    assert wiring.publisher.sent == []
    with pytest.raises(ValidationError, match="exceed the record size limit"):
        model.responses.set_response_message_text("t" * 4000)
    model.responses.set_response_message_text("short")
    model.responses.send_response_message()
    assert wiring.publisher.records[0]["status_text"] == "short"
    assert len(wiring.publisher.sent[0][1]) <= MAX_RECORD_BYTES
