"""One scenario's input topic and the systems that read it, on the local stack.

A `Session` makes fresh topics and starts each system as a subprocess (the msgstate worker, the
bare pipeline, a peer), each with its own output topic and Redis keys. Then:

1. drains: the systems are suspended (SIGSTOP) while `responses` records are published, so the
   backlog is in the log before any system reads it; then each system in turn is resumed and
   drains it. responses/s from the resume to the last expected event's broker append time. The
   systems of one session read the same records from the same topic, one after the other, and
   take turns going first from one repeat to the next. CPU seconds of the system, Redis, the
   broker and the harness are read at the resume and at the end (psutil), per process.
2. latency: one system alone publishes at a fixed offered load for `duration` seconds;
   produce→event latency of every event: its broker append time minus its response's (one
   clock), and its p99 from the publisher's produce call as well.

Expected events come from the engine over the same records (what `msgstate replay` gives); the
bare pipeline gives one event per record.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msgstate.bench import kafka_io
from msgstate.bench.baselines import bare_consumer_rate
from msgstate.bench.procs import Measured, cpu_of, stack_pids
from msgstate.bench.shards import ShardLoad, cpu_by_node, nodes, release
from msgstate.bench.spread import Spread
from msgstate.schemas.exceptions import MsgstateError
from msgstate.streams.engine.replay import Replayer
from msgstate.workers.cli.publish import record_key
from msgstate.workers.config import Settings, Topics
from msgstate.workers.tools.workload import responses

# The workload: Zipf-popular messages (the top one takes ~4 % of the traffic), many authors.
MESSAGES = 5_000
IDENTITIES = 50_000
EXPONENT = 0.8
BAD_SHARE = 0.01
SCENARIOS = {"zipf": 0.0, "hot": 0.10}  # scenario -> share of all traffic on one hot message
START = 200  # records that show a system started: it answered them all
SATURATED = 0.9  # an offered load above this share of a system's own throughput is not run
POLL = 0.05  # seconds between two looks at an output topic while waiting
# A system suspended longer than this may have lost its consumer-group session (10 s in
# aiokafka), and then its drain includes a rebalance: the drain says so.
SUSPENDED_MAX = 8.0
PROCESSES = ("system", "redis", "broker", "harness")  # whose CPU time each drain reads

Say = Callable[[str], None]


class BenchError(MsgstateError):
    """A system under test failed or did not finish in time."""


@dataclass
class Drain:
    """One measured drain of a backlog by one system."""

    rate: float | None = None  # responses/s, resume → last event
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds during the drain
    events: int = 0  # distinct events produced (the worker's rejections not counted)
    event_bytes: int = 0
    note: str = ""


@dataclass
class Sample:
    """One latency phase at one offered load."""

    p50: float | None = None  # ms
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    events: int = 0
    p99_from_call: float | None = None  # ms, from the publisher's produce call
    note: str = ""


@dataclass
class Latency:
    offered: float  # responses/s
    samples: list[Sample] = field(default_factory=list)
    note: str = ""  # why it was not run

    def spread(self, what: str = "p99") -> Spread | None:
        return Spread.of(getattr(s, what) for s in self.samples)


@dataclass
class Run:
    """One system (at one worker count, on one scenario): its drains and latencies."""

    system: str
    scenario: str
    workers: int = 1
    responses: int = 0  # per drain
    drains: list[Drain] = field(default_factory=list)
    warm_up: list[float | None] = field(default_factory=list)  # rates of the unmeasured drains
    warm_up_seconds: float = 0.0
    latencies: list[Latency] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    top_message_share: float = 0.0
    busiest_partition_share: float = 0.0
    redis: dict[str, float] = field(default_factory=dict)
    store: str = ""  # "" for the stack's Redis; in the comparison, "redis" or "cluster"
    shards: list[ShardLoad] = field(default_factory=list)  # its keys on each master, at the end
    note: str = ""

    @property
    def throughput(self) -> Spread | None:
        return Spread.of(d.rate for d in self.drains)

    def rates(self) -> list[float | None]:
        return [d.rate for d in self.drains]

    def cpu_us(self, process: str) -> Spread | None:
        """CPU µs per response of one process over the drains."""
        return Spread.of(d.cpu[process] / self.responses * 1e6 if process in d.cpu and d.rate else None
                         for d in self.drains)


@dataclass
class Plan:
    scenarios: list[str]
    workers: list[int]
    peers: list[str]
    loads: list[float]  # offered responses/s
    responses: int
    duration: float
    timeout: float
    repeats: int = 3
    warm_up: int = 2  # unmeasured drains per system before the first measured one
    peer_responses: int = 3_000
    cluster: str = ""  # a node of the Redis Cluster to compare the stack's Redis with


class Source:
    """The scenario's records, the same for every system; counts the events each batch yields."""

    def __init__(self, scenario: str, seed: int = 17) -> None:
        self._records = responses(10**9, messages=MESSAGES, identities=IDENTITIES, bad_share=BAD_SHARE,
                                  seed=seed, exponent=EXPONENT, hot_share=SCENARIOS[scenario])
        self._events = 0
        self.replayer = Replayer(on_event=self._count)

    def _count(self, _event: dict[str, Any]) -> None:
        self._events += 1

    def take(self, count: int) -> tuple[list[bytes], int]:
        """The next `count` records and how many events they yield."""
        records = list(itertools.islice(self._records, count))
        before = self._events
        self.replayer.feed(records)
        return records, self._events - before


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class Batch:
    """Records laid in the input topic: what each system should make of them."""

    records: list[bytes]
    events: int  # the engine's events
    sent: kafka_io.Sent
    start: dict[int, int]  # partition -> the input topic's offsets before them
    end: dict[int, int]


class System:
    """One system reading the session's input topic: its processes, its output topic."""

    def __init__(self, session: Session, name: str, workers: int, tag: str, run: Run | None = None,
                 store: str = "") -> None:
        base = session.stores[store]
        self.name = name
        self.store = store
        # Its own Redis keys and group. The worker or peer writes the session's output topics;
        # the bare pipeline, beside it on the same input, topics of its own.
        self.settings = base.with_(key_prefix=tag, app_id=tag)
        self.nodes = nodes(self.settings)
        args: tuple[str, ...] = ()
        if name == "bare_pipeline":
            self.settings = self.settings.with_(topics=Topics(tag))
            kafka_io.create_topics(self.settings)
            args = (base.topics.responses,)
        self.topic = self.settings.topics.summary_changes
        self.procs = [Measured(self.settings, name, session.logs / f"{tag}-{name}-{n}.log", *args)
                      for n in range(workers)]
        self.run = run or Run(name, session.scenario, workers, store=store)
        self.counter = kafka_io.Counter(self.settings, self.topic)
        self.suspended_at: float | None = None

    def expected(self, batch: Batch) -> int:
        """The events of the batch that name one of its responses."""
        return batch.sent.named if self.name == "bare_pipeline" else batch.events

    def check(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise BenchError(f"{self.name} exited with {proc.proc.returncode} (log: {proc.log})")

    def suspend(self) -> None:
        for proc in self.procs:
            proc.suspend()
        self.suspended_at = time.monotonic()

    def resume(self) -> float:
        """Resume; returns the seconds it was suspended."""
        for proc in self.procs:
            proc.resume()
        held, self.suspended_at = (0.0 if self.suspended_at is None
                                   else time.monotonic() - self.suspended_at), None
        return held

    def cpu(self) -> float:
        return sum(p.cpu() for p in self.procs)

    def close(self) -> None:
        self.counter.close()
        for proc in self.procs:
            proc.stop()
            self.run.peak_rss_mb = max(self.run.peak_rss_mb, proc.peak_rss / 2**20)


class Session:
    """One scenario's input topic, its records, and the systems that read it."""

    def __init__(self, base: Settings, scenario: str, logs: Path, timeout: float, say: Say,
                 cluster: str = "") -> None:
        self.tag = f"bench-{uuid.uuid4().hex[:8]}"
        self.settings = base.with_(topics=Topics(self.tag), key_prefix=self.tag, app_id=self.tag)
        # The Redis a system may write to: the stack's, or, compared with it, a single Redis
        # (the same) and a cluster.
        self.stores = {"": self.settings, "redis": self.settings}
        if cluster:
            self.stores["cluster"] = self.settings.with_(redis=cluster, redis_cluster=True)
        self.scenario = scenario
        self.logs = logs
        self.timeout = timeout
        self.say = say
        self.source = Source(scenario)
        self.systems: list[System] = []
        self.stack = stack_pids(base)
        self.harness = os.getpid()
        kafka_io.create_topics(self.settings)
        self.input = kafka_io.Counter(self.settings, self.settings.topics.responses)

    def add(self, name: str, workers: int = 1, run: Run | None = None, store: str = "") -> System:
        """Start a system on the session's input, on the Redis `store` names; its figures go
        to `run` when given."""
        system = System(self, name, workers, f"{self.tag}-{len(self.systems)}", run, store)
        self.systems.append(system)
        return system

    def remove(self, system: System) -> None:
        system.close()
        self.systems.remove(system)

    def lay(self, count: int, rate: float | None = None, suspend: bool = True) -> Batch:
        """Publish the next `count` records (at `rate`, or as fast as possible), every system
        suspended first unless told otherwise."""
        if suspend:
            for system in self.systems:
                system.suspend()
        start = self.input.ends()
        records, events = self.source.take(count)
        sent = kafka_io.publish(self.settings, records, rate)
        end = {p: start.get(p, 0) + n for p, n in sent.per_partition.items()}
        return Batch(records, events, sent, start, {**start, **end})

    def start(self) -> None:
        """Wait until every system answered a first batch (their start-up is not measured)."""
        batch = self.lay(START, suspend=False)
        for system in self.systems:
            found, _ = self._await(system, batch, {}, max(self.timeout, 120))
            if found < system.expected(batch):
                raise BenchError(f"{system.name} did not start in time:\n{system.procs[0].output()}")

    def _cpu(self, system: System) -> dict[str, float]:
        """CPU seconds so far of the system, the broker, the harness, and its Redis: "redis"
        (its masters, for a cluster) and, on a cluster, each master and replica by port."""
        return {"system": system.cpu(), **cpu_by_node(system.nodes, cpu_of),
                "broker": cpu_of(self.stack["broker"]), "harness": cpu_of(self.harness)}

    def _await(self, system: System, batch: Batch, since: dict[int, int], timeout: float,
               cpu: dict[str, float] | None = None, sizes: list[int] | None = None
               ) -> tuple[int, list[tuple[tuple[str, str], int]]]:
        """The batch's events in the system's output (from the offsets `since`), once all came
        or at the deadline; `cpu` is set to the CPU times read when they all had come, `sizes`
        to the sizes of the events."""
        expected = system.expected(batch)
        deadline = time.monotonic() + timeout
        stamps = batch.sent.stamps

        def read() -> list[tuple[tuple[str, str], int]]:
            if sizes is not None:
                sizes.clear()
            return [e for e in kafka_io.events(system.settings, since, sizes).values() if e[0] in stamps]

        while time.monotonic() < deadline:
            system.check()
            ends = system.counter.ends()
            if sum(ends.get(p, 0) - since.get(p, 0) for p in ends) >= expected:
                if cpu is not None:
                    cpu.update(self._cpu(system))
                found = read()
                if len(found) >= expected:
                    return len(found), found
            time.sleep(POLL)
        found = read()
        return len(found), found

    def drain(self, system: System, batch: Batch) -> Drain:
        """Resume one suspended system and time its drain of the batch."""
        since = system.counter.ends()
        before = self._cpu(system)
        after: dict[str, float] = {}
        sizes: list[int] = []
        began = time.time()
        held = system.resume()
        count, found = self._await(system, batch, since, 2 * self.timeout, after, sizes)
        expected = system.expected(batch)
        drain = Drain()
        if held > SUSPENDED_MAX:
            drain.note = f"suspended {held:.0f} s: may include a rebalance"
        if not found:
            drain.note = "no event in time"
            return drain
        drain.seconds = max(ts for _, ts in found) / 1000 - began
        done = count / expected
        drain.rate = len(batch.records) * done / drain.seconds
        after = after or self._cpu(system)  # not all came: the CPU until the deadline
        drain.cpu = {name: after[name] - before[name] for name in after}
        drain.events, drain.event_bytes = len(sizes), sum(sizes)
        if done < 1:
            drain.note = f"only {done:.0%} of the events within {2 * self.timeout:.0f} s"
        run = system.run
        run.responses = len(batch.records)
        tops = Counter(map(record_key, batch.records))
        run.top_message_share = tops.most_common(1)[0][1] / len(batch.records)
        run.busiest_partition_share = max(batch.sent.per_partition.values()) / len(batch.records)
        return drain

    def bare_consumer(self, batch: Batch) -> Drain:
        """The bare consumer (in this process) over the batch's records, already in the log."""
        before = {"broker": cpu_of(self.stack["broker"]), "harness": cpu_of(self.harness)}
        rate = bare_consumer_rate(self.settings, self.settings.topics.responses, batch.start, batch.end)
        cpu = {"broker": cpu_of(self.stack["broker"]) - before["broker"],
               "harness": cpu_of(self.harness) - before["harness"]}
        return Drain(rate, len(batch.records) / rate, cpu)

    def latency(self, system: System, rate: float, duration: float) -> Sample:
        """Publish at `rate` for `duration` seconds to the one running system; its latencies."""
        since = system.counter.ends()
        batch = self.lay(max(1, int(rate * duration)), rate, suspend=False)
        count, found = self._await(system, batch, since, self.timeout)
        # From the response's append to its event's: both broker clock, and the publisher's own
        # batching (linger) is the backend's, not the system's. From the produce call too.
        sent = batch.sent
        values = [float(ts - sent.appended.get(key, sent.stamps[key])) for key, ts in found]
        if not values:
            return Sample(note="no event in time")
        from_call = [float(ts - sent.stamps[key]) for key, ts in found]
        expected = system.expected(batch)
        note = "" if count >= expected else f"only {count / expected:.0%} of the events"
        return Sample(percentile(values, 50), percentile(values, 95), percentile(values, 99),
                      max(values), len(values), percentile(from_call, 99), note)

    def redis_memory(self, system: System) -> None:
        """Bytes per live value of the state keys, and per remembered response id."""
        client = self.settings.redis_client()
        sizes: Counter[str] = Counter()
        keys = list(client.scan_iter(match=f"{system.settings.key_prefix}:*", count=5000))
        for at in range(0, len(keys), 1000):
            pipe = client.pipeline(transaction=False)
            chunk = keys[at:at + 1000]
            for key in chunk:
                pipe.memory_usage(key, samples=0)
            for key, size in zip(chunk, pipe.execute(), strict=True):
                kind = key.rsplit(b"}:", 1)[-1].split(b":")[0].decode()
                sizes[kind] += int(size or 0)
        seen = sum(client.llen(k) for k in keys if k.endswith(b":ids"))
        client.close()
        live = self.source.replayer.store.live_values()
        state = sizes["meta"] + sizes["vals"] + sizes["tally"]
        system.run.redis = {"live_values": live, "state_bytes": state,
                            "bytes_per_live_value": state / max(live, 1),
                            "dedupe_ids": seen, "bytes_per_dedupe_id": sizes["ids"] / max(seen, 1)}

    def release(self, system: System) -> None:
        """What the system's keys hold on each master of its Redis, found by deleting them."""
        run = system.run
        run.shards = release(system.settings, system.nodes, system.settings.key_prefix)
        live = self.source.replayer.store.live_values()
        held = sum(shard.used_memory for shard in run.shards)
        run.redis.update({"live_values": live, "used_memory": held,
                          "used_memory_per_live_value": held / max(live, 1)})

    def close(self) -> None:
        """Stop every system, then drop the session's topics and Redis keys."""
        for system in list(self.systems):
            self.remove(system)
        self.input.close()
        kafka_io.delete_topics(self.settings, self.tag)
        for store in ({"", "cluster"} & self.stores.keys()):
            client = self.stores[store].redis_client()
            keys = list(client.scan_iter(match=f"{self.tag}*", count=5000))
            for at in range(0, len(keys), 1000):  # a cluster client splits them by slot
                client.delete(*keys[at:at + 1000])
            client.close()
