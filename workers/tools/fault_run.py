"""Fault scenarios on the real pipeline: workers killed, broker and Redis restarted, scaling.

A run publishes a workload at a steady rate while it injects the scenario's faults between
chunks, waits until every partition's fence reached its last published offset, then checks
Redis and the output topics against a replay of the responses topic (workers/fault_check.py).
The stack must be one this process may stop and start (`msgstate stack`'s own).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from msgstate.schemas.exceptions import MsgstateError
from msgstate.schemas.wording import count
from msgstate.streams.storage.client import SyncRedis
from msgstate.workers.cli.publish import record_key
from msgstate.workers.config import Settings, environment
from msgstate.workers.tools import stack
from msgstate.workers.tools.fault_check import Differences, compare, json_values, read_topic, replay_topic
from msgstate.workers.tools.hostile import blend, hostile_records
from msgstate.workers.tools.workload import responses
from msgstate.workers.topics import ensure_topics

SCENARIOS: dict[str, str] = {
    "sigkill": "SIGKILL a random worker four times during the run, restarting it each time",
    "broker": "stop the Kafka broker mid-run, keep publishing, start it again",
    "redis": "stop Redis mid-run (AOF on), keep publishing, start it again",
    "redis-cut": "stop Redis, SIGKILL the worker while it retries, start Redis and the worker",
    "scale": "scale from one worker to three and back to one during the run",
    "fuzz": "one record in five hostile (random bytes, deep nesting, huge strings, bad UTF-8, ...)",
}
CHUNKS = 20


class FaultRunError(MsgstateError):
    """A fault run could not finish (the pipeline never caught up)."""


@dataclass(slots=True)
class Figures:
    scenario: str
    published: int
    acknowledged: int
    in_topic: int
    faults: int
    worker_crashes: int
    parts: int
    parts_differing: int
    events_expected: int
    events_missing: int
    events_unexpected: int
    events_conflicting: int
    rejections_expected: int
    rejections_missing: int
    rejections_unexpected: int
    acknowledged_not_in_topic: int
    seconds: float

    @property
    def lost(self) -> int:
        """Records whose effect or output is missing."""
        return self.acknowledged_not_in_topic + self.events_missing + self.rejections_missing

    @property
    def applied_twice(self) -> int:
        """Outputs that only a second application of a record produces."""
        return self.events_unexpected + self.events_conflicting + self.rejections_unexpected

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.applied_twice == 0 and self.parts_differing == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lost": self.lost, "applied_twice": self.applied_twice,
                "clean": self.clean}


class Fleet:
    """State worker subprocesses; each logs to a file in `logs`."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.crashes = 0
        self._expected_exits: set[int] = set()
        self._count = 0

    def start(self) -> None:
        self._count += 1
        log = (self.logs / f"worker-{self._count}.log").open("wb")
        env = {**os.environ, **environment(self.settings)}
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "msgstate.workers", "worker", "-l", "warn"], env=env, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))
        log.close()

    def running(self) -> list[subprocess.Popen[bytes]]:
        """Live workers; a worker that exited by itself counts as a crash and is replaced."""
        for proc in list(self.procs):
            if proc.poll() is not None and proc.pid not in self._expected_exits:
                self.crashes += 1
                self._expected_exits.add(proc.pid)
                self.procs.remove(proc)
                self.start()
        return [p for p in self.procs if p.poll() is None]

    def kill(self, rng: random.Random) -> None:
        self._end(rng.choice(self.running()), signal.SIGKILL)

    def stop_one(self) -> None:
        self._end(self.running()[-1], signal.SIGTERM)

    def close(self) -> None:
        for proc in list(self.procs):
            self._end(proc, signal.SIGTERM)

    def _end(self, proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        self._expected_exits.add(proc.pid)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        self.procs.remove(proc)


Action = Callable[[], None]


def plan(scenario: str, fleet: Fleet, settings: Settings, rng: random.Random
         ) -> tuple[int, dict[int, list[Action]]]:
    """(workers at the start, actions to run after chunk i)."""
    def kill_and_restart() -> None:
        fleet.kill(rng)
        fleet.start()

    def stop(which: str) -> Action:
        def action() -> None:
            stack.stop_service(settings, which)
        action.__name__ = f"stop {which}"
        return action

    def start(which: str) -> Action:
        def action() -> None:
            stack.start_service(settings, which)
        action.__name__ = f"start {which}"
        return action

    if scenario == "sigkill":
        return 2, {4: [kill_and_restart], 8: [kill_and_restart], 12: [kill_and_restart],
                   16: [kill_and_restart]}
    if scenario == "broker":
        return 1, {6: [stop("kafka")], 9: [start("kafka")]}
    if scenario == "redis":
        return 1, {6: [stop("redis")], 9: [start("redis")]}
    if scenario == "redis-cut":
        return 1, {6: [stop("redis")], 8: [lambda: fleet.kill(rng)], 10: [start("redis"), fleet.start]}
    if scenario == "fuzz":
        return 1, {}
    if scenario == "scale":
        return 1, {5: [fleet.start, fleet.start], 12: [fleet.stop_one], 15: [fleet.stop_one]}
    raise FaultRunError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")


def run(settings: Settings, scenario: str, records: int, rate: float, logs: Path, seed: int = 1,
        progress: Callable[[str], None] = lambda _line: None, timeout: float = 240.0,
        values: list[bytes] | None = None) -> Figures:
    """Run one scenario on `settings` (topics and keys of its own) and return its figures."""
    rng = random.Random(seed)
    started = time.monotonic()
    hostile = records // 4 if scenario == "fuzz" and values is None else 0
    if values is None:
        values = workload(records, seed, hostile)
    ensure_topics(settings)
    logs.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(settings, logs)
    initial, actions = plan(scenario, fleet, settings, rng)
    faults = sum(len(a) for a in actions.values()) + hostile
    producer = KafkaProducer(**settings.kafka_client(), acks="all",
                             enable_idempotence=True, linger_ms=5, delivery_timeout_ms=300_000,
                             request_timeout_ms=15_000, max_block_ms=120_000)
    client = settings.redis_client()
    futures: list[tuple[bytes, FutureRecordMetadata]] = []
    try:
        for _ in range(initial):
            fleet.start()
        size = -(-len(values) // CHUNKS)
        for chunk in range(CHUNKS):
            began = time.monotonic()
            for value in values[chunk * size:(chunk + 1) * size]:
                futures.append((value, producer.send(settings.topics.responses,
                                                     key=record_key(value), value=value)))
            fleet.running()
            if chunk == 0:
                # Faults only mean something once the workers are consuming: wait for chunk 0.
                producer.flush(timeout=60)
                _await_fences(settings, client, fleet, _last_offsets(futures)[1], timeout)
                progress("workers are consuming; publishing the rest with faults")
            for action in actions.get(chunk, []):
                progress(f"after chunk {chunk + 1}/{CHUNKS}: {getattr(action, '__name__', 'fault')}")
                action()
            time.sleep(max(0.0, size / rate - (time.monotonic() - began)))
        producer.flush(timeout=300)
        acked, last = _last_offsets(futures)
        progress(f"{len(acked):,} of {count(len(values), 'record')} acknowledged; waiting for the workers")
        _await_fences(settings, client, fleet, last, timeout)
        topic = read_topic(settings, settings.topics.responses)
        expected = replay_topic(topic)
        diff = _await_outputs(settings, client, expected, timeout=60)
        in_topic = {(r.partition, r.offset): r.value for r in topic}
        missing = sum(1 for where, value in acked.items() if in_topic.get(where) != value)
        return Figures(scenario=scenario, published=len(values), acknowledged=len(acked),
                       in_topic=len(topic), faults=faults, worker_crashes=fleet.crashes,
                       acknowledged_not_in_topic=missing, seconds=time.monotonic() - started,
                       **asdict(diff))
    finally:
        fleet.close()
        producer.close(timeout=10)
        client.close()


def workload(records: int, seed: int, hostile: int = 0) -> list[bytes]:
    """The benchmark's chat-like workload (with its own share of bad records), plus `hostile`
    records from workers/hostile.py blended in."""
    valid = list(responses(records, messages=max(5, records // 40), identities=200,
                           bad_share=0.05, seed=seed))
    return blend(valid, hostile_records(hostile, seed), seed) if hostile else valid


def _last_offsets(futures: list[tuple[bytes, FutureRecordMetadata]]
                  ) -> tuple[dict[tuple[int, int], bytes], dict[int, int]]:
    """The acknowledged records by (partition, offset), and the last offset per partition."""
    acked: dict[tuple[int, int], bytes] = {}
    last: dict[int, int] = {}
    for value, future in futures:
        try:
            meta = future.get(timeout=1)
        except Exception:  # not acknowledged: not counted as published
            continue
        acked[(meta.partition, meta.offset)] = value
        last[meta.partition] = max(last.get(meta.partition, -1), meta.offset)
    return acked, last


def _await_fences(settings: Settings, client: SyncRedis, fleet: Fleet, last: dict[int, int],
                  timeout: float) -> None:
    keys = settings.keys
    deadline = time.monotonic() + timeout
    while True:
        fleet.running()
        applied = {p: int(client.hget(keys.fence(p), "offset") or -1)
                   for p in last}
        if all(applied[p] >= o for p, o in last.items()):
            return
        if time.monotonic() > deadline:
            raise FaultRunError(f"the workers did not catch up within {timeout:.0f} s: applied "
                                f"{applied}, published up to {last}; worker logs in {fleet.logs}")
        time.sleep(0.2)


def _await_outputs(settings: Settings, client: SyncRedis, expected: Any, timeout: float
                   ) -> Differences:
    """Compare until nothing is missing, or the time is up (then the figures say what is)."""
    deadline = time.monotonic() + timeout
    while True:
        events = json_values(read_topic(settings, settings.topics.summary_changes))
        rejections = json_values(read_topic(settings, settings.topics.rejections))
        diff = compare(settings, client, expected, events, rejections)
        if (diff.events_missing == 0 and diff.rejections_missing == 0) or time.monotonic() > deadline:
            return diff
        time.sleep(0.5)
