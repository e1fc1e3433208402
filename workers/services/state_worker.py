"""The state worker: applies msgstate.responses partition by partition, in offset order.

A consumer-group member on aiokafka (faust's own Kafka driver), used directly: faust's
per-message dispatch (a task per message, a stream per actor, per-event acks) capped a no-op
agent at a few per cent of what the bare consumer reads. Here each fetch is one round for the
RoundProcessor, all its partitions together, and the fetch after it is prefetched meanwhile.

Correctness does not rest on Kafka's committed offsets but on the Redis fence: an assignment
takes a new token, a stale holder is refused, records at or below the fence are skipped. Offsets
are committed about once a second, and on revocation and shutdown, so a restart re-reads little.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.limits import DEDUPE_WINDOW
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.native_engine import default_engine
from msgstate.streams.engine.signing import is_authentic
from msgstate.streams.rounds.changelog import Logged
from msgstate.streams.rounds.compiled_decider import CompiledDecider
from msgstate.streams.rounds.decider import Decider
from msgstate.streams.rounds.outbox import EVENT, STATE, OutRecord
from msgstate.streams.rounds.processor import InRecord, RoundProcessor
from msgstate.streams.rounds.python_decider import PythonDecider
from msgstate.streams.storage.client import async_client
from msgstate.streams.storage.redis_round_store import RedisRoundStore, ReplicaWait
from msgstate.workers.config import Settings
from msgstate.workers.partitioner import CachedPartitioner
from msgstate.workers.services.metrics import WorkerMetrics

log = logging.getLogger(__name__)

Fetched = dict[TopicPartition, list[ConsumerRecord[Any, Any]]]

FETCH_MAX = 4000  # records per fetch, over all partitions
FETCH_WAIT_MS = 100  # how long an idle fetch waits before the loop looks at its stop flag
TOPIC_WAIT = 30.0  # seconds to wait for the input topic's metadata before joining the group
METADATA_MAX_AGE_MS = 30_000  # partitions added to the topic are seen within this
FETCH_MAX_WAIT_MS = 500
FRESH_WAIT_MS = 3  # how long a round waits for the records that arrived while its fetch was held
COMMIT_EVERY = 1.0  # seconds between offset commits
RETRY_DELAY = 1.0  # seconds before a partition whose batch failed unexpectedly is read again
BATCH_BYTES = 256 * 1024  # the producer's record batches


def check_partitions(topic: str, found: int, configured: int) -> None:
    """Message state is keyed by partition: a worker that counts partitions otherwise than the
    topic would write where no reader looks."""
    if found != configured:
        raise ConfigError(f"topic {topic} has {found} partitions but MSGSTATE_PARTITIONS is {configured}; "
                          f"set MSGSTATE_PARTITIONS={found} (readers find a message's keys by it)")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, worker: StateWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.worker.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.worker.on_partitions_assigned(assigned)


class StateWorker:
    """Run with `await worker.run()`; `stop()` makes it finish the batch in hand and leave."""

    def __init__(self, settings: Settings, registry: Mapping[str, Any] | None = None,
                 metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        # As written: the compiled decider reads its caps too.
        self.registry = settings.registry if registry is None else registry
        self.engine = Engine(self.registry)
        self.client = async_client(settings.redis, cluster=settings.redis_cluster, socket_timeout=10,
                                   socket_connect_timeout=5)
        self.store = RedisRoundStore(self.client, settings.keys, ReplicaWait(
            settings.redis_wait_replicas, settings.redis_wait_timeout_ms))
        self.outputs = {EVENT: settings.topics.summary_changes, STATE: settings.topics.state}
        self.rejections = settings.topics.rejections
        self.consumer = AIOKafkaConsumer(
            **settings.aiokafka_client(), group_id=settings.app_id,
            client_id=f"{settings.app_id}-state", enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
            # The broker answers a fetch as soon as it has a record (the fetch that freshens a
            # round, in `_fetch`, must not wait for more), or after 500 ms when it has none: a
            # long poll. A fetch is sent only once the records of the one before are taken, so
            # there are about two a round under load, and two a second when idle. (With 5 ms,
            # an idle worker took 15 % of a core for empty fetches, and 60 % instead of 38 % at
            # 2,640/s.)
            fetch_min_bytes=1, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            metadata_max_age_ms=METADATA_MAX_AGE_MS)
        self.partitioner = CachedPartitioner()
        self._partitions: dict[str, list[int]] = {}  # output topic -> its partitions
        self.producer = AIOKafkaProducer(
            **settings.aiokafka_client(), client_id=f"{settings.app_id}-state",
            acks="all", enable_idempotence=True, linger_ms=1, max_batch_size=BATCH_BYTES,
            partitioner=self.partitioner)
        # Partitions held now; the processor takes a new token for each at its first round.
        self.assigned: set[TopicPartition] = set()
        self.processor = self._new_processor()
        self._cache_restarts = 0  # of this processor's decider, counted in the metrics
        self.fenced: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}  # next offset to commit
        self._round = asyncio.Lock()  # a fetch's processing and a rebalance exclude each other
        self._stopping = asyncio.Event()
        self._last_commit = 0.0
        self._committing: asyncio.Future[None] | None = None
        self._joined = False
        self.applied_to: dict[TopicPartition, int] = {}  # next offset to read, for the lag
        self.failure: ConfigError | None = None  # why the worker stopped by itself

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: finishing the batch in hand")
        self._stopping.set()

    async def ready(self) -> bool:
        """In the group, not stopping, and Redis answers."""
        if not self._joined or self._stopping.is_set():
            return False
        try:
            return bool(await asyncio.wait_for(self.client.ping(), timeout=2))
        except Exception:
            return False

    async def run(self) -> None:
        await self.producer.start()
        try:
            await self.consumer.start()
            try:
                await self._await_topic()
                self.consumer.subscribe([self.settings.topics.responses], listener=_Listener(self))
                await self._loop()
                if self.failure is not None:
                    raise self.failure
            finally:
                async with self._round:
                    await self._release(set(self.assigned))
                await self.consumer.stop()
        finally:
            await self.producer.stop()
            await self.client.aclose()

    async def _await_topic(self) -> None:
        """Until the broker's metadata lists the input topic's partitions (it was just created,
        on a broker just started): a group assignment made before that gave this worker no
        partition at all, until its next metadata refresh."""
        topic = self.settings.topics.responses
        deadline = time.monotonic() + TOPIC_WAIT
        # `topics()` asks the broker afresh and lists only topics whose partitions it knows.
        while topic not in await self.consumer.topics():
            if time.monotonic() > deadline:
                log.warning("no partitions of %s in the broker's metadata yet; joining anyway", topic)
                return
            await asyncio.sleep(0.1)
        check_partitions(topic, len(await self.producer.partitions_for(topic)), self.settings.partitions)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                fetched = await self._fetch()
            except KafkaError as exc:
                log.warning("fetch failed (%r); trying again", exc)
                await asyncio.sleep(RETRY_DELAY)
                continue
            async with self._round:
                # A rebalance may have run since the fetch: only partitions still held.
                batches = {tp: records for tp, records in fetched.items()
                           if tp in self.assigned and tp not in self.fenced}
                if batches:
                    await self._process(batches)
                if time.monotonic() - self._last_commit >= COMMIT_EVERY and (
                        self._committing is None or self._committing.done()):
                    # In the background: the next fetch need not wait for the coordinator.
                    self._committing = asyncio.ensure_future(self._commit(set(self.assigned)))
                    self._report_lag()

    async def _fetch(self) -> Fetched:
        """The next round's records.

        aiokafka fetches from a broker again only once the records it buffered from there are
        taken, so what it holds at the start of a round was fetched early in the round before;
        whatever arrived since would wait a whole round more. So once those are taken, one
        more fetch (the broker answers it at once when it has records: fetch_min_bytes 1)
        brings the newest ones into this round too.
        """
        fetched: Fetched = await self.consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=FETCH_MAX)
        got = sum(map(len, fetched.values()))
        if not fetched or got >= FETCH_MAX:
            return fetched
        newer: Fetched = await self.consumer.getmany(timeout_ms=FRESH_WAIT_MS,
                                                     max_records=FETCH_MAX - got)
        for tp, records in newer.items():
            if tp not in fetched:
                fetched[tp] = records
            elif records[0].offset == fetched[tp][-1].offset + 1:
                fetched[tp] = fetched[tp] + records
            else:
                # The partition was sought in between (a rebalance), or its log has a hole there
                # (transaction markers, compaction): its newer records are read again next
                # round, after this round's, so that a round's records of a partition always
                # follow on. A hole costs those records one round.
                self.consumer.seek(tp, records[0].offset)
        return fetched

    def _report_lag(self) -> None:
        for tp in self.assigned:
            high, applied = self.consumer.highwater(tp), self.applied_to.get(tp)
            if high is not None and applied is not None:
                self.metrics.lag.labels(str(tp.partition)).set(max(0, high - applied))

    def _new_processor(self) -> RoundProcessor:
        decider: Decider
        limit = self.settings.cache_entries
        if (self.settings.engine or default_engine()) == "python":
            decider = PythonDecider(self.engine, window=DEDUPE_WINDOW, limit=limit)
        else:
            decider = CompiledDecider(self.registry, window=DEDUPE_WINDOW, limit=limit)
        self.decider = decider
        return RoundProcessor(decider, self.store, self._send, self.settings.topics.responses,
                              changelog=self.settings.changelog)

    def _count_cache_restarts(self) -> None:
        restarts = self.decider.restarts - self._cache_restarts
        if restarts:
            self._cache_restarts = self.decider.restarts
            self.metrics.cache_restarts.inc(restarts)
            log.warning("the state cache passed %d entries and started again empty: if this "
                        "repeats, raise MSGSTATE_CACHE_ENTRIES", self.settings.cache_entries)

    async def _process(self, batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        by_partition = {tp.partition: tp for tp in batches}
        keyring = self.settings.keyring
        try:
            if keyring is None:
                stats = await self.processor.process({
                    tp.partition: [InRecord(r.offset, r.value, True, r.key) for r in records]
                    for tp, records in batches.items()})
            else:
                stats = await self.processor.process({
                    tp.partition: [InRecord(r.offset, r.value,
                                            is_authentic(keyring, r.headers, r.key, r.value), r.key)
                                   for r in records]
                    for tp, records in batches.items()})
        except Exception:
            # Never lose a batch: read the round again after a pause, from its first offsets.
            log.exception("round failed; reading it again",
                          extra={"partitions": sorted(by_partition)})
            self.metrics.failures.inc()
            self.processor = self._new_processor()
            self._cache_restarts = 0
            for tp, records in batches.items():
                self.consumer.seek(tp, records[0].offset)
            await asyncio.sleep(RETRY_DELAY)
            return
        self._count_cache_restarts()
        for partition, offset in stats.rewound.items():
            # Redis lost writes that Kafka's committed offsets had passed: read them again.
            self.consumer.seek(by_partition[partition], offset)
        for partition in stats.fenced:
            tp = by_partition[partition]
            log.warning("partition now belongs to another worker; no more writes from here",
                        extra={"topic": tp.topic, "partition": partition})
            self.metrics.fenced.inc()
            self.fenced.add(tp)
            self.consumer.pause(tp)
        for tp, records in batches.items():
            if tp.partition not in stats.fenced and tp.partition not in stats.rewound:
                self.positions[tp] = self.applied_to[tp] = records[-1].offset + 1
        self.metrics.round(stats)

    async def _send(self, records: Sequence[OutRecord], logged: Logged) -> asyncio.Future[Any]:
        """Hand a round's outputs to the producer, one Kafka batch per output partition; returns
        a future done once Kafka acknowledged every one. Order per key holds: a key's records
        share one Kafka batch, and batches to one partition are sent in order. The changelog's
        records come grouped by their partition (the input partition), several per response."""
        producer = self.producer
        grouped: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        for kind, raw_key, value in records:
            topic = self.outputs.get(kind, self.rejections)
            partitions = self._partitions.get(topic)
            if partitions is None:
                partitions = self._partitions[topic] = sorted(await producer.partitions_for(topic))
            key = raw_key or None
            where = (topic, self.partitioner(key, partitions, partitions))
            group = grouped.get(where)
            if group is None:
                grouped[where] = [(key, value)]
            else:
                group.append((key, value))
        state_topic = self.outputs[STATE]
        sends: list[tuple[tuple[str, int], Sequence[tuple[bytes | None, bytes | None]]]] = [
            *grouped.items(), *(((state_topic, p), items) for p, items in logged.items())]
        futures = []
        for (topic, partition), items in sends:
            builder = producer.create_batch()
            append = builder.append
            for out_key, out_value in items:
                if append(key=out_key, value=out_value, timestamp=None) is None:  # full: send it
                    futures.append(await producer.send_batch(builder, topic, partition=partition))
                    builder = producer.create_batch()
                    append = builder.append
                    append(key=out_key, value=out_value, timestamp=None)
            futures.append(await producer.send_batch(builder, topic, partition=partition))
        return asyncio.gather(*futures)

    async def _commit(self, tps: set[TopicPartition]) -> None:
        offsets = {tp: self.positions.pop(tp) for tp in list(self.positions) if tp in tps}
        self._last_commit = time.monotonic()
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:
            # Harmless: the fence skips what a later holder reads again.
            log.warning("offset commit failed (%r); the fence covers it", exc,
                        extra={"partitions": sorted(tp.partition for tp in offsets)})

    async def _release(self, tps: set[TopicPartition]) -> None:
        """Give partitions up: commit, drop delivered outputs from the outboxes, forget them."""
        if self._committing is not None:
            await asyncio.wait([self._committing])
        await self._commit(tps)
        try:
            await self.processor.release(tp.partition for tp in tps if tp not in self.fenced)
        except Exception as exc:  # the next holder produces them again: at least once
            log.info("outbox left for the next holder (%r)", exc,
                     extra={"partitions": sorted(tp.partition for tp in tps)})
        for tp in tps:
            self.applied_to.pop(tp, None)
        self.assigned -= tps
        self.fenced -= tps

    # aiokafka awaits these during a rebalance.
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._round:
            await self._release(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        beyond = sorted(tp.partition for tp in assigned if tp.partition >= self.settings.partitions)
        if beyond:
            # The topic grew under a running worker, whose keys are those of the old count.
            self.failure = ConfigError(
                f"topic {self.settings.topics.responses} now has partition(s) {beyond} but "
                f"MSGSTATE_PARTITIONS is {self.settings.partitions}: stop every worker, run "
                "msgstate repartition, and start them with the new count")
            self.stop()
            return
        async with self._round:
            self.assigned = set(assigned)
            self.fenced -= self.assigned
            self._joined = True
            self.metrics.assignment(tp.partition for tp in assigned)
            log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)})
