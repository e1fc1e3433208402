"""The compiled engine on deletions and erasures (SPEC v1.1 section 3a), line by line."""

from __future__ import annotations

from typing import Any

import orjson

from msgstate.schemas.limits import DEDUPE_WINDOW
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.native_engine import NativeEngine
from msgstate.streams.rounds.compiled_decider import CompiledDecider
from msgstate.streams.rounds.python_decider import PythonDecider
from msgstate.streams.storage.layout import Keys
from msgstate.streams.storage.memory import MemoryRoundStore
from tests.unit.test_deciders import round_trip


def response(rid: str, identity: str, name: str, kind: str, value: Any, part: str = "root",
             message: str = "m") -> bytes:
    return orjson.dumps({"id": rid, "message_id": message, "part_id": part, "identity_id": identity,
                         "changes": [{"operation": "add", "type": kind, "name": name,
                                      "value": value}]})


def delete(rid: str, message: str = "m", status: str | None = None) -> bytes:
    return orjson.dumps({"kind": "delete_message", "id": rid, "message_id": message,
                         "identity_id": "mod", "status_text": status})


def erase(rid: str, identity: str) -> bytes:
    return orjson.dumps({"kind": "erase_identity", "id": rid, "identity_id": identity})


def test_a_deletion_removes_every_holding_with_an_event_each() -> None:
    engine = NativeEngine()
    engine.feed([response("r1", "b", "t", "LWW", 1.5, part="p"),
                 response("r2", "a", "s", "Set", {"x": 1}),
                 response("r3", "b", "s", "Set", "y")])
    events, rejections = engine.feed([delete("d1", status="gone")])
    assert rejections == []
    # In (part, name, identity) order; each part takes one version step.
    assert [orjson.loads(line) for line in events] == [
        {"cause": "delete_message", "event_id": "m/d1/p/t/b", "identity_id": "b",
         "message_id": "m", "name": "t", "new": None, "old": 1.5, "part_id": "p",
         "response_id": "d1", "status_text": "gone", "type": "LWW", "version": 2},
        {"cause": "delete_message", "event_id": "m/d1/root/s/a", "identity_id": "a",
         "message_id": "m", "name": "s", "new": None, "old": [{"x": 1}], "part_id": "root",
         "response_id": "d1", "status_text": "gone", "type": "Set", "version": 3},
        {"cause": "delete_message", "event_id": "m/d1/root/s/b", "identity_id": "b",
         "message_id": "m", "name": "s", "new": None, "old": ["y"], "part_id": "root",
         "response_id": "d1", "status_text": "gone", "type": "Set", "version": 3},
    ]
    assert engine.summary_lines() == [
        b'{"deleted":true,"message_id":"m","part_id":"p","states":{},"version":2}\n',
        b'{"deleted":true,"message_id":"m","part_id":"root","states":{},"version":3}\n',
    ]
    assert engine.summary("m", "other")["deleted"] is True
    # Every later record for it is refused; a repeated id is a duplicate first.
    _, rejections = engine.feed([response("r4", "a", "s", "Set", 1), delete("d2"), delete("d1"),
                                 response("r1", "a", "s", "Set", 1)])
    assert [(orjson.loads(line)["reason"], orjson.loads(line)["response_id"])
            for line in rejections] == [("message_deleted", "r4"), ("message_deleted", "d2"),
                                        ("duplicate", "d1"), ("duplicate", "r1")]
    assert engine.live_values() == 0


def test_a_message_that_never_had_state_is_deleted_alike() -> None:
    engine = NativeEngine()
    assert engine.feed([delete("d1", message="never")]) == ([], [])
    assert engine.summary_lines() == []
    _, (rejection,) = engine.feed([response("r1", "a", "s", "Set", 1, message="never")])
    assert orjson.loads(rejection)["detail"] == "the message was deleted"


def test_an_erasure_removes_an_identitys_values_everywhere_once() -> None:
    engine = NativeEngine()
    engine.feed([response("r1", "a", "s", "Set", 1, message="m2"),
                 response("r2", "a", "f", "FWW", "x"),
                 response("r3", "b", "f", "FWW", "x")])
    events, rejections = engine.feed([erase("e1", "a")])
    assert rejections == []
    assert [(e["message_id"], e["name"], e["cause"], e["old"], e["version"], e["event_id"])
            for e in map(orjson.loads, events)] == [
        ("m", "f", "erase_identity", "x", 3, "m/e1/root/f/a"),
        ("m2", "s", "erase_identity", [1], 2, "m2/e1/root/s/a"),
    ]
    assert engine.summary("m", "root")["states"]["f"]["tally"] == [{"count": 1, "value": "x"}]
    # The same erasure again changes nothing, silently; the identity may write again.
    assert engine.feed([erase("e1", "a")]) == ([], [])
    events, rejections = engine.feed([response("r4", "a", "f", "FWW", "y"), erase("e2", "nobody")])
    assert rejections == [] and len(events) == 1
    # Its response ids stay taken.
    _, (rejection,) = engine.feed([response("r2", "a", "f", "FWW", "z")])
    assert orjson.loads(rejection)["reason"] == "duplicate"


def test_records_of_another_kind_are_invalid() -> None:
    engine = NativeEngine()
    _, rejections = engine.feed([
        b'{"kind":null,"id":"x","message_id":"m","identity_id":"a","changes":[]}',
        b'{"kind":"Delete","id":"x","message_id":"m","identity_id":"a"}',
        b'{"kind":"delete_message","id":"x","identity_id":"a"}',
    ])
    assert [(r["reason"], r["detail"]) for r in map(orjson.loads, rejections)] == [
        ("invalid", '"kind" is null; it must be one of response, delete_message, '
                    "erase_identity (or absent)"),
        ("invalid", '"kind" is "Delete"; it must be one of response, delete_message, '
                    "erase_identity (or absent)"),
        ("invalid", '"message_id" is missing; it must be a string of 1-256 characters'),
    ]


def test_the_compiled_workers_hand_such_rounds_to_the_reference() -> None:
    """The compiled cache reads no message or identity whole: a round with a record of another
    kind is decided by the reference decider, and the compiled one takes over again after."""
    rounds = [[response("r1", "a", "s", "Set", 1)], [erase("e1", "a"), delete("d1")],
              [response("r2", "a", "s", "Set", 2)], [response("r3", "b", "s", "Set", 3)]]
    made: dict[str, list[Any]] = {}
    for name, decider in (("compiled", CompiledDecider()),
                          ("reference", PythonDecider(Engine(), window=DEDUPE_WINDOW))):
        store = MemoryRoundStore(Keys("t"))
        made[name] = [round_trip(decider, store, values, None, True) for values in rounds]
        made[name].append(store.snapshot())
    assert made["compiled"] == made["reference"]
