"""What a pipeline run should have produced, and what it did: the checks behind fault runs.

The ground truth is the responses topic itself, read back after the run: replaying it in
partition-offset order with the engine gives the summaries, events and rejections the
pipeline must end with. Comparing them with Redis and the output topics counts what was
lost (an acknowledged record missing from the topic, an event or rejection never produced,
a summary behind) and what was applied twice (a record applied again shows up as an extra
`duplicate` rejection or as a second, different payload for one event id). Events and rejections
are at least once: a repeat with the same payload is dropped, by event id and by (partition,
offset, change_index), and counted apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from msgstate.schemas.records import decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.streams.storage.client import SyncRedis
from msgstate.streams.storage.reader import SummaryReader
from msgstate.workers.config import Settings

BATCH = 128


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int = 0  # ms, as Kafka keeps it


@dataclass(slots=True)
class Expected:
    """Replay of the topic: summaries, events by id, rejections by (partition, offset, change)."""

    summaries: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejections: dict[tuple[int, int, int | None], dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class Differences:
    parts: int = 0
    parts_differing: int = 0
    events_expected: int = 0
    events_missing: int = 0
    events_unexpected: int = 0
    events_conflicting: int = 0
    events_repeated: int = 0
    rejections_expected: int = 0
    rejections_missing: int = 0
    rejections_unexpected: int = 0
    rejections_repeated: int = 0


def read_topic(settings: Settings, topic: str) -> list[Record]:
    """Every record of a topic, partition by partition in offset order."""
    consumer = KafkaConsumer(**settings.kafka_client(), enable_auto_commit=False,
                             group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        out: list[Record] = []
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            for tp, messages in consumer.poll(timeout_ms=1000, max_records=5000).items():
                out.extend(Record(m.partition, m.offset, m.key, m.value, m.timestamp)
                           for m in messages)
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


def replay_topic(records: Iterable[Record]) -> Expected:
    """The engine over the records, in partition-offset order (one message, one partition)."""
    engine = Engine(None, events=True, tallies=False)
    store = MemoryStore()
    expected = Expected()
    batch: list[Record] = []

    def flush() -> None:
        outcome = engine.apply_batch([decode_response(r.value) for r in batch], store)
        store.apply(outcome.delta)
        for event in outcome.events:
            expected.events[event["event_id"]] = event
        for index, rejection in outcome.rejections:
            where = batch[index]
            key = (where.partition, where.offset, rejection["change_index"])
            expected.rejections[key] = {**rejection, "partition": where.partition,
                                        "offset": where.offset}
        batch.clear()

    for record in records:
        batch.append(record)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    expected.summaries = store.summaries()
    return expected


def compare(settings: Settings, client: SyncRedis, expected: Expected,
            events: Iterable[dict[str, Any]], rejections: Iterable[dict[str, Any]]) -> Differences:
    """Count the differences between what the pipeline produced and the replay."""
    diff = Differences(parts=len(expected.summaries), events_expected=len(expected.events),
                       rejections_expected=len(expected.rejections))
    reader = SummaryReader(client, settings.keys)
    for want in expected.summaries:
        if reader.get_summary(want["message_id"], want["part_id"]) != want:
            diff.parts_differing += 1
    # Distinct keys: a cluster client that knew a master before a failover also scans it once it
    # is a replica, and counts the keys it holds twice.
    stored_parts = len(set(client.scan_iter(match=f"{settings.key_prefix}:*:meta:*", count=1000)))
    diff.parts_differing += max(0, stored_parts - len(expected.summaries))

    seen: dict[str, dict[str, Any]] = {}
    for event in events:
        known = seen.get(event["event_id"])
        if known is None:
            seen[event["event_id"]] = event
        elif known == event:
            diff.events_repeated += 1
        else:
            diff.events_conflicting += 1
    for event_id, event in seen.items():
        if event_id not in expected.events:
            diff.events_unexpected += 1
        elif expected.events[event_id] != event:
            diff.events_conflicting += 1
    diff.events_missing = sum(1 for event_id in expected.events if event_id not in seen)

    got: dict[tuple[int, int, int | None], dict[str, Any]] = {}
    for rejection in rejections:
        identity = rejection_identity(rejection)
        known = got.get(identity)
        if known is None:
            got[identity] = rejection
        elif known == rejection:
            diff.rejections_repeated += 1
        else:
            diff.rejections_unexpected += 1
    for key, rejection in got.items():
        if expected.rejections.get(key) != rejection:
            diff.rejections_unexpected += 1
    diff.rejections_missing = sum(1 for key in expected.rejections if key not in got)
    return diff


def rejection_identity(rejection: dict[str, Any]) -> tuple[int, int, int | None]:
    """What names one refusal of one input record: a repeat of a rejection has the same."""
    return rejection["partition"], rejection["offset"], rejection["change_index"]


def json_values(records: Iterable[Record]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]
