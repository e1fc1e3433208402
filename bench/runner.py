"""One benchmark run: every system on the same workload, on the local stack, in one go.

For each system (the msgstate worker, each peer) a run makes fresh topics, starts the system
as a subprocess, warms it up, then:
1. throughput: publishes `responses` records as fast as possible and waits for every expected
   summary-change event; responses/s from the first produce to the last event (broker time);
2. latency: at each offered load, publishes for `duration` seconds at that rate; produce→event
   latency of every event: its broker append time minus its response's (one clock), and its
   p99 from the publisher's produce call as well.
Expected events come from the engine over the same records (what `msgstate replay` gives).
"""

from __future__ import annotations

import itertools
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msgstate.bench import kafka_io
from msgstate.bench.procs import Measured
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
WARM_UP = 200
SATURATED = 0.9  # an offered load above this share of a system's own throughput is not run

Say = Callable[[str], None]


class BenchError(MsgstateError):
    """A system under test failed or did not finish in time."""


@dataclass
class Latency:
    offered: float  # responses/s
    p50: float | None = None  # ms
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    events: int = 0
    note: str = ""
    p99_from_call: float | None = None  # ms, from the publisher's produce call


@dataclass
class Run:
    system: str
    scenario: str
    workers: int
    responses: int = 0
    throughput: float | None = None  # responses/s
    cpu_per_1k: float | None = None  # CPU seconds of the system per 1,000 responses
    cpu_busy: float | None = None  # CPU seconds per wall second during the throughput phase
    peak_rss_mb: float = 0.0
    latencies: list[Latency] = field(default_factory=list)
    top_message_share: float = 0.0
    busiest_partition_share: float = 0.0
    redis: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass
class Plan:
    scenarios: list[str]
    workers: list[int]
    peers: list[str]
    loads: list[float]  # fractions of the worker's throughput
    responses: int
    duration: float
    timeout: float


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


def _percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class SystemRun:
    """One system, on its own topics and keys, for the phases of one run."""

    def __init__(self, base: Settings, system: str, scenario: str, workers: int, logs: Path,
                 timeout: float, say: Say) -> None:
        tag = f"bench-{uuid.uuid4().hex[:8]}"
        self.settings = base.with_(topics=Topics(tag), key_prefix=tag, app_id=tag)
        self.system = system
        self.timeout = timeout
        self.say = say
        self.source = Source(scenario)
        self.warm = Source(scenario, seed=99)
        self.expected_total = 0
        self.backlog = False
        kafka_io.create_topics(self.settings)
        self.procs = [Measured(self.settings, system, logs / f"{tag}-{system}-{n}.log")
                      for n in range(workers)]
        self.result = Run(system, scenario, workers)

    def _check(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise BenchError(f"{self.system} exited with {proc.proc.returncode} (log: {proc.log})")

    def _await(self, expected: int, stamps: dict[tuple[str, str], int], timeout: float
               ) -> list[tuple[tuple[str, str], int]]:
        """The events of this phase's responses, once all `expected` arrived or at the deadline."""
        deadline = time.monotonic() + timeout
        counter = kafka_io.Counter(self.settings, self.settings.topics.summary_changes)
        try:
            while time.monotonic() < deadline:
                self._check()
                if counter.total() >= self.expected_total:
                    found = [e for e in kafka_io.events(self.settings).values() if e[0] in stamps]
                    if len(found) >= expected:
                        return found
                time.sleep(0.25)
        finally:
            counter.close()
        return [e for e in kafka_io.events(self.settings).values() if e[0] in stamps]

    def warm_up(self) -> None:
        records, expected = self.warm.take(WARM_UP)
        self.expected_total += expected
        sent = kafka_io.publish(self.settings, records)
        found = self._await(expected, sent.stamps, max(self.timeout, 120))
        if len(found) < expected:
            raise BenchError(f"{self.system} did not start in time:\n{self.procs[0].output()}")

    def throughput(self, count: int) -> None:
        records, expected = self.source.take(count)
        self.expected_total += expected
        cpu = sum(p.cpu() for p in self.procs)
        sent = kafka_io.publish(self.settings, records)
        # Twice the time-out: a slow system's backlog must drain before the latency runs.
        found = self._await(expected, sent.stamps, 2 * self.timeout)
        used = sum(p.cpu() for p in self.procs) - cpu
        run = self.result
        run.responses = count
        tops = Counter(map(record_key, records))
        run.top_message_share = tops.most_common(1)[0][1] / count
        run.busiest_partition_share = max(sent.per_partition.values()) / count
        self.backlog = len(found) < expected
        if not found:
            run.note = "no event in time"
            return
        seconds = (max(ts for _, ts in found) - sent.first_ms) / 1000
        done = len(found) / expected
        run.throughput = count * done / seconds
        run.cpu_per_1k = used / (count * done) * 1000
        run.cpu_busy = used / seconds
        if done < 1:
            run.note = f"only {done:.0%} of the events within {2 * self.timeout:.0f} s"

    def latency(self, rate: float, duration: float) -> Latency:
        own = self.result.throughput
        if own is None or rate > SATURATED * own:
            return Latency(rate, note="over capacity")
        if self.backlog:
            return Latency(rate, note="not run: throughput backlog not drained")
        records, expected = self.source.take(max(1, int(rate * duration)))
        self.expected_total += expected
        sent = kafka_io.publish(self.settings, records, rate)
        found = self._await(expected, sent.stamps, self.timeout)
        # From the response's append to its event's: both broker clock, and the publisher's own
        # batching (linger) is the backend's, not the system's. From the produce call too.
        values = [float(ts - sent.appended.get(key, sent.stamps[key])) for key, ts in found]
        if not values:
            return Latency(rate, note="no event in time")
        from_call = [float(ts - sent.stamps[key]) for key, ts in found]
        note = "" if len(found) >= expected else f"only {len(found) / expected:.0%} of the events"
        return Latency(rate, _percentile(values, 50), _percentile(values, 95), _percentile(values, 99),
                       max(values), len(values), note, _percentile(from_call, 99))

    def redis_memory(self) -> None:
        """Bytes per live value of the state keys, and per remembered response id."""
        client = self.settings.redis_client()
        sizes: Counter[str] = Counter()
        keys = list(client.scan_iter(match=f"{self.settings.key_prefix}:*", count=5000))
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
        self.result.redis = {"live_values": live, "state_bytes": state,
                             "bytes_per_live_value": state / max(live, 1),
                             "dedupe_ids": seen, "bytes_per_dedupe_id": sizes["ids"] / max(seen, 1)}

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()
            self.result.peak_rss_mb = max(self.result.peak_rss_mb, proc.peak_rss / 2**20)

    def clean(self) -> None:
        """Drop the run's topics and Redis keys."""
        kafka_io.delete_topics(self.settings, self.settings.topics.prefix, self.settings.app_id)
        client = self.settings.redis_client()
        keys = list(client.scan_iter(match=f"{self.settings.key_prefix}:*", count=5000))
        for at in range(0, len(keys), 1000):
            client.delete(*keys[at:at + 1000])
        client.close()


def run_system(base: Settings, system: str, scenario: str, workers: int, plan: Plan,
               rates: list[float], logs: Path, say: Say,
               after: Callable[[SystemRun], None] | None = None, loads: list[float] | None = None
               ) -> Run:
    """Warm-up, throughput, then latency at each rate; `after` runs before the clean-up.

    Without rates, `loads` gives them as fractions of the system's own throughput.
    """
    label = f"{system} ×{workers}" if workers > 1 else system
    say(f"{label}, {scenario}: starting")
    run = SystemRun(base, system, scenario, workers, logs, plan.timeout, say)
    try:
        run.warm_up()
        say(f"{label}, {scenario}: throughput, {plan.responses:,} responses")
        run.throughput(plan.responses)
        if not rates and loads and run.result.throughput:
            rates = [float(max(10, round(f * run.result.throughput, -1))) for f in loads]
        for rate in rates:
            say(f"{label}, {scenario}: latency at {rate:,.0f} responses/s")
            run.result.latencies.append(run.latency(rate, plan.duration))
        if after is not None:
            after(run)
    except BenchError as exc:
        run.result.note = str(exc).splitlines()[0]
    finally:
        run.close()
        run.clean()
    return run.result


def stages(plan: Plan) -> int:
    """How many steps a plan has, for the progress bar."""
    extra = 1 + len(plan.peers) + len([n for n in plan.workers if n != 1])
    return len(plan.scenarios) + (extra if "zipf" in plan.scenarios else 0)
