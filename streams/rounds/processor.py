"""A fetch's records, every input partition at once: the decider decides, the store (Redis, or
memory in unit tests) persists them in one fenced step with an outbox entry per partition, then
the outputs go to Kafka and leave the outboxes.

A round is the unit of work: one decode pass, one load (none in steady state: the decider caches
what it read and wrote), one engine call, one persist script for all its partitions, one hand-off
to the producer. Per-partition costs were what bounded a worker under a steady load, where a
fetch brings a few records from each of many partitions.

A worker that dies after the Redis step and before Kafka acknowledged the outputs leaves them in
the outboxes; each partition's next holder produces them first. Events are therefore at least
once, with stable ids; state changes exactly once. Outputs are not awaited: Kafka acknowledges
them while later rounds are processed, and they leave the outbox in the partition's next script,
or in `release` when the partition is given up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, NamedTuple

from msgstate.schemas.codec import dumps
from msgstate.schemas.exceptions import AlreadyApplied, Fenced, StoreBehind
from msgstate.schemas.rejections import Rejection
from msgstate.streams.rounds.changelog import Logged, RoundLog, by_partition, evicted_records
from msgstate.streams.rounds.decider import Decider, Decision
from msgstate.streams.rounds.outbox import EVENT, REJECTION, OutRecord, pack_outbox, unpack_outbox
from msgstate.streams.storage.protocol import (
    Assignment,
    PartitionWrite,
    RoundStore,
    partition_finder,
)

log = logging.getLogger(__name__)


class InRecord(NamedTuple):
    offset: int
    value: bytes
    authentic: bool = True  # the signature verdict (True when signing is off)
    key: bytes | None = None  # the record key: the message id


# Hands the records to the producer, in order: events and rejections, then the changelog's
# records by changelog partition. Returns a future that is done once Kafka acknowledged all of
# them (or failed with the first error).
Sink = Callable[[Sequence[OutRecord], Logged], Awaitable["asyncio.Future[Any]"]]


@dataclass(slots=True)
class RoundStats:
    """What one round did and how long its steps took, for the worker's metrics."""

    applied: dict[int, int] = field(default_factory=dict)  # partition -> records decided and persisted
    skipped: int = 0  # re-deliveries at or below a fence
    events: int = 0
    rejections: list[str] = field(default_factory=list)  # their reasons
    redis_seconds: dict[str, float] = field(default_factory=dict)  # step -> seconds
    produce_seconds: list[float] = field(default_factory=list)  # per delivery, until acknowledged
    retries: int = 0
    # Partitions another worker holds now: nothing of theirs was written, and nothing more will be.
    fenced: set[int] = field(default_factory=set)
    # Partitions whose records start past their fence + 1 (Kafka's committed offset is ahead of
    # what Redis holds, after Redis lost its last writes): partition -> the offset to read
    # them again from. Nothing of theirs was applied.
    rewound: dict[int, int] = field(default_factory=dict)


class RoundProcessor:
    """The partitions one worker holds on one input topic, processed a round at a time."""

    def __init__(self, decider: Decider, store: RoundStore, sink: Sink, topic: str,
                 retry_max: float = 5.0, inflight_max: int = 8, changelog: bool = True) -> None:
        self.decider = decider
        self.changelog = changelog  # write the state changelog's records (SPEC section 7a)
        self.store = store
        self.sink = sink
        self.topic = topic
        self.retry_max = retry_max
        self.inflight_max = inflight_max
        self.assignments: dict[int, Assignment] = {}  # partition -> this worker's hold on it
        # Rounds whose outputs Kafka has not acknowledged yet: (outbox entries added per
        # partition, their future).
        self.inflight: deque[tuple[dict[int, int], asyncio.Future[Any]]] = deque()
        self._delivered: list[float] = []  # seconds each delivery took, not yet reported
        # partition -> the offset it was last sent back to: each gap is sent back once, so a
        # hole in the log (records gone by retention, transaction markers) is then read past.
        self._rewound: dict[int, int] = {}
        self.stats = RoundStats()  # of the round in hand
        self.log = logging.LoggerAdapter(log, {"topic": topic})

    async def process(self, batches: Mapping[int, Sequence[InRecord]]) -> RoundStats:
        """Apply a fetch (partition -> its records, in offset order): one round, or one round per
        partition where the store's atomic step cannot span partitions (Redis Cluster) or a
        record has no key (an erasure)."""
        # An erasure (a record without a message id for key) erases in its own partition's
        # messages, through that partition's index: its round is that partition's alone.
        if len(batches) <= 1 or (self.store.cross_partition and not any(
                not r.key for records in batches.values() for r in records)):
            return await self._round(batches)
        total = RoundStats()
        for partition, records in batches.items():
            stats = await self._round({partition: records})
            total.applied.update(stats.applied)
            total.skipped += stats.skipped
            total.events += stats.events
            total.rejections += stats.rejections
            for step, seconds in stats.redis_seconds.items():
                total.redis_seconds[step] = total.redis_seconds.get(step, 0.0) + seconds
            total.produce_seconds += stats.produce_seconds
            total.retries += stats.retries
            total.fenced |= stats.fenced
            total.rewound.update(stats.rewound)
        self.stats = total
        return total

    async def _round(self, batches: Mapping[int, Sequence[InRecord]]) -> RoundStats:
        """Apply one round (partition -> its records, in offset order); returns once it is
        persisted and its outputs are on their way.

        Outputs are not awaited here: Kafka acknowledges them while the next rounds are
        processed (in order per output partition), and they leave the outboxes with the next
        persist after that. Up to `inflight_max` rounds' outputs may be unacknowledged.

        Any failure is retried with backoff from what Redis holds: the partitions are taken
        again, which produces whatever their outboxes still have, and the round is recomputed
        (a lost reply never applies it twice). A partition found held by another worker is
        dropped from the round and reported in `fenced`; the others are applied.
        """
        stats = self.stats = RoundStats()
        batches = dict(batches)
        delay = 0.05
        while batches:
            try:
                await self._settle(wait=len(self.inflight) >= self.inflight_max)
                missing = [p for p in batches if p not in self.assignments]
                if missing:
                    await self._take(missing)
                    for partition in missing:
                        if (start := self._gap(partition, batches[partition][0].offset)) is not None:
                            stats.rewound[partition] = start
                            del batches[partition]
                    if not batches:
                        break
                outputs, logged, added = await self._apply(batches)
                if outputs or logged:
                    await self._send(outputs, logged, added)
                break
            except Fenced as exc:
                if exc.partition is None or exc.partition not in batches:
                    raise
                # Nothing of the round was written: drop that partition and decide the rest again.
                self.log.warning("partition %d now belongs to another worker", exc.partition)
                stats.fenced.add(exc.partition)
                del batches[exc.partition]
                self.assignments.pop(exc.partition, None)
            except AlreadyApplied:
                # The reply to our own write was lost: take the partitions again to flush the outboxes.
                self._reset()
            except StoreBehind as exc:
                # The store lost rounds it had acknowledged (a failover): take the partitions
                # again; each is then read again from the fence the store holds, + 1.
                self.log.warning("the store is behind this worker (%s); taking the partitions again", exc)
                self._reset()
                stats.retries += 1
            except Exception as exc:
                self.log.warning("round step failed (%r); retrying in %.2f s", exc, delay)
                self._reset()
                stats.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
        # Deliveries acknowledged since the last round.
        stats.produce_seconds, self._delivered = self._delivered, []
        return stats

    def _gap(self, partition: int, first: int) -> int | None:
        """Where to read a just-taken partition from again, when its first record lies past its
        fence + 1: Redis, the truth, has not applied the records between."""
        start = self.assignments[partition].applied + 1
        if first <= start or self._rewound.get(partition) == start:
            return None
        self._rewound[partition] = start
        self.log.warning("partition %d: records from offset %d on are not applied in Redis; "
                         "reading them again (the next fetch started at %d)", partition, start, first)
        return start

    async def release(self, partitions: Iterable[int]) -> None:
        """Give partitions up: wait for the outputs on their way, then drop them from those
        partitions' outboxes."""
        released = [p for p in partitions if p in self.assignments]
        try:
            await self._settle(wait=True, every=True)
            for partition in released:
                assignment = self.assignments[partition]
                if assignment.acked:
                    await self.store.ack(assignment, assignment.acked)
                    assignment.acked = 0
        except Exception:
            self._reset()  # the next holder produces them again: at least once
            raise
        finally:
            for partition in released:
                self.assignments.pop(partition, None)
                self._rewound.pop(partition, None)

    async def _send(self, outputs: Sequence[OutRecord], logged: Logged, added: dict[int, int]) -> None:
        started = time.perf_counter()
        acked = await self.sink(outputs, logged)

        def delivered(_: asyncio.Future[Any]) -> None:
            self._delivered.append(time.perf_counter() - started)

        acked.add_done_callback(delivered)
        self.inflight.append((added, acked))

    def _reset(self) -> None:
        # The next round takes its partitions again: new tokens, the outboxes produced again.
        self.assignments.clear()
        self.inflight.clear()

    async def _settle(self, *, wait: bool, every: bool = False) -> None:
        """Count the outputs Kafka acknowledged, oldest round first; wait for the oldest (or
        `every`) round when told to. Raises when a delivery failed."""
        inflight = self.inflight
        if wait and inflight:
            await asyncio.wait([f for _, f in inflight] if every else [inflight[0][1]])
        while inflight and inflight[0][1].done():
            added, acked = inflight.popleft()
            failure = acked.exception()
            if failure is not None:
                raise failure
            for partition, count in added.items():
                assignment = self.assignments.get(partition)
                if assignment is not None:
                    # The next persist trims them from the outbox, in the same round trip.
                    assignment.acked += count

    async def _take(self, partitions: Sequence[int]) -> None:
        # Whatever happened before (a lost reply, another holder), Redis is the truth again.
        # The cache is valid while the assignments hold (a message lives in one partition).
        self.decider.clear()
        started = time.perf_counter()
        taken = await asyncio.gather(*(self.store.take(p) for p in partitions))
        self._timed("take", started)
        for assignment in taken:
            if assignment.pending:
                self.log.info("producing %d outbox entries left by an earlier holder of partition %d",
                              len(assignment.pending), assignment.partition)
                left = by_partition(record for entry in assignment.pending
                                    for record in unpack_outbox(entry))
                await (await self.sink(*left))
                assignment.acked = len(assignment.pending)
                assignment.pending = []
            self.assignments[assignment.partition] = assignment

    async def _apply(self, batches: Mapping[int, Sequence[InRecord]]
                     ) -> tuple[list[OutRecord], Logged, dict[int, int]]:
        """Decide and persist; returns the outputs to deliver (the changelog's apart) and the
        outbox entries added."""
        stats = self.stats
        stats.skipped = 0
        fresh: dict[int, Sequence[InRecord]] = {}
        for partition, records in batches.items():
            applied = self.assignments[partition].applied
            # Re-deliveries (offsets at or below the fence) change nothing and say nothing.
            new = records if records[0].offset > applied else [r for r in records if r.offset > applied]
            stats.skipped += len(records) - len(new)
            if new:
                fresh[partition] = new
        if not fresh:
            return [], {}, {}
        records = [r for new in fresh.values() for r in new]
        # A message's state lives in the partition its records arrive on (keyed by its id).
        home = {r.key: p for p, new in fresh.items() for r in new}
        decider = self.decider
        read = decider.decide([r.value for r in records],
                              None if all(r.authentic for r in records) else [r.authentic for r in records])
        while read is not None:
            started = time.perf_counter()
            read = decider.load(await self.store.read(read, home))
            self._timed("load", started)
        decision = decider.apply()
        try:
            outputs = self._route(fresh, records, decision, home)
            where = partition_finder(self.store.keys, home)
            log = (decider.changelog(where, {p: new[-1].offset for p, new in fresh.items()})
                   if self.changelog else RoundLog({}, {}))
            kept = [p for p in fresh if p in outputs or p in log.frames]
            writes = [PartitionWrite(self.assignments[p], new[0].offset, new[-1].offset,
                                     pack_outbox(outputs.get(p, ()), log.frames.get(p, b""))
                                     if p in kept else b"")
                      for p, new in fresh.items()]
            started = time.perf_counter()
            evicted = await self.store.persist(writes, decision.writes, home)
            self._timed("persist", started)
        except BaseException:
            decider.clear()  # what the store holds now is unknown: read it again
            raise
        decider.commit()
        for partition, new in fresh.items():
            stats.applied[partition] = len(new)
        stats.events = len(decision.events)
        stats.rejections = [r["reason"] for _, r in decision.rejections]
        sent = [output for p in fresh for output in outputs.get(p, ())]
        if self.changelog and evicted:
            # Not in the outbox: one lost with a crash costs an id record a rebuild drops.
            for p, key in evicted_records(decision.writes, evicted, where):
                log.records.setdefault(p, []).append((key, None))
        return sent, log.records, {p: 1 for p in kept}

    def _route(self, fresh: Mapping[int, Sequence[InRecord]], records: Sequence[InRecord],
               decision: Decision, home: Mapping[bytes | None, int]) -> dict[int, list[OutRecord]]:
        """Each output under the input partition whose outbox keeps it: an event under its
        message's partition (the record key is the message id), a rejection under its record's."""
        partitions = list(fresh)
        outputs: dict[int, list[OutRecord]] = {}
        for key, value in decision.events:
            # A record keyed otherwise than by its message id: any partition of the round will do.
            partition = home.get(key, partitions[0])
            outputs.setdefault(partition, []).append(OutRecord(EVENT, key, value))
        if decision.rejections:
            starts = list(accumulate((len(new) for new in fresh.values()), initial=0))
            for index, rejection in decision.rejections:
                partition = partitions[bisect_right(starts, index) - 1]
                output = self._rejection(rejection, partition, records[index].offset)
                outputs.setdefault(partition, []).append(output)
        return outputs

    def _timed(self, step: str, started: float) -> None:
        times = self.stats.redis_seconds
        times[step] = times.get(step, 0.0) + time.perf_counter() - started

    @staticmethod
    def _rejection(rejection: Rejection, partition: int, offset: int) -> OutRecord:
        # The pipeline says where the record is, so even a too_large one can be found.
        located = {**rejection, "partition": partition, "offset": offset}
        message_id = located.get("message_id")
        key = message_id.encode() if isinstance(message_id, str) else b""
        return OutRecord(REJECTION, key, dumps(located))


__all__ = ["EVENT", "REJECTION", "Assignment", "Fenced", "InRecord", "OutRecord", "RoundProcessor",
           "RoundStats", "Sink", "pack_outbox", "unpack_outbox"]
