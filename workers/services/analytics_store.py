"""Rolling per-minute counts of summary changes in Redis, for the analytics consumer and `msgstate top`.

All keys share one hash tag, so the per-event script runs on Redis Cluster too:

    <prefix>:{analytics}:seen:<event id>      string  an event id already counted (expires)
    <prefix>:{analytics}:names:<minute>       zset    state name -> changes in that minute
    <prefix>:{analytics}:values:<minute>      zset    "<name>\\0<value JSON>" -> times set / added
    <prefix>:{analytics}:removed:<minute>     zset    "<name>\\0<value JSON>" -> holdings a
                                                      deletion or an erasure took away
    <prefix>:{analytics}:messages:<minute>    zset    message id -> changes in that minute

`<minute>` is the change record's Kafka timestamp in whole minutes since the epoch. Every key
expires after the retention, so the counts roll without a cleaner.

A value's count over a window is what was taken on minus what deletions and erasures took away
(SPEC section 3a), so a value nobody holds any more does not stay counted: a deleted message's
reactions, an erased user's votes. An event of a deletion or an erasure is counted by the same
script as any other, with the `removed` zset in place of `values`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis.exceptions import NoScriptError

from msgstate.schemas.values import encode_value
from msgstate.streams.storage.client import SyncRedis
from msgstate.streams.storage.layout import AnalyticsKeys
from msgstate.streams.storage.scripts import lua

# Dedupe and count in one step: a crash can never count an event without remembering it.


def value_member(name: str, value: Any) -> bytes:
    """The zset member of a state's value: by its canonical encoding, so equal values (SPEC
    section 2: `{"a":1,"b":2}` and `{"b":2,"a":1}`) count together and `1`, `1.0`, `true` apart."""
    return name.encode() + b"\0" + encode_value(value)


def split_member(member: bytes) -> tuple[str, Any]:
    name, _, value = member.partition(b"\0")
    return name.decode(), orjson.loads(value)


REMOVING_CAUSES = ("delete_message", "erase_identity")


def removes(event: dict[str, Any]) -> bool:
    """Whether the event is a holding that a deletion or an erasure took away."""
    return event.get("cause") in REMOVING_CAUSES


def values_set(event: dict[str, Any]) -> list[Any]:
    """The values the author took on: a value set, or the members a Set gained (any other
    type's value is one value, even an array)."""
    new, old = event.get("new"), event.get("old")
    if event.get("type") == "Set":
        before = {encode_value(v) for v in old or ()}
        return [v for v in new or () if encode_value(v) not in before]
    return [] if new is None else [new]


def values_removed(event: dict[str, Any]) -> list[Any]:
    """The values a deletion or an erasure took away: the holding in `old` (a Set's members)."""
    old = event.get("old")
    if not removes(event) or old is None:
        return []
    return list(old) if event.get("type") == "Set" else [old]



class AnalyticsStore:
    def __init__(self, client: SyncRedis, key_prefix: str, retention: int) -> None:
        self.client = client
        self.keys = AnalyticsKeys(key_prefix)
        self.retention = retention
        self._count = client.register_script(lua("count_event.lua"))

    def count(self, events: list[tuple[int, dict[str, Any]]]) -> int:
        """Count (timestamp ms, event) pairs not counted before; returns how many were new."""
        try:
            return self._count_piped(events)
        except NoScriptError:
            # A cluster pipeline sends EVALSHA without loading the script first (a plain one
            # loads it), and a new or promoted master lacks it: load it on every master and count
            # again (all keys share one slot, so the failed pipeline applied nothing).
            self.client.script_load(self._count.script)
            return self._count_piped(events)

    def _count_piped(self, events: list[tuple[int, dict[str, Any]]]) -> int:
        pipe = self.client.pipeline(transaction=False)
        for timestamp_ms, event in events:
            minute = timestamp_ms // 60_000
            name = event["name"]
            counted = self.removed(minute) if removes(event) else self.keys.values(minute)
            keys = [self.keys.seen(event["event_id"]), self.keys.names(minute), counted,
                    self.keys.messages(minute)]
            values = values_removed(event) if removes(event) else values_set(event)
            members = [value_member(name, v) for v in values]
            self._count(keys, [self.retention, name, event["message_id"], *members], client=pipe)
        return sum(int(r) for r in pipe.execute())

    def removed(self, minute: int) -> str:
        """The minute's zset of holdings deletions and erasures took away."""
        return self.keys.removed(minute)

    def top(self, minutes: int, limit: int, now: float | None = None) -> dict[str, list[tuple[Any, int]]]:
        """The busiest state names, values and messages over the last `minutes` minutes."""
        last = int((time.time() if now is None else now) // 60)
        window = range(last - minutes + 1, last + 1)
        found: dict[str, list[tuple[Any, int]]] = {}
        for kind, key in (("names", self.keys.names), ("values", self.keys.values),
                          ("messages", self.keys.messages)):
            weights = {key(m): 1 for m in window}
            if kind == "values":
                weights |= {self.removed(m): -1 for m in window}
            rows: list[tuple[bytes, float]] = self.client.zunion(  # type: ignore[assignment]
                weights, withscores=True)
            # A value taken on before the window and taken away in it nets below zero: not shown.
            ranked = sorted(((member, int(score)) for member, score in rows if score > 0),
                            key=lambda row: (-row[1], row[0]))[:limit]
            found[kind] = [(split_member(m) if kind == "values" else m.decode(), n) for m, n in ranked]
        return found
