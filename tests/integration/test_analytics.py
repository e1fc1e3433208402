"""The analytics consumer counts each change once per minute bucket; `msgstate top` shows them."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from typing import Any

import orjson
import redis
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from msgstate.workers.config import Settings
from msgstate.workers.services.analytics_store import AnalyticsStore
from msgstate.workers.tools import stack
from msgstate.workers.topics import ensure_topics

from ..conftest import ROOT, worker_env
from ..waiting import wait_for
from .processes import WorkerProcess


def change(message: str, response: str, name: str, old: Any, new: Any, kind: str = "Set") -> dict[str, Any]:
    return {"event_id": f"{message}/{response}/{name}", "message_id": message, "part_id": "root",
            "response_id": response, "identity_id": f"u/{response}", "name": name, "type": kind,
            "old": old, "new": new, "version": 1, "status_text": None}


def publish(settings: Settings, records: list[tuple[int, bytes]]) -> dict[TopicPartition, int]:
    """Send (timestamp ms, value) records to the changes topic; the end offset per partition."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all")
    sent = []
    for timestamp, value in records:
        key = orjson.loads(value)["message_id"].encode() if value.startswith(b"{") else b"x"
        sent.append(producer.send(settings.topics.summary_changes, key=key, value=value,
                                  timestamp_ms=timestamp))
    producer.flush(timeout=30)
    producer.close()
    ends: dict[TopicPartition, int] = {}
    for future in sent:
        meta = future.get(timeout=30)
        tp = TopicPartition(meta.topic, meta.partition)
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    return ends


def await_committed(settings: Settings, proc: WorkerProcess, ends: dict[TopicPartition, int]
                    ) -> None:
    """Committed past the last record: every record, repeats included, was handled."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka)

    def committed() -> dict[TopicPartition, int]:
        proc.check()
        group = f"{settings.app_id}-analytics"
        try:
            offsets = admin.list_group_offsets(group).get(group, {})
        except KafkaError:  # the group's coordinator is not there until the consumer joins
            return {}
        return {tp: meta.offset for tp, meta in offsets.items()}

    try:
        wait_for(committed, lambda seen: all(seen.get(tp) == end for tp, end in ends.items()),
                 timeout=60, what=lambda: proc.output())
    finally:
        admin.close()


def test_counts_per_minute_drop_repeated_event_ids_and_top_prints_them(settings: Settings) -> None:
    ensure_topics(settings)
    now_ms = int(time.time() * 1000)
    earlier_ms = now_ms - 60_000  # the minute before
    a, b = "layer:///messages/a", "layer:///messages/b"
    events = [
        (now_ms, change(a, "r1", "reactions", None, ["👍"])),
        (now_ms, change(a, "r2", "reactions", ["🎉"], ["🎉", "👍"])),  # gained 👍 only
        (now_ms, change(a, "r2", "reactions", ["🎉"], ["🎉", "👍"])),  # redelivered: same event id
        (now_ms, change(a, "r3", "poll_choice", None, "b", "FWW")),
        (earlier_ms, change(a, "r4", "poll_choice", None, "b", "FWW")),
        (earlier_ms, change(b, "r5", "poll_choice", None, "c", "FWW")),
        (earlier_ms, change(a, "r6", "reactions", ["👍"], None)),  # a removal sets no value
        (now_ms, change(a, "r1", "reactions", None, ["👍"])),  # redelivered again
    ]
    ends = publish(settings, [(now_ms, b"not json"),
                              *((t, orjson.dumps(event)) for t, event in events)])
    client = redis.Redis.from_url(settings.redis)
    store = AnalyticsStore(client, settings.key_prefix, settings.analytics_retention)
    minute, before = now_ms // 60_000, earlier_ms // 60_000
    metrics_port = stack.free_port_pair()
    proc = WorkerProcess(settings, ["-m", "msgstate.workers", "analytics", "--metrics-port",
                                     str(metrics_port)],
                         name="analytics")
    try:
        await_committed(settings, proc, ends)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as answer:
            metrics = answer.read().decode()
        for line in ("msgstate_analytics_events_read_total 9.0",
                     "msgstate_analytics_events_counted_total 6.0",
                     "msgstate_analytics_events_repeated_total 2.0",
                     "msgstate_analytics_records_skipped_total 1.0"):
            assert line in metrics.splitlines(), metrics
    finally:
        assert proc.stop() == 0, proc.output()

    def zset(key: str) -> dict[Any, int]:
        return {m: int(s) for m, s in client.zrange(key, 0, -1, withscores=True)}

    assert zset(store.keys.names(minute)) == {b"reactions": 2, b"poll_choice": 1}
    assert zset(store.keys.names(before)) == {b"reactions": 1, b"poll_choice": 2}
    assert zset(store.keys.messages(minute)) == {a.encode(): 3}
    assert zset(store.keys.messages(before)) == {a.encode(): 2, b.encode(): 1}
    assert zset(store.keys.values(minute)) == {"reactions\0\"👍\"".encode(): 2, b'poll_choice\0"b"': 1}
    assert zset(store.keys.values(before)) == {b'poll_choice\0"b"': 1, b'poll_choice\0"c"': 1}
    ttl = client.ttl(store.keys.names(minute))
    assert 0 < ttl <= settings.analytics_retention
    assert store.top(5, 10) == {
        "names": [("poll_choice", 3), ("reactions", 3)],
        "values": [(("poll_choice", "b"), 2), (("reactions", "👍"), 2), (("poll_choice", "c"), 1)],
        "messages": [(a, 5), (b, 1)],
    }
    client.close()

    shown = subprocess.run([sys.executable, "-m", "msgstate.workers", "top", "--minutes", "5",
                            "--limit", "2"],
                           env={**worker_env(settings), "COLUMNS": "100"}, cwd=ROOT,
                           capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    lines = [" ".join(line.replace("│", " ").split()) for line in shown.stdout.splitlines()]
    assert "Busiest messages (last 5 min)" in lines
    assert f"{a} 5" in lines and f"{b} 1" in lines
    assert 'poll_choice "b" 2' in lines and 'reactions "👍" 2' in lines
    assert 'poll_choice "c" 1' not in lines  # --limit 2
    assert "poll_choice 3" in lines and "reactions 3" in lines


def test_deletions_and_erasures_take_their_values_out_of_the_counts(settings: Settings) -> None:
    ensure_topics(settings)
    now_ms = int(time.time() * 1000)
    earlier_ms = now_ms - 60_000
    m, other = "layer:///messages/d", "layer:///messages/e"
    choice = {"custom_response_data": {"choice": "b"}, "label": "B"}

    def held(response: str, who: str, name: str, new: Any, kind: str, message: str = m
             ) -> dict[str, Any]:
        return {**change(message, response, name, None, new, kind), "identity_id": who}

    def taken(cause: str, record_id: str, who: str, name: str, old: Any, kind: str,
              message: str = m) -> dict[str, Any]:
        return {**change(message, record_id, name, old, None, kind), "identity_id": who,
                "event_id": f"{message}/{record_id}/root/{name}/{who}", "cause": cause}

    events = [
        (earlier_ms, held("r1", "frodo", "reactions", ["👍", "🎉"], "Set")),
        (earlier_ms, held("r2", "sam", "reactions", ["👍"], "Set")),
        (earlier_ms, held("r3", "frodo", "answer", choice, "LWWN")),
        (earlier_ms, held("r4", "frodo", "reactions", ["👍"], "Set", other)),
        (now_ms, held("r5", "sam", "latest", [1, 2], "LWW")),  # an array value, not members
        # frodo is erased: from both messages; then the message is deleted: sam's holdings go.
        (now_ms, taken("erase_identity", "e-1", "frodo", "answer", choice, "LWWN")),
        (now_ms, taken("erase_identity", "e-1", "frodo", "reactions", ["👍", "🎉"], "Set")),
        (now_ms, taken("erase_identity", "e-1", "frodo", "reactions", ["👍"], "Set", other)),
        (now_ms, taken("delete_message", "d-1", "sam", "latest", [1, 2], "LWW")),
        (now_ms, taken("delete_message", "d-1", "sam", "reactions", ["👍"], "Set")),
        (now_ms, taken("delete_message", "d-1", "sam", "reactions", ["👍"], "Set")),  # again
    ]
    ends = publish(settings, [(t, orjson.dumps(event)) for t, event in events])
    proc = WorkerProcess(settings, ["-m", "msgstate.workers", "analytics", "--metrics-port", "0"],
                         name="analytics")
    try:
        await_committed(settings, proc, ends)
    finally:
        assert proc.stop() == 0, proc.output()

    client = redis.Redis.from_url(settings.redis)
    store = AnalyticsStore(client, settings.key_prefix, settings.analytics_retention)
    try:
        removed = client.zrange(store.removed(now_ms // 60_000), 0, -1, withscores=True)
        counted = {key: int(n) for key, n in removed}
        assert counted == {"reactions\0\"👍\"".encode(): 3, "reactions\0\"🎉\"".encode(): 1,
                           b'answer\0{"custom_response_data":{"choice":"b"},"label":"B"}': 1,
                           b"latest\0[1,2]": 1}
        top = store.top(5, 10)
        assert top["values"] == []  # nobody holds anything any more
        assert top["messages"] == [(m, 8), (other, 2)]  # every change once; the repeat dropped
        # Over the last minute only, the removals are not set against the earlier adds: no
        # count goes below zero.
        assert store.top(1, 10, now=now_ms / 1000)["values"] == []
    finally:
        client.close()
