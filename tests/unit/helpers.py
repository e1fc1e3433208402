"""Small builders for records and a one-call way to run them through the engine."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import orjson

from msgstate.schemas.codec import dumps_line
from msgstate.schemas.records import decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.streams.engine.native_engine import NativeEngine

ABSENT: Any = object()
# MSGSTATE_TEST_ENGINES=python runs the rule tests on the Python engine alone (while the
# compiled one lags behind the SPEC); by default every batch goes through both.
BOTH_ENGINES = os.environ.get("MSGSTATE_TEST_ENGINES", "both") != "python"


def change(op: str, kind: str, name: str, value: Any = ABSENT) -> dict[str, Any]:
    out: dict[str, Any] = {"operation": op, "type": kind, "name": name}
    if value is not ABSENT:
        out["value"] = value
    return out


def add(kind: str, name: str, value: Any) -> dict[str, Any]:
    return change("add", kind, name, value)


def remove(kind: str, name: str, value: Any = ABSENT) -> dict[str, Any]:
    return change("remove", kind, name, value)


def record(
    rid: str,
    *changes: Any,
    message: str = "m1",
    identity: str = "alice",
    part: Any = ABSENT,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rid,
        "message_id": message,
        "identity_id": identity,
        "changes": list(changes),
    }
    if part is not ABSENT:
        out["part_id"] = part
    out.update(extra)
    return out


def line(rid: str, *changes: Any, **fields: Any) -> bytes:
    # The stdlib encoder, so that tests can send integers beyond 64 bits.
    return json.dumps(record(rid, *changes, **fields), ensure_ascii=False).encode()


class Run:
    """Records applied in batches to a fresh MemoryStore; what came out, in order.

    Every batch also goes through the compiled engine, which must give the same
    bytes: each rule test holds for both engines.
    """

    def __init__(self, registry: Mapping[str, Any] | None = None) -> None:
        self.engine = Engine(registry)
        self.native = NativeEngine(registry) if BOTH_ENGINES else None
        self.store = MemoryStore()
        self.events: list[dict[str, Any]] = []
        self.rejections: list[dict[str, Any]] = []

    def feed(self, *raws: bytes | dict[str, Any], authentic: bool = True) -> Run:
        values = [raw if isinstance(raw, bytes) else orjson.dumps(raw) for raw in raws]
        items = [decode_response(value, authentic=authentic) for value in values]
        out = self.engine.apply_batch(items, self.store)
        self.store.apply(out.delta)
        if self.native is not None:
            events, rejections = self.native.feed(values, [authentic] * len(values))
            assert events == [dumps_line(event) for event in out.events]
            assert rejections == [dumps_line(rejection) for _, rejection in out.rejections]
        self.events += out.events
        self.rejections += [rejection for _, rejection in out.rejections]
        return self

    def each(self, *raws: bytes | dict[str, Any]) -> Run:
        """Feed the records one batch each."""
        for raw in raws:
            self.feed(raw)
        return self

    def summary(self, message: str = "m1", part: str = "root") -> dict[str, Any]:
        summary = self.store.summary(message, part)
        if self.native is not None:
            assert self.native.summary(message, part) == summary
            assert self.native.summary_lines() == [dumps_line(s) for s in self.store.summaries()]
        return summary

    def values(self, name: str, message: str = "m1", part: str = "root") -> dict[str, Any]:
        states = self.summary(message, part)["states"]
        values: dict[str, Any] = states[name]["values"] if name in states else {}
        return values

    def reasons(self) -> list[str]:
        return [rejection["reason"] for rejection in self.rejections]


def run(*raws: bytes | dict[str, Any], registry: Mapping[str, Any] | None = None) -> Run:
    """Each record in its own batch, in order."""
    return Run(registry).each(*raws)
