"""Drive the real pipeline and compare it with `msgstate replay` on the same records."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from msgstate.streams.storage.reader import SummaryReader
from msgstate.workers.cli.publish import record_key
from msgstate.workers.config import Settings
from msgstate.workers.tools.workload import responses
from msgstate.workers.topics import ensure_topics

from ..conftest import ROOT
from ..waiting import wait_for
from .processes import WorkerProcess


def workload(count: int, seed: int) -> list[bytes]:
    """A random workload with duplicates, malformed and invalid records and type clashes."""
    records = list(responses(count, messages=max(5, count // 40), identities=25,
                             bad_share=0.08, seed=seed))
    hostile = [
        b"\xff\xfe not utf-8",
        b"[1, 2, 3]",
        b'{"id": "x", "message_id": "m-big", "identity_id": "u", "changes": [{"operation": "add",'
        b' "type": "LWW", "name": "n", "value": "' + b"a" * 70_000 + b'"}]}',
        b'{"id": 5, "message_id": "m-bad", "identity_id": "u", "changes": []}',
    ]
    step = max(1, len(records) // (len(hostile) + 1))
    for i, bad in enumerate(hostile, start=1):
        records.insert(i * step, bad)
    return records


class Expected:
    """What `msgstate replay` says of the records."""

    def __init__(self, records: list[bytes], tmp: Path, registry: dict[str, Any] | None = None) -> None:
        source, changes, rejections = tmp / "in.jsonl", tmp / "changes.jsonl", tmp / "rejections.jsonl"
        source.write_bytes(b"".join(r + b"\n" for r in records))
        more: list[str] = []
        if registry is not None:
            (tmp / "registry.json").write_bytes(orjson.dumps(registry))
            more = ["--registry", str(tmp / "registry.json")]
        done = subprocess.run(
            [sys.executable, "-m", "msgstate.workers", "replay", str(source), "--changes", str(changes),
             "--rejections", str(rejections), *more], cwd=ROOT, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr.decode()
        self.summaries = [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]
        self.events = [orjson.loads(line) for line in changes.read_bytes().splitlines()]
        self.rejections = [orjson.loads(line) for line in rejections.read_bytes().splitlines()]


class Pipeline:
    """Topics, a producer that remembers the last offset per partition, and worker processes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        ensure_topics(settings)
        self.producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all",
                                      enable_idempotence=True, linger_ms=5)
        self.last_offsets: dict[int, int] = {}
        self.workers: list[WorkerProcess] = []
        self.redis = settings.redis_client()

    def start_worker(self, *args: str, engine: str | None = None,
                     env: dict[str, str] | None = None) -> WorkerProcess:
        more = {**(env or {}), **({} if engine is None else {"MSGSTATE_ENGINE": engine})}
        proc = WorkerProcess(self.settings, ["-m", "msgstate.workers", "worker", "-l", "info", *args],
                             env=more)
        self.workers.append(proc)
        return proc

    def publish(self, records: list[bytes], everywhere: bool = False) -> None:
        """Keyed by message id; `everywhere`: each record to every partition, without a key (as
        an erasure is sent)."""
        topic = self.settings.topics.responses
        if everywhere:
            futures = [self.producer.send(topic, key=None, value=r, partition=p)
                       for r in records for p in range(self.settings.partitions)]
        else:
            futures = [self.producer.send(topic, key=record_key(r), value=r) for r in records]
        self.producer.flush(timeout=60)
        for future in futures:
            meta = future.get(timeout=60)
            self.last_offsets[meta.partition] = max(self.last_offsets.get(meta.partition, -1),
                                                    meta.offset)

    def applied(self) -> dict[int, int]:
        keys = self.settings.keys
        return {p: int(self.redis.hget(keys.fence(p), "offset") or -1)
                for p in self.last_offsets}

    def await_applied(self, timeout: float = 120) -> None:
        """Until the fence of every partition reaches its last published offset."""
        def probe() -> dict[int, int]:
            for proc in self.workers:
                if proc.proc.returncode not in (None, -9, -15, 0):
                    proc.check()
            return self.applied()

        wait_for(probe, lambda seen: all(seen[p] >= o for p, o in self.last_offsets.items()),
                 timeout=timeout,
                 what=lambda: f"offsets {self.last_offsets}\n" + "\n".join(
                     w.output() for w in self.workers))

    def outputs(self, topic: str, at_least: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Every record of an output topic, once at least `at_least` distinct ones arrived."""
        consumer = KafkaConsumer(topic, bootstrap_servers=self.settings.kafka,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 consumer_timeout_ms=500)
        seen: list[dict[str, Any]] = []

        def more() -> int:
            for message in consumer:
                seen.append(orjson.loads(message.value))
            return len({orjson.dumps(s, option=orjson.OPT_SORT_KEYS) for s in seen})

        try:
            wait_for(more, lambda n: n >= at_least, timeout=timeout,
                     what=f"{at_least} distinct records on {topic}")
        finally:
            consumer.close()
        return seen

    def outbox_lengths(self) -> dict[int, int]:
        keys = self.settings.keys
        return {p: int(self.redis.llen(keys.outbox(p))) for p in self.last_offsets}

    def committed(self) -> dict[int, int]:
        """The consumer group's committed offset per partition of the responses topic."""
        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka)
        try:
            offsets = admin.list_group_offsets(self.settings.app_id)[self.settings.app_id]
        finally:
            admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items()
                if tp.topic == self.settings.topics.responses}

    def close(self) -> None:
        for proc in self.workers:
            proc.stop()
        self.producer.close(timeout=5)
        self.redis.close()


def keys_holding(pipeline: Pipeline, identity: str) -> list[bytes]:
    """The value hashes in Redis that hold a value of the identity."""
    suffix = b"\0" + identity.encode()
    return [key for key in pipeline.redis.scan_iter(match=f"{pipeline.settings.key_prefix}:*:vals:*",
                                                     count=1000)
            if any(f.endswith(suffix) for f in cast(list[bytes], pipeline.redis.hkeys(key)))]


def assert_same_as_replay(pipeline: Pipeline, expected: Expected) -> None:
    settings = pipeline.settings
    reader = SummaryReader(pipeline.redis, settings.keys)
    for want in expected.summaries:
        got = reader.get_summary(want["message_id"], want["part_id"])
        assert got == want, f"summary of {want['message_id']}/{want['part_id']} differs"
    # No part exists in Redis that replay does not print.
    parts = {(s["message_id"], s["part_id"]) for s in expected.summaries}
    meta_keys = list(pipeline.redis.scan_iter(match=f"{settings.key_prefix}:*:meta:*", count=1000))
    assert len(meta_keys) == len(parts)

    events = pipeline.outputs(settings.topics.summary_changes, len(expected.events))
    by_id: dict[str, dict[str, Any]] = {}
    order: dict[str, list[str]] = defaultdict(list)
    for event in events:
        known = by_id.setdefault(event["event_id"], event)
        assert known == event, f"two payloads for one event id {event['event_id']}"
        if order[event["message_id"]][-1:] != [event["event_id"]] and \
                event["event_id"] not in order[event["message_id"]]:
            order[event["message_id"]].append(event["event_id"])
    assert sorted(by_id) == sorted(e["event_id"] for e in expected.events)
    assert all(by_id[e["event_id"]] == e for e in expected.events)
    # Per message, events come out in the order replay produced them.
    want_order: dict[str, list[str]] = defaultdict(list)
    for event in expected.events:
        want_order[event["message_id"]].append(event["event_id"])
    assert dict(order) == dict(want_order)

    rejections = pipeline.outputs(settings.topics.rejections, len(expected.rejections))
    unique = {(r.pop("partition"), r.pop("offset"), r["change_index"]): r for r in rejections}
    key = lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)  # noqa: E731
    assert sorted(map(key, unique.values())) == sorted(map(key, expected.rejections))
