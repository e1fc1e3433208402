"""`msgstate rebuild`'s work: read the state changelog to its end and restore Redis from it
(streams/storage/rebuild.py says what a restore writes).

A partition is restored only when Redis's fence for it is behind the changelog (Redis lost, or
restored from an old backup): one whose fence is at or past it is current, so a second run
changes nothing. It refuses while the state workers' consumer group has members: they hold the
partitions, and a restore under them would race their rounds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from aiokafka.errors import KafkaError as AioKafkaError
from kafka import KafkaConsumer
from kafka.errors import KafkaError

from msgstate.schemas.exceptions import MsgstateError, ServiceUnreachable
from msgstate.schemas.limits import DEDUPE_WINDOW
from msgstate.streams.storage.rebuild import (
    ChangelogState,
    Command,
    Delete,
    Push,
    SetFields,
    restore_commands,
)
from msgstate.workers.config import Settings
from msgstate.workers.topics import admin_client

PIPELINE_COMMANDS = 2000  # per Redis round trip
READ_SECONDS = 30.0  # the longest wait for the next records of a changelog not yet read to its end


class WorkersRunning(MsgstateError):
    pass


@dataclass(slots=True)
class Outcome:
    records: int = 0
    restored: dict[int, int] = field(default_factory=dict)  # partition -> fence set
    current: list[int] = field(default_factory=list)  # fence already at or past the changelog
    values: int = 0
    # What could not be restored, one line each.
    lost: list[str] = field(default_factory=list)


def refuse_while_workers_hold(settings: Settings) -> None:
    """Raise WorkersRunning when the state workers' consumer group has members."""
    admin = admin_client(settings, "msgstate-rebuild", request_timeout_ms=10_000)
    try:
        group = admin.describe_groups([settings.app_id]).get(settings.app_id, {})
    finally:
        admin.close()
    members = group.get("members") or []
    if members:
        raise WorkersRunning(
            f"{len(members)} state worker(s) of consumer group {settings.app_id} hold the "
            f"partitions ({group.get('group_state', 'active')}): stop them, then run rebuild")


def read_changelog(settings: Settings, progress: Callable[[int, int], None]
                   ) -> tuple[ChangelogState, dict[int, int]]:
    """Every record of the changelog, to the end it had when the read began; also the responses
    topic's first kept offset per partition. `progress(done, total)` is called as it goes."""
    try:
        return asyncio.run(_read(settings, progress))
    except (AioKafkaError, KafkaError) as exc:
        raise ServiceUnreachable("Kafka", settings.kafka, type(exc).__name__) from exc


async def _read(settings: Settings, progress: Callable[[int, int], None]
                ) -> tuple[ChangelogState, dict[int, int]]:
    # aiokafka: its record batches are parsed in compiled code, several times kafka-python's rate.
    topic = settings.topics.state
    consumer = AIOKafkaConsumer(**settings.aiokafka_client(), group_id=None,
                                enable_auto_commit=False, client_id="msgstate-rebuild",
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20,
                                auto_offset_reset="earliest")
    await consumer.start()
    state = ChangelogState()
    try:
        tps = [AioTopicPartition(topic, p) for p in _partitions(settings, topic)]
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        total = sum(ends[tp] - starts[tp] for tp in tps)
        await consumer.seek_to_beginning(*tps)
        left = {tp for tp in tps if ends[tp] > starts[tp]}
        done = 0
        while left:
            batches = await consumer.getmany(*left, timeout_ms=int(READ_SECONDS * 1000),
                                             max_records=20_000)
            if not batches:
                raise MsgstateError(f"topic {topic}: no records for {READ_SECONDS:.0f} s before its "
                                    f"end; {total - done:,} left unread")
            for tp, messages in batches.items():
                take = state.take
                for message in messages:
                    take(message.key, message.value)
                done += len(messages)
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
            progress(done, total)
        responses = [AioTopicPartition(settings.topics.responses, p) for p in range(settings.partitions)]
        first = {tp.partition: offset for tp, offset in (await consumer.beginning_offsets(responses)).items()}
    finally:
        await consumer.stop()
    return state, first


def _partitions(settings: Settings, topic: str) -> list[int]:
    probe = KafkaConsumer(**settings.kafka_client(), client_id="msgstate-rebuild")
    try:
        found = probe.partitions_for_topic(topic)
    finally:
        probe.close()
    if not found:
        raise MsgstateError(f"topic {topic} does not exist: no state changelog to rebuild from")
    return sorted(found)


def restore(settings: Settings, state: ChangelogState, first_kept: dict[int, int],
            progress: Callable[[int, int], None]) -> Outcome:
    """Restore each partition whose Redis fence is behind its changelog."""
    keys = settings.keys
    client = settings.redis_client(socket_timeout=30)
    outcome = Outcome(records=state.records)
    if state.unreadable:
        outcome.lost.append(f"{state.unreadable:,} changelog records were not the changelog's "
                            "(unreadable key or value): skipped")
    try:
        for p in range(keys.partitions):
            kept = first_kept.get(p, 0)
            if p not in state.partitions and kept > 0 and client.hget(keys.fence(p), "offset") is None:
                outcome.lost.append(f"partition {p}: not in the changelog, and responses before "
                                    f"offset {kept} are gone from the responses topic")
        partitions = sorted(state.partitions)
        for done, p in enumerate(partitions, 1):
            log = state.partitions[p]
            if p >= keys.partitions:
                outcome.lost.append(f"partition {p}: the changelog has it but MSGSTATE_PARTITIONS "
                                    f"is {keys.partitions}: not restored")
                continue
            fence = client.hget(keys.fence(p), "offset")
            if fence is not None and int(fence) >= log.complete:
                outcome.current.append(p)
                continue
            _run(client, restore_commands(keys, p, log, DEDUPE_WINDOW))
            outcome.restored[p] = log.complete
            outcome.values += log.values()
            kept = first_kept.get(p, 0)
            if kept > log.complete + 1:
                outcome.lost.append(f"partition {p}: responses {log.complete + 1}..{kept - 1} are "
                                    "gone from the responses topic and were not in the changelog")
            progress(done, len(partitions))
    finally:
        client.close()
    return outcome


def _run(client: Any, commands: Iterable[Command]) -> None:
    pipe = client.pipeline(transaction=False)
    queued = 0
    for command in commands:
        if isinstance(command, Delete):
            pipe.delete(command.key)
        elif isinstance(command, SetFields):
            pipe.hset(command.key, mapping=command.fields)
        elif isinstance(command, Push):
            pipe.rpush(command.key, *command.items)
        else:
            pipe.hset(command.key, "offset", command.offset)
        queued += 1
        if queued >= PIPELINE_COMMANDS:
            pipe.execute()
            pipe, queued = client.pipeline(transaction=False), 0
    pipe.execute()


def quiet_kafka() -> None:
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
