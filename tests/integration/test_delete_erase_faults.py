"""SPEC section 3a on the real stack with workers SIGKILLed around a deletion and an erasure: two
state workers and the analytics consumer run through a capped workload of values of every kind;
the summaries end equal to `msgstate replay`, the deleted message stays deleted, the erased
identity holds nothing, and the analytics counts equal counts of the events taken once each."""

from __future__ import annotations

import signal
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import orjson
from kafka import TopicPartition

from msgstate.schemas.records import Response, decode_response
from msgstate.schemas.values import encode_value
from msgstate.streams.storage.reader import SummaryReader
from msgstate.workers.config import Settings
from msgstate.workers.services.analytics_store import AnalyticsStore
from msgstate.workers.tools import stack
from msgstate.workers.tools.fault_check import Record, read_topic
from msgstate.workers.tools.workload import responses

from ..waiting import wait_for
from .pipeline_harness import Expected, Pipeline, assert_same_as_replay, keys_holding
from .processes import WorkerProcess
from .test_analytics import await_committed
from .test_delete_erase import msgstate
from .test_pipeline_removals import REGISTRY

COUNTED = ("names", "values", "removed", "messages")
# (kind of count, minute, member) -> count, as the analytics keep them
Counts = dict[tuple[str, int, bytes], int]


def expected_counts(changes: Iterable[Record]) -> Counts:
    """What docs/operations.md says the analytics count, from each event once: per minute of the
    record's timestamp, changes per state name and per message; values an identity took on (a
    Set's members gained, another type's new value); holdings a deletion or an erasure took away
    (its `old`)."""
    counts: Counter[tuple[str, int, bytes]] = Counter()
    for record in changes:
        event = orjson.loads(record.value)
        minute, name, kind = record.timestamp // 60_000, event["name"], event["type"]
        counts["names", minute, name.encode()] += 1
        counts["messages", minute, event["message_id"].encode()] += 1
        old, new = event["old"], event["new"]
        if event["cause"] == "response":
            if kind == "Set":
                before = {encode_value(v) for v in old or ()}
                values = [v for v in new or () if encode_value(v) not in before]
            else:
                values = [] if new is None else [new]
            counted = "values"
        else:
            values, counted = (list(old) if kind == "Set" else [old]), "removed"
        for value in values:
            counts[counted, minute, name.encode() + b"\0" + encode_value(value)] += 1
    return dict(counts)


def stored_counts(pipeline: Pipeline) -> Counts:
    """Every per-minute count the analytics keep in Redis."""
    base = AnalyticsStore(pipeline.redis, pipeline.settings.key_prefix, 60).keys.base
    counts: Counts = {}
    for kind in COUNTED:
        for key in pipeline.redis.scan_iter(match=f"{base}:{kind}:*", count=1000):
            minute = int(key.rsplit(b":", 1)[1])
            rows = cast(list[tuple[bytes, float]], pipeline.redis.zrange(key, 0, -1, withscores=True))
            for member, score in rows:
                counts[kind, minute, member] = int(score)
    return counts


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        lines = answer.read().decode().splitlines()
    return {name: float(value) for name, _, value in (line.partition(" ") for line in lines)
            if name.startswith("msgstate_analytics_") and name.endswith("_total")}


def test_a_deletion_and_an_erasure_with_workers_killed_end_as_replay_with_exact_analytics(
        settings: Settings, tmp_path: Path) -> None:
    records = list(responses(3000, messages=50, identities=20, bad_share=0.03, seed=43,
                             object_share=0.15))
    first, rest = records[:1500], records[1500:]
    taken = [item for item in map(decode_response, first) if isinstance(item, Response)]
    # The busiest message is deleted; the identity in the most messages is erased.
    deleted = Counter(item.message_id for item in taken).most_common(1)[0][0]
    spread: dict[str, set[str]] = defaultdict(set)
    for item in taken:
        spread[item.identity_id].add(item.message_id)
    erased = max(sorted(spread), key=lambda identity: len(spread[identity]))
    # It writes nothing after its erasure, so it must end holding nothing.
    rest = [r for r in rest if not (isinstance(later := decode_response(r), Response)
                                    and later.identity_id == erased)]
    deletion = orjson.dumps({"kind": "delete_message", "id": "d-1", "message_id": deleted,
                             "identity_id": "layer:///identities/mod"})
    erasure = orjson.dumps({"kind": "erase_identity", "id": "e-1", "identity_id": erased})

    expected = Expected([*first, deletion, *[erasure] * settings.partitions, *rest], tmp_path,
                        REGISTRY)
    by_cause = Counter(e["cause"] for e in expected.events)
    assert by_cause["delete_message"] >= 30  # a message of many holdings
    assert len({e["message_id"] for e in expected.events if e["cause"] == "erase_identity"}) >= 15
    reasons = Counter((r["reason"], r["message_id"] == deleted) for r in expected.rejections)
    assert reasons["message_deleted", True] >= 100 and reasons["limit_exceeded", False] > 0
    assert not any(erased in state["values"] for s in expected.summaries
                   for state in s["states"].values())
    kinds = {type(e["new"]).__name__ for e in expected.events}
    assert {"str", "int", "bool", "dict", "list"} <= kinds

    pipeline = Pipeline(settings)
    env = {"MSGSTATE_REGISTRY": orjson.dumps(REGISTRY).decode()}
    port = stack.free_port_pair()
    analytics = WorkerProcess(settings, ["-m", "msgstate.workers", "analytics", "--metrics-port",
                                         str(port)], name="analytics")
    try:
        first_worker = pipeline.start_worker(env=env)
        second_worker = pipeline.start_worker(env=env)
        pipeline.publish(first)
        wait_for(lambda: sum(o + 1 for o in pipeline.applied().values() if o >= 0),
                 lambda done: done > 600, timeout=120, what="some records applied")
        pipeline.publish([deletion])
        pipeline.publish([erasure], everywhere=True)
        # One worker dies as the deletion and the erasure arrive, the other just after they were
        # applied (their events may still be in its outbox): each was running and died of it.
        assert first_worker.kill() == -signal.SIGKILL
        pipeline.start_worker(env=env)
        pipeline.await_applied()
        assert second_worker.kill() == -signal.SIGKILL
        pipeline.start_worker(env=env)
        pipeline.publish(rest)
        pipeline.await_applied(timeout=240)
        assert_same_as_replay(pipeline, expected)

        reader = SummaryReader(pipeline.redis, settings.keys)
        parts = [s["part_id"] for s in expected.summaries if s["message_id"] == deleted]
        for part in [*parts, "never-written"]:
            summary = reader.get_summary(deleted, part)
            assert (summary["deleted"], summary["states"]) == (True, {})
        shown = msgstate(settings, "summary", deleted)
        assert shown.returncode == 0, shown.stderr
        assert orjson.loads(shown.stdout)["deleted"] is True
        assert keys_holding(pipeline, erased) == []
        assert not any(pipeline.redis.exists(settings.keys.index(p, erased))
                       for p in range(settings.partitions))

        # Once the workers stopped, every event is in Kafka; the analytics consumer read every
        # event record, repeats included.
        for proc in pipeline.workers:
            if proc.alive():
                assert proc.stop() == 0, proc.output()
        assert not any(pipeline.outbox_lengths().values())
        changes = read_topic(settings, settings.topics.summary_changes)
        ends: dict[TopicPartition, int] = {}
        for record in changes:
            ends[TopicPartition(settings.topics.summary_changes, record.partition)] = record.offset + 1
        await_committed(settings, analytics, ends)
        once: dict[str, Record] = {}
        for record in changes:  # in offset order: the first of a repeated event is counted
            once.setdefault(orjson.loads(record.value)["event_id"], record)
        assert sorted(once) == sorted(e["event_id"] for e in expected.events)
        seen = metrics(port)
        repeats = len(changes) - len(once)
        print(f"{len(changes)} event records, {repeats} repeated")
        # A killed holder's last round leaves its outbox only with the partition's next round:
        # its next holder produces it again.
        assert repeats > 0
        assert seen["msgstate_analytics_events_read_total"] == len(changes)
        assert seen["msgstate_analytics_events_counted_total"] == len(once)
        assert seen["msgstate_analytics_events_repeated_total"] == repeats

        want = expected_counts(once.values())
        assert {kind for kind, _, _ in want} == set(COUNTED)
        assert stored_counts(pipeline) == want
        # What `msgstate top` shows over a window holding every minute: taken on minus taken away.
        net: Counter[bytes] = Counter()
        for (kind, _, member), n in want.items():
            if kind in ("values", "removed"):
                net[member] += n if kind == "values" else -n
        minutes = int(time.time()) // 60 - min(m for _, m, _ in want) + 1
        top = AnalyticsStore(pipeline.redis, settings.key_prefix, 60).top(minutes, 100_000)
        assert {name.encode() + b"\0" + encode_value(v): n for (name, v), n in top["values"]} == {
            member: n for member, n in net.items() if n > 0}
        assert dict(top["messages"]) == dict(Counter(e["message_id"] for e in expected.events))
        assert dict(top["names"]) == dict(Counter(e["name"] for e in expected.events))
    finally:
        analytics.stop()
        pipeline.close()
