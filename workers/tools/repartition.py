"""`msgstate repartition --partitions N`: more partitions for the responses topic, and every
message's state moved to the keys of its new partition.

A message's state lives under the hash tag of the partition its records are keyed to (murmur2
of its id over the partition count, streams/storage/layout.py), and every tag depends on the
count. So growing the count moves every key: each message's to its new partition, each
partition's fence and outbox to that partition's new tag, each entry of an identity's index to
the index of its message's new partition; the erasure ids taken go to every new partition. The
state workers must be stopped and must have applied every record first, or records of the old
count would be applied to keys nobody reads again; the command refuses, in one line, while they
run or lag. The state changelog grows with the responses topic, and what moved to another
partition is logged anew under it (changelog records are keyed by partition).

Every step is safe to run again after a crash: partitions already added are not added again,
and a key is copied (DUMP and RESTORE, which also work across a cluster's nodes) before the old
one is deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from msgstate.schemas.exceptions import ConfigError, MsgstateError
from msgstate.streams.rounds.changelog import DERIVED, state_key
from msgstate.streams.storage.client import SyncRedis
from msgstate.streams.storage.layout import (
    ERASURES,
    INDEX,
    MARK,
    MESSAGE,
    PART_FIELD_PREFIX,
    SEEN,
    KeyRef,
    Keys,
    split_index_field,
    state_ref,
)
from msgstate.workers.config import Settings
from msgstate.workers.topics import admin_client

INDEX_HEAD = INDEX + ":"


class Refused(MsgstateError):
    """The deployment is not in a state to repartition: the message says why and what to do."""


@dataclass
class Moved:
    """What a repartition did."""

    added: int = 0  # partitions added to the responses topic (0 when an earlier run had)
    keys: int = 0  # keys moved
    messages: set[str] = field(default_factory=set)  # messages whose state moved


def repartition(settings: Settings, partitions: int,
                progress: Callable[[int], None] = lambda _: None) -> Moved:
    """Grow the responses topic of `settings` (whose `partitions` is the count the keys are
    under now) to `partitions`, and move the state to the keys of the new count."""
    old, topic = settings.partitions, settings.topics.responses
    if partitions <= old:
        raise ConfigError(f"--partitions {partitions} must be more than MSGSTATE_PARTITIONS ({old}): "
                          "Kafka only adds partitions")
    redis = settings.redis_client(socket_timeout=30)
    admin = admin_client(settings, "msgstate-repartition", request_timeout_ms=30_000)
    try:
        found = _partition_count(admin, topic)
        if found not in (old, partitions):
            raise Refused(f"topic {topic} has {found} partitions, neither MSGSTATE_PARTITIONS "
                          f"({old}) nor --partitions ({partitions})")
        members = len(admin.describe_groups([settings.app_id])[settings.app_id].get("members") or [])
        if members:
            raise Refused(f"{members} state worker(s) of group {settings.app_id} are running: stop "
                          f"them, run this again, then start them with MSGSTATE_PARTITIONS={partitions}")
        _check_applied(settings, redis, topic, old, partitions)
        moved = Moved()
        if found == old:
            admin.create_partitions({topic: partitions})
            moved.added = partitions - old
            _await_partitions(admin, topic, partitions)
        relog = None
        if settings.topics.state in admin.list_topics():
            # The changelog has a partition per input partition: it grows with them.
            if _partition_count(admin, settings.topics.state) < partitions:
                admin.create_partitions({settings.topics.state: partitions})
                _await_partitions(admin, settings.topics.state, partitions)
            relog = Relog(settings)
        try:
            _move(redis, Keys(settings.key_prefix, topic, old),
                  Keys(settings.key_prefix, topic, partitions), moved, relog, progress)
        finally:
            if relog is not None:
                relog.close()
        return moved
    finally:
        admin.close()
        redis.close()


def _partition_count(admin: Any, topic: str) -> int:
    (described,) = admin.describe_topics([topic])
    if described.get("error_code"):
        raise Refused(f"topic {topic} was not found: there is nothing to repartition")
    return len(described["partitions"])


def _await_partitions(admin: Any, topic: str, partitions: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _partition_count(admin, topic) < partitions:
        if time.monotonic() > deadline:
            raise Refused(f"topic {topic} did not show {partitions} partitions within {timeout:.0f} s")
        time.sleep(0.2)


def _check_applied(settings: Settings, redis: SyncRedis, topic: str, old: int, new: int) -> None:
    """Every record of the old partitions applied (the fence is at the log's end); a fence an
    earlier run moved is under the new count's tag."""
    layouts = (Keys(settings.key_prefix, topic, old), Keys(settings.key_prefix, topic, new))
    consumer = KafkaConsumer(**settings.kafka_client(), enable_auto_commit=False)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(old)])
    finally:
        consumer.close()
    for tp, end in sorted(ends.items()):
        applied = max(int(redis.hget(keys.fence(tp.partition), "offset") or -1) for keys in layouts)
        if applied < end - 1:
            raise Refused(f"partition {tp.partition} has records up to offset {end - 1} but the "
                          f"state workers applied up to {applied}: run them until they catch up, "
                          "stop them, then run this again")


def _move(redis: SyncRedis, old: Keys, new: Keys, moved: Moved, relog: Relog | None,
          progress: Callable[[int], None]) -> None:
    """Copy each partition's keys to the new layout; log the state of messages that changed
    partition to the changelog (their records are keyed by partition); then delete the old keys.
    A crash before the deletions leaves the old keys, so the next run copies and logs again."""
    for partition in range(old.partitions):
        head = old.head(partition)
        copied: list[str] = []
        for key in _scan(redis, head):
            rest = key[len(head):]
            if rest.startswith(INDEX_HEAD):
                moved.keys += _move_index(redis, key, rest[len(INDEX_HEAD):], new)
                continue
            if rest == ERASURES:
                moved.keys += _spread_erasures(redis, key, partition, new, relog)
                continue
            target = _new_key(rest, partition, new, moved)
            if target is None or target == key:
                continue
            dumped = redis.dump(key)
            if dumped is None:
                continue  # gone since the scan
            redis.restore(target, 0, dumped, replace=True)
            copied.append(key)
            ref = state_ref(rest)
            if relog is not None and ref is not None and new.partition_of(ref[1]) != partition:
                relog.moved(redis, ref, partition, new.partition_of(ref[1]), target)
            progress(1)
        if relog is not None:
            relog.flush()
        pipe = redis.pipeline(transaction=False)  # on a cluster, split by node
        for key in copied:
            pipe.delete(key)
        pipe.execute()
        moved.keys += len(copied)


def _move_index(redis: SyncRedis, key: str, identity: str, new: Keys) -> int:
    """An identity's index, each entry to the index of its message's new partition; returns 1
    when entries moved. Entries go before they leave, so a run cut short can run again. The
    changelog does not log the index: a rebuild makes it from the values."""
    moving: dict[int, list[bytes]] = {}
    for found in redis.hkeys(key):
        entry = found if isinstance(found, bytes) else found.encode()
        message_id, _, _ = split_index_field(entry)
        target = new.partition_of(message_id)
        if new.index(target, identity) != key:
            moving.setdefault(target, []).append(entry)
    for target, entries in moving.items():
        redis.hset(new.index(target, identity), mapping=dict.fromkeys(entries, MARK.encode()))
    for entries in moving.values():
        redis.hdel(key, *entries)
    return int(bool(moving))


def _spread_erasures(redis: SyncRedis, key: str, partition: int, new: Keys,
                     relog: Relog | None) -> int:
    """A partition's erasure ids, to every new partition: an erasure taken by any old partition
    is taken for the messages each new one holds."""
    ids = redis.hkeys(key)
    targets = {p: new.erasures(p) for p in range(new.partitions)}
    if ids:
        for p, target in targets.items():
            if target != key:
                redis.hset(target, mapping=dict.fromkeys(ids, b"1"))
            if relog is not None and p != partition:
                for found in ids:
                    rid = found.decode() if isinstance(found, bytes) else found
                    relog.field((ERASURES, "", ""), rid, b"1", None, p)
    if relog is not None:
        relog.flush()
    if key in targets.values():
        return 0
    redis.delete(key)
    return 1


class Relog:
    """The changelog records of a message's state moved to another partition: its keys of the
    new partition, and tombstones of the old ones (SPEC section 7a; streams/rounds/changelog.py).
    Its dedupe ids are logged as one record before any round of the new partition (offset -1),
    and each is tombstoned under the old partition (whichever of them keys a record there)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topics.state
        self.producer = KafkaProducer(**settings.kafka_client(), acks="all", linger_ms=20)

    def moved(self, redis: SyncRedis, ref: KeyRef, old: int, new: int, key: str) -> None:
        kind = ref[0]
        if kind in DERIVED:
            return
        if kind == SEEN:
            raw_ids: list[bytes] = redis.lrange(key, 0, -1)  # type: ignore[assignment]  # sync client
            ids = [rid.decode() for rid in raw_ids]
            if ids:
                self.send(new, ref, ids[-1], orjson.dumps([-1, *ids]))
                for rid in ids:
                    self.send(old, ref, rid, None)
            return
        found: dict[bytes, bytes] = redis.hgetall(key)  # type: ignore[assignment]  # sync client
        for raw, value in found.items():
            name = raw.decode()
            if not (kind == MESSAGE and name.startswith(PART_FIELD_PREFIX)):  # made by a rebuild
                self.field(ref, name, value, old, new)

    def field(self, ref: KeyRef, name: str, value: bytes, old: int | None, new: int) -> None:
        """One field logged under its new partition, and tombstoned under the old one."""
        self.send(new, ref, name, value)
        if old is not None:
            self.send(old, ref, name, None)

    def send(self, partition: int, ref: KeyRef, name: str, value: bytes | None) -> None:
        self.producer.send(self.topic, key=state_key(partition, ref, name), value=value,
                           partition=partition)

    def flush(self) -> None:
        self.producer.flush(timeout=60)

    def close(self) -> None:
        self.producer.close(timeout=10)


def _scan(redis: SyncRedis, head: str) -> Iterator[str]:
    # The tag in `head` is between braces, which a MATCH pattern would read as a class.
    pattern = head.replace("[", "\\[").replace("{", "\\{").replace("}", "\\}") + "*"
    # Keys moved away during the scan do not match it: SCAN still returns every key once.
    for key in redis.scan_iter(match=pattern, count=1000):
        yield key.decode() if isinstance(key, bytes) else key


def _new_key(rest: str, partition: int, new: Keys, moved: Moved) -> str | None:
    """The key of the new count for `rest` (an old key without its partition's head)."""
    if rest == "fence":
        return new.fence(partition)
    if rest == "outbox":
        return new.outbox(partition)
    ref = state_ref(rest)
    if ref is None:
        return None  # not a key msgstate makes: left where it is
    moved.messages.add(ref[1])
    return new.state(ref)


