"""`msgstate repartition --partitions N`: more partitions for the responses topic, and every
message's state moved to the keys of its new partition.

A message's state lives under the hash tag of the partition its records are keyed to (murmur2
of its id over the partition count, streams/storage/layout.py), and every tag depends on the
count. So growing the count moves every key: each message's to its new partition, each
partition's fence and outbox to that partition's new tag, each entry of an identity's index to
the index of its message's new partition; the erasure ids taken go to every new partition. The
state workers must be stopped and must have applied every record first, or records of the old
count would be applied to keys nobody reads again; the command refuses, in one line, while they
run or lag.

Every step is safe to run again after a crash: partitions already added are not added again,
and a key is copied (DUMP and RESTORE, which also work across a cluster's nodes) before the old
one is deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from msgstate.schemas.exceptions import ConfigError, MsgstateError, ServiceUnreachable
from msgstate.streams.storage.client import SyncRedis
from msgstate.streams.storage.layout import ERASURES, INDEX, Keys, split_index_field, state_ref
from msgstate.workers.config import Settings

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
    try:
        admin = KafkaAdminClient(**settings.kafka_client(), client_id="msgstate-repartition",
                                 request_timeout_ms=30_000)
    except KafkaError as exc:
        raise ServiceUnreachable("Kafka", settings.kafka, type(exc).__name__) from exc
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
        _move(redis, Keys(settings.key_prefix, topic, old), Keys(settings.key_prefix, topic, partitions),
              moved, progress)
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


def _move(redis: SyncRedis, old: Keys, new: Keys, moved: Moved,
          progress: Callable[[int], None]) -> None:
    for partition in range(old.partitions):
        head = old.head(partition)
        for key in _scan(redis, head):
            rest = key[len(head):]
            if rest.startswith(INDEX_HEAD):
                moved.keys += _move_index(redis, key, rest[len(INDEX_HEAD):], new)
                continue
            if rest == ERASURES:
                moved.keys += _spread_erasures(redis, key, new)
                continue
            target = _new_key(rest, partition, new, moved)
            if target is not None and target != key:
                _copy_then_delete(redis, key, target)
                moved.keys += 1
                progress(1)


def _move_index(redis: SyncRedis, key: str, identity: str, new: Keys) -> int:
    """An identity's index, each entry to the index of its message's new partition; returns 1
    when entries moved. Entries go before they leave, so a run cut short can run again."""
    moving: dict[str, list[bytes]] = {}
    for found in redis.hkeys(key):
        entry = found if isinstance(found, bytes) else found.encode()
        message_id, _, _ = split_index_field(entry)
        target = new.index(new.partition_of(message_id), identity)
        if target != key:
            moving.setdefault(target, []).append(entry)
    for target, some in moving.items():
        redis.hset(target, mapping=dict.fromkeys(some, b""))
        redis.hdel(key, *some)
    return int(bool(moving))


def _spread_erasures(redis: SyncRedis, key: str, new: Keys) -> int:
    """A partition's erasure ids, to every new partition: an erasure taken by any old partition
    is taken for the messages each new one holds."""
    ids = redis.hkeys(key)
    targets = {new.erasures(p) for p in range(new.partitions)}
    if ids:
        for target in targets - {key}:
            redis.hset(target, mapping=dict.fromkeys(ids, b"1"))
    if key in targets:
        return 0
    redis.delete(key)
    return 1


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


def _copy_then_delete(redis: SyncRedis, key: str, target: str) -> None:
    dumped = redis.dump(key)
    if dumped is None:
        return  # gone since the scan
    redis.restore(target, 0, dumped, replace=True)
    redis.delete(key)
