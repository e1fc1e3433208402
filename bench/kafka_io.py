"""Kafka for the harness, with confluent-kafka (librdkafka): it produces and reads at rates far
above any system under test for little CPU, which matters on a machine the systems share.

Output topics are created with `message.timestamp.type=LogAppendTime`: an event's timestamp is
the moment the broker appended it, so produce→event latency needs no consumer timing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from msgstate.schemas.exceptions import ServiceUnreachable
from msgstate.workers.config import Settings

TIMEOUT = 30.0
PUBLISH_LINGER_MS = 20
PACE_SECONDS = 0.004
# Errors a topic gives while it settles after creation.
_SETTLING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
             KafkaError.UNKNOWN_TOPIC_OR_PART}


def _admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka, "log_level": 3})


def topic_names(settings: Settings) -> list[str]:
    try:
        return list(_admin(settings).list_topics(timeout=TIMEOUT).topics)
    except KafkaException as exc:
        raise ServiceUnreachable("Kafka", settings.kafka, str(exc)) from exc


def create_topics(settings: Settings) -> None:
    """The input topic and the two output topics of one run, all broker-stamped: a response's
    append time and its events' share one clock."""
    topics = settings.topics
    stamped = {"message.timestamp.type": "LogAppendTime"}
    new = [NewTopic(topics.responses, settings.partitions, settings.replication, config=stamped),
           NewTopic(topics.summary_changes, settings.partitions, settings.replication, config=stamped),
           NewTopic(topics.rejections, settings.partitions, settings.replication, config=stamped)]
    admin = _admin(settings)  # kept alive until the futures are done
    for future in admin.create_topics(new).values():
        future.result(TIMEOUT)


def delete_topics(settings: Settings, *marks: str) -> None:
    """Delete every topic whose name contains one of `marks` (a run's prefix, its group ids)."""
    doomed = [name for name in topic_names(settings) if any(mark in name for mark in marks)]
    if doomed:
        admin = _admin(settings)
        for future in admin.delete_topics(doomed).values():
            future.result(TIMEOUT)


def _end_offsets(consumer: Consumer, topic: str) -> dict[int, int]:
    # Just after a topic is created, its partitions may not have a leader yet everywhere
    # (NOT_LEADER_FOR_PARTITION): a retriable error, so ask again until TIMEOUT.
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            meta = consumer.list_topics(topic, timeout=TIMEOUT).topics[topic]
            return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)[1]
                    for p in meta.partitions}
        except KafkaException as exc:
            error = exc.args[0]
            settling = error.retriable() or error.code() in _SETTLING
            if not settling or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _consumer(settings: Settings) -> Consumer:
    return Consumer({"bootstrap.servers": settings.kafka, "group.id": "msgstate-bench-reader",
                     "enable.auto.commit": False, "enable.partition.eof": False, "log_level": 3})


class Counter:
    """The records a topic holds, asked again and again on one connection (for waiting)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self._consumer = _consumer(settings)

    def total(self) -> int:
        return sum(self.ends().values())

    def ends(self) -> dict[int, int]:
        """partition -> its end offset (the offset its next record will have)."""
        return _end_offsets(self._consumer, self.topic)

    def close(self) -> None:
        self._consumer.close()


def scan(settings: Settings, topic: str, since: dict[int, int] | None = None
         ) -> Iterator[tuple[bytes | None, bytes | None, int]]:
    """(key, value, timestamp ms) of every record the topic holds now, partition by partition;
    with `since` (partition -> offset), only the records from those offsets on."""
    since = since or {}
    consumer = _consumer(settings)
    try:
        ends = {p: end for p, end in _end_offsets(consumer, topic).items() if end > since.get(p, 0)}
        consumer.assign([TopicPartition(topic, p, since.get(p, OFFSET_BEGINNING)) for p in ends])
        left = dict(ends)
        deadline = time.monotonic() + 120
        while left and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=1.0):
                if message.error():
                    continue
                yield message.key(), message.value(), message.timestamp()[1]
                p = message.partition()
                if p in left and message.offset() + 1 >= left[p]:
                    del left[p]
    finally:
        consumer.close()


def read_topic(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    return [(key, value) for key, value, _ in scan(settings, topic)]


@dataclass
class Sent:
    """What a publishing run sent: the produce time of each response id, records per partition."""

    # (message id, response id) -> produce time, ms (when the publisher was handed the record)
    stamps: dict[tuple[str, str], int] = field(default_factory=dict)
    # (message id, response id) -> broker append time, ms (when it was in Kafka)
    appended: dict[tuple[str, str], int] = field(default_factory=dict)
    per_partition: dict[int, int] = field(default_factory=dict)
    named: int = 0  # records with a message id (retried duplicates counted each time)
    first_ms: int = 0
    last_ms: int = 0


def publish(settings: Settings, records: Iterable[bytes], rate: float | None = None) -> Sent:
    """Produce the records keyed by message id, at `rate` records/s or as fast as possible.

    Each response's produce-call time and broker append time are kept (`stamps`, `appended`).
    """
    # linger.ms 20: on one shared small machine the broker's CPU goes by produce requests, not
    # records; at 5 ms (librdkafka's default) it took a third of a core more at 4,700/s,
    # away from the systems measured. Latency counts from the append, so it is not counted.
    producer = Producer({"bootstrap.servers": settings.kafka, "acks": "all",
                         "linger.ms": PUBLISH_LINGER_MS,
                         "queue.buffering.max.messages": 1_000_000, "log_level": 3})
    sent = Sent()
    topic = settings.topics.responses
    counts = sent.per_partition
    appended = sent.appended

    def delivered(which: tuple[str, str] | None, error: object, message: Any) -> None:
        # `which` was parsed at produce time: the report does not parse the record again.
        if error is None:
            p = message.partition()
            counts[p] = counts.get(p, 0) + 1
            if which is not None:
                appended.setdefault(which, message.timestamp()[1])

    start = time.monotonic()
    woke = start
    due = 0  # records whose produce time has come: produced without looking at the clock again
    for n, record in enumerate(records):
        if n >= due:
            # Paced in steps of at least PACE_SECONDS: a wake-up and a poll per step, not per
            # record, spares the CPUs the systems measured share. The records of a step leave
            # in one linger window anyway; each is produced no earlier than its time.
            producer.poll(0)
            if rate:
                woke = max(start + n / rate, woke + PACE_SECONDS)
                if (ahead := woke - time.monotonic()) > 0:
                    time.sleep(ahead)
                due = int((time.monotonic() - start) * rate) + 1
            else:
                due = n + 1000
        now = time.time_ns() // 1_000_000
        which = response_of(record)
        key = None
        if which is not None:
            key = which[0].encode()
            sent.stamps.setdefault(which, now)
            sent.named += 1
        sent.first_ms = sent.first_ms or now
        sent.last_ms = now
        while True:
            try:
                producer.produce(topic, record, key, timestamp=now,
                                 on_delivery=partial(delivered, which))
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(TIMEOUT) > 0:
        raise ServiceUnreachable("Kafka", settings.kafka, "records not delivered in time")
    return sent


def response_of(record: bytes | None) -> tuple[str, str] | None:
    """(message id, response id) of a record with a string message id, else None."""
    try:
        data = orjson.loads(record or b"")
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, dict) and isinstance(data.get("message_id"), str):
        return data["message_id"], str(data.get("id"))
    return None


def events(settings: Settings, since: dict[int, int] | None = None, sizes: list[int] | None = None
           ) -> dict[str, tuple[tuple[str, str], int]]:
    """event id -> ((message id, response id), broker timestamp ms) of the distinct events in
    the summary-changes topic (from the offsets `since`, when given); `sizes` gets the size in
    bytes of each distinct event's value."""
    found: dict[str, tuple[tuple[str, str], int]] = {}
    for _, value, stamp in scan(settings, settings.topics.summary_changes, since):
        if value is not None:
            event = orjson.loads(value)
            if event["event_id"] not in found:
                found[event["event_id"]] = ((event["message_id"], event["response_id"]), stamp)
                if sizes is not None:
                    sizes.append(len(value))
    return found
