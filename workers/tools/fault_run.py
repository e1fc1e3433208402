"""Fault scenarios on the real pipeline: workers killed, broker and Redis restarted, scaling,
a Redis Cluster master or the leading Kafka broker SIGKILLed.

A run publishes a workload at a steady rate while it injects the scenario's faults between
chunks, waits until every partition's fence reached its last published offset, then checks
Redis and the output topics against a replay of the responses topic (workers/fault_check.py).
The stack must be one this process may stop and start (`msgstate stack`'s own); the failover
scenarios need a cluster stack (STACKS) and say so in one line when given another. Each of them
records evidence that its fault was met (the slot's new master, the partition's new leader,
the workers' retries); a run whose fault was not met does not pass.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
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
    "redis-failover": "SIGKILL the Redis Cluster master of the busiest partition's slot mid-run; "
                      "its replica takes over; start the old one again (it rejoins as a replica)",
    "kafka-leader": "SIGKILL the Kafka broker leading the busiest partition mid-run (of three); "
                    "start it again later",
    "cluster-chaos": "both failovers, two worker SIGKILLs and a scale from one worker to three and "
                     "back, in one run",
    "soak": "many short runs (--runs), each SIGKILLing one of two workers at three random moments; "
            "totals over the runs",
}
# What each scenario runs on: (Redis Cluster masters, 0 for one Redis; Kafka brokers).
STACKS: dict[str, tuple[int, int]] = {
    "redis-failover": (3, 1),
    "kafka-leader": (0, 3),
    "cluster-chaos": (3, 3),
}
CHUNKS = 20
SOAK_KILLS = 3  # per run of the soak
# How long a failover may take to show: a Redis replica's promotion takes about the cluster's
# node timeout (2 s here) plus an election; a Kafka leader moves once the controller fenced the
# dead broker (broker.session.timeout.ms, 9 s).
FAILOVER_TIMEOUT = 90.0
# Worker log lines that show a worker met a fault: a round taken again (Redis; redis-py's cluster
# client retries a command itself first, up to 10 times 0.5 s apart at most, so a short
# failover often shows no such line), or its Kafka clients finding a broker gone.
RETRY_LINES = {
    "round_retries": "round step failed",
    "store_behind": "the store is behind this worker",
    "read_again": "are not applied in Redis; reading them again",
    "broker_unreachable": "Unable connect to node",
    "fetch_failed": "Failed fetch messages from",
    "produce_retried": "Got error produce response",
    # A worker taking a partition over produced what a killed holder left in its outbox.
    "outbox_taken_over": "left by an earlier holder of partition",
}


def stack_for(scenario: str) -> tuple[int, int]:
    """(Redis Cluster masters or 0, Kafka brokers) of the stack a scenario runs on."""
    return STACKS.get(scenario, (0, 1))


class FaultRunError(MsgstateError):
    """A fault run could not finish (the pipeline never caught up)."""


@dataclass(slots=True)
class Figures:
    scenario: str
    published: int
    acknowledged: int
    in_topic: int
    faults: int
    worker_kills: int
    worker_crashes: int
    parts: int
    parts_differing: int
    events_expected: int
    events_missing: int
    events_unexpected: int
    events_conflicting: int
    events_repeated: int
    rejections_expected: int
    rejections_missing: int
    rejections_unexpected: int
    rejections_repeated: int
    acknowledged_not_in_topic: int
    seconds: float
    # What shows the fault was met (failover scenarios): see `evidence_lines`.
    evidence: dict[str, Any] = field(default_factory=dict)
    fault_met: bool = True

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

    @property
    def passed(self) -> bool:
        """Clean, and the fault was really met."""
        return self.clean and self.fault_met

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lost": self.lost, "applied_twice": self.applied_twice,
                "clean": self.clean, "passed": self.passed}


class Fleet:
    """State worker subprocesses; each logs to a file in `logs`."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.crashes = 0
        self.kills = 0  # workers that died of a SIGKILL sent while they ran
        self.most = 0  # workers running at once, at most
        self._expected_exits: set[int] = set()
        self._count = 0

    def start(self) -> None:
        self._count += 1
        log = (self.logs / f"worker-{self._count}.log").open("wb")
        env = {**os.environ, **environment(self.settings)}
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "msgstate.workers", "worker", "-l", "info"], env=env, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))
        log.close()
        self.most = max(self.most, sum(1 for p in self.procs if p.poll() is None))

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
        proc = rng.choice(self.running())
        self._end(proc, signal.SIGKILL)
        if proc.returncode == -signal.SIGKILL:
            self.kills += 1

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
T = TypeVar("T")


class RedisFailover:
    """SIGKILL the Redis Cluster master serving one partition's slot; watch its replica take over
    and the partition's rounds resume there; later start the old master again, which rejoins as a
    replica of the new one."""

    def __init__(self, settings: Settings, partition: int, evidence: dict[str, Any],
                 progress: Callable[[str], None]) -> None:
        self.settings = settings
        self.partition = partition
        self.slot = settings.keys.slot_map()[partition][2]
        self.evidence = evidence
        self.progress = progress
        self.killed: tuple[int, str] | None = None
        self._watching: threading.Thread | None = None
        self._stop = threading.Event()

    def kill_master(self) -> None:
        port, node_id = _until(lambda: stack.slot_master(self.settings, self.slot),
                               f"a master serving slot {self.slot}")
        node = self._node(port)
        fence = self._fence(port)
        stack.kill_node(node)
        self.killed = (port, node_id)
        self.evidence.update(redis_partition=self.partition, redis_slot=self.slot,
                             redis_killed_master=port, redis_fence_at_kill=fence)
        self.progress(f"SIGKILLed the Redis master :{port} serving slot {self.slot} (partition "
                      f"{self.partition}, applied up to offset {fence})")
        # While the run publishes on: when another master serves the slot, and when the
        # partition's rounds are applied there again.
        self._watching = threading.Thread(target=self._watch, args=(time.monotonic(), node_id),
                                          name="failover-watch", daemon=True)
        self._watching.start()

    def _watch(self, killed_at: float, killed_id: str) -> None:
        fence_at_kill = self.evidence["redis_fence_at_kill"]
        while not self._stop.wait(0.05):
            master = stack.slot_master(self.settings, self.slot)
            if master is None or master[1] == killed_id:
                continue
            with contextlib.suppress(redis.RedisError):
                fence = self._fence(master[0])
                seconds = round(time.monotonic() - killed_at, 1)
                if "redis_new_master" not in self.evidence:
                    self.evidence.update(redis_new_master=master[0], redis_fence_at_promotion=fence,
                                         redis_promoted_after=seconds)
                if fence > fence_at_kill:
                    # The partition's rounds go on there (by then, at the latest).
                    self.evidence["redis_resumed_after"] = seconds
                    return

    def recover_master(self) -> None:
        assert self.killed is not None, "kill_master first"
        killed_port, killed_id = self.killed

        def promoted() -> tuple[int, str] | None:
            master = stack.slot_master(self.settings, self.slot)
            return master if master is not None and master[1] != killed_id else None

        port, _ = _until(promoted, f"a replica promoted for slot {self.slot}")
        self.progress(f"slot {self.slot} is served by :{port}; starting :{killed_port} again")
        nodes = stack.cluster_nodes(self.settings)
        stack.start_redis_cluster(self.settings, len(nodes) // 2)
        old = self._node(killed_port)
        self.evidence["redis_old_master_replicates"] = _until(
            lambda: stack.replica_of(old), f":{killed_port} rejoining as a replica")
        self.progress(f":{killed_port} is a replica of :{self.evidence['redis_old_master_replicates']}")

    def stop(self) -> None:
        self._stop.set()
        if self._watching is not None:
            self._watching.join(timeout=10)

    def finish(self, client: SyncRedis) -> None:
        """After the run: who serves the slot, and the partition's fence there."""
        self.stop()
        master = stack.slot_master(self.settings, self.slot)
        self.evidence["redis_master_at_end"] = master[0] if master else None
        self.evidence["redis_fence_at_end"] = int(
            client.hget(self.settings.keys.fence(self.partition), "offset") or -1)

    def _node(self, port: int) -> stack.Service:
        return next(n for n in stack.cluster_nodes(self.settings) if n.ports[0] == port)

    def _fence(self, port: int) -> int:
        """The partition's fence (its last applied offset) as one node holds it."""
        client = redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=5)
        with contextlib.closing(client):
            return int(client.hget(self.settings.keys.fence(self.partition), "offset") or -1)


class LeaderKill:
    """SIGKILL the Kafka broker leading one partition of the responses topic; later await the new
    leader and start the broker again (until it is back in sync)."""

    def __init__(self, settings: Settings, partition: int, evidence: dict[str, Any],
                 progress: Callable[[str], None]) -> None:
        self.settings = settings
        self.partition = partition
        self.evidence = evidence
        self.progress = progress
        self.killed: int | None = None

    def _state(self) -> tuple[int, list[int]] | None:
        return stack.partition_leader(self.settings.kafka, self.settings.topics.responses,
                                      self.partition)

    def kill_leader(self) -> None:
        leader, isr = _until(lambda: s if (s := self._state()) is not None and s[0] >= 0 else None,
                             f"a leader of partition {self.partition}")
        node = stack.kafka_nodes(self.settings)[leader - 1]
        end = _end_offset(self.settings, self.partition)
        stack.kill_node(node)
        self.killed = leader
        self.evidence.update(kafka_partition=self.partition, kafka_leader_before=leader,
                             kafka_isr_before=isr, kafka_killed_port=node.ports[0],
                             kafka_end_at_kill=end)
        self.progress(f"SIGKILLed Kafka broker {leader} ({node.address}), leader of partition "
                      f"{self.partition} (ISR {isr}, {end:,} records)")

    def recover_leader(self) -> None:
        assert self.killed is not None, "kill_leader first"
        killed = self.killed
        leader, isr = _until(
            lambda: s if (s := self._state()) is not None and s[0] not in (-1, killed) else None,
            f"a new leader of partition {self.partition}")
        self.evidence.update(kafka_leader_after=leader, kafka_isr_during=isr)
        self.progress(f"partition {self.partition}: leader broker {leader} (ISR {isr}); starting "
                      f"broker {killed} again")
        stack.start_kafka_cluster(self.settings, len(stack.kafka_nodes(self.settings)))
        _, isr = _until(self._state, f"partition {self.partition} described")
        self.evidence["kafka_isr_after"] = isr
        self.progress(f"broker {killed} is back; partition {self.partition} ISR {isr}")

    def finish(self, last: dict[int, int]) -> None:
        """After the run: the partition's last acknowledged offset (records appended after the
        kill went through the new leader)."""
        self.evidence["kafka_last_offset"] = last.get(self.partition, -1)


def _end_offset(settings: Settings, partition: int) -> int:
    """The end offset of one partition of the responses topic (-1 when no broker answers)."""
    consumer = KafkaConsumer(**settings.kafka_client(), enable_auto_commit=False, group_id=None,
                             request_timeout_ms=10_000)
    try:
        tp = TopicPartition(settings.topics.responses, partition)
        return int(consumer.end_offsets([tp])[tp])
    except KafkaError:
        return -1
    finally:
        consumer.close()


def _until(probe: Callable[[], T | None], what: str, timeout: float = FAILOVER_TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    while (value := probe()) is None:
        if time.monotonic() > deadline:
            raise FaultRunError(f"no sign of {what} within {timeout:.0f} s")
        time.sleep(0.2)
    return value


def plan(scenario: str, fleet: Fleet, settings: Settings, rng: random.Random, busiest: int = 0,
         evidence: dict[str, Any] | None = None, progress: Callable[[str], None] = lambda _line: None,
         failovers: list[RedisFailover | LeaderKill] | None = None
         ) -> tuple[int, dict[int, list[Action]]]:
    """(workers at the start, actions to run after chunk i). The failovers hit `busiest`, the
    partition with the most records, note what they saw in `evidence`, and are added to
    `failovers` (to `finish` once the run caught up)."""
    facts: dict[str, Any] = {} if evidence is None else evidence
    made = [] if failovers is None else failovers

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
    if scenario == "soak":
        facts["kills_planned"] = SOAK_KILLS
        # One kill at a random moment of each stretch of the run, so a restarted worker has
        # joined before the next.
        stretch = (CHUNKS - 2) // SOAK_KILLS
        return 2, {1 + i * stretch + rng.randrange(stretch): [kill_and_restart]
                   for i in range(SOAK_KILLS)}
    if scenario == "scale":
        return 1, {5: [fleet.start, fleet.start], 12: [fleet.stop_one], 15: [fleet.stop_one]}
    if scenario == "redis-failover":
        failover = RedisFailover(settings, busiest, facts, progress)
        made.append(failover)
        return 1, {6: [failover.kill_master], 12: [failover.recover_master]}
    if scenario == "kafka-leader":
        leader = LeaderKill(settings, busiest, facts, progress)
        made.append(leader)
        return 1, {6: [leader.kill_leader], 12: [leader.recover_leader]}
    if scenario == "cluster-chaos":
        failover = RedisFailover(settings, busiest, facts, progress)
        leader = LeaderKill(settings, busiest, facts, progress)
        made += [failover, leader]
        return 1, {2: [fleet.start, fleet.start], 4: [kill_and_restart], 6: [failover.kill_master],
                   8: [leader.kill_leader], 10: [failover.recover_master], 12: [kill_and_restart],
                   13: [leader.recover_leader], 15: [fleet.stop_one], 17: [fleet.stop_one]}
    raise FaultRunError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")


def check_stack(settings: Settings, scenario: str) -> None:
    """Refuse, in one line, a stack the scenario cannot run on (its fault would not be met)."""
    masters, brokers = stack_for(scenario)
    redis_nodes = stack.cluster_nodes(settings)
    if masters and not (settings.redis_cluster and len(redis_nodes) >= 2 * masters):
        raise FaultRunError(f"{scenario} needs a local Redis Cluster of {masters} masters with a "
                            f"replica each (msgstate stack up --redis-cluster {masters}); "
                            f"{settings.redis} is not one")
    if brokers > 1 and len(stack.kafka_nodes(settings)) < brokers:
        raise FaultRunError(f"{scenario} needs {brokers} local Kafka brokers (msgstate stack up "
                            f"--kafka-brokers {brokers}); {settings.kafka} is not that")
    if scenario in ("redis", "redis-cut") and (redis_nodes or settings.redis_cluster):
        raise FaultRunError(f"{scenario} stops the one Redis server of a stack; {settings.redis} is a "
                            "Redis Cluster (redis-failover is its scenario)")


def busiest_partition(settings: Settings, values: list[bytes]) -> int:
    """The partition of the responses topic that gets the most of `values`."""
    keys = settings.keys
    counts = Counter(keys.partition_of(key.decode()) for value in values
                     if (key := record_key(value)) is not None)
    return counts.most_common(1)[0][0] if counts else 0


def worker_log_counts(logs: Path) -> dict[str, int]:
    """How often the workers logged each of RETRY_LINES."""
    counts = dict.fromkeys(RETRY_LINES, 0)
    for log in sorted(logs.glob("worker-*.log")):
        text = log.read_text(errors="replace")
        for name, line in RETRY_LINES.items():
            counts[name] += text.count(line)
    return counts


def fault_met(scenario: str, evidence: dict[str, Any]) -> bool:
    """Whether the evidence shows the scenario's failovers happened mid-run (True for the other
    scenarios): another master took the slot over while the partition still had records to
    apply, and applied them; another broker took the partition's lead over while records were
    still published to it, the workers' clients found the broker gone, and it caught up again."""
    checks: list[bool] = []
    if scenario == "soak":
        checks.append(evidence.get("worker_kills", 0) >= evidence.get("kills_planned", 1))
    if scenario in ("redis-failover", "cluster-chaos"):
        killed = evidence.get("redis_killed_master")
        fence = evidence.get("redis_fence_at_kill", -1)
        checks += [killed is not None,
                   evidence.get("redis_new_master") not in (None, killed),
                   evidence.get("redis_master_at_end") == evidence.get("redis_new_master"),
                   evidence.get("redis_old_master_replicates") == evidence.get("redis_new_master"),
                   fence < evidence.get("redis_fence_at_end", -1)]
    if scenario in ("kafka-leader", "cluster-chaos"):
        before = evidence.get("kafka_leader_before")
        checks += [before is not None,
                   evidence.get("kafka_leader_after") not in (None, before),
                   before in evidence.get("kafka_isr_after", []),
                   0 <= evidence.get("kafka_end_at_kill", -1) <= evidence.get("kafka_last_offset", -1),
                   evidence.get("broker_unreachable", 0) + evidence.get("fetch_failed", 0) > 0]
    return all(checks)


def evidence_lines(figures: Figures) -> list[str]:
    """What a run saw of its faults, in words."""
    e = figures.evidence

    def g(key: str) -> Any:
        return e.get(key, "?")

    lines = []
    if "redis_killed_master" in e:
        lines += [
            f"Redis: partition {g('redis_partition')} (slot {g('redis_slot')}) applied up to offset "
            f"{g('redis_fence_at_kill')} when its master :{g('redis_killed_master')} was SIGKILLed",
            f"Redis: replica :{g('redis_new_master')} served the slot after {g('redis_promoted_after')} s "
            f"(fence {g('redis_fence_at_promotion')}); rounds applied there again after "
            f"{g('redis_resumed_after')} s",
            f"Redis: :{g('redis_killed_master')} back as a replica of :{g('redis_old_master_replicates')}; "
            f"at the end :{g('redis_master_at_end')} holds the fence at offset {g('redis_fence_at_end')}"]
    if "kafka_leader_before" in e:
        lines += [
            f"Kafka: partition {g('kafka_partition')} held {g('kafka_end_at_kill')} records when its "
            f"leader, broker {g('kafka_leader_before')} (:{g('kafka_killed_port')}, ISR "
            f"{g('kafka_isr_before')}), was SIGKILLed",
            f"Kafka: broker {g('kafka_leader_after')} led it then (ISR {g('kafka_isr_during')}), up to "
            f"offset {g('kafka_last_offset')}; broker {g('kafka_leader_before')} started again, ISR "
            f"{g('kafka_isr_after')}"]
    if "redis_killed_master" in e or any(e.get(n) for n in ("round_retries", "store_behind", "read_again")):
        lines.append(f"workers, Redis: {count(e.get('round_retries', 0), 'round step')} failed and "
                     f"retried; store behind the worker {count(e.get('store_behind', 0), 'time')}; "
                     f"{count(e.get('read_again', 0), 'partition')} read again from the store's fence")
    if "kafka_leader_before" in e:
        lines.append(f"workers, Kafka: {count(e.get('broker_unreachable', 0), 'failed connection')} to "
                     f"a broker; {count(e.get('fetch_failed', 0), 'fetch', 'fetches')} and "
                     f"{count(e.get('produce_retried', 0), 'produce request')} failed and retried")
    if "kills_planned" in e:
        lines.append(f"{count(e.get('runs', 1), 'run')}: {e.get('worker_kills', 0)} of "
                     f"{e['kills_planned']} SIGKILLs hit a running worker; "
                     f"{count(e.get('outbox_taken_over', 0), 'outbox', 'outboxes')} a killed worker "
                     f"left produced by the next holder; "
                     f"{count(e.get('runs_not_clean', 0), 'run')} not clean")
    if not figures.fault_met:
        lines.append("the fault was NOT met: this run tested nothing")
    return lines


def run(settings: Settings, scenario: str, records: int, rate: float, logs: Path, seed: int = 1,
        progress: Callable[[str], None] = lambda _line: None, timeout: float = 240.0,
        values: list[bytes] | None = None) -> Figures:
    """Run one scenario on `settings` (topics and keys of its own) and return its figures."""
    check_stack(settings, scenario)
    rng = random.Random(seed)
    started = time.monotonic()
    hostile = records // 4 if scenario == "fuzz" and values is None else 0
    if values is None:
        values = workload(records, seed, hostile)
    ensure_topics(settings)
    logs.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(settings, logs)
    evidence: dict[str, Any] = {}
    failovers: list[RedisFailover | LeaderKill] = []
    initial, actions = plan(scenario, fleet, settings, rng, busiest_partition(settings, values),
                            evidence, progress, failovers)
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
        if failovers:
            # A client that knew the cluster before its failovers: a fresh one for the checks.
            client.close()
            client = settings.redis_client()
        _await_fences(settings, client, fleet, last, timeout)
        topic = read_topic(settings, settings.topics.responses)
        expected = replay_topic(topic)
        diff = _await_outputs(settings, client, expected, timeout=60)
        in_topic = {(r.partition, r.offset): r.value for r in topic}
        missing = sum(1 for where, value in acked.items() if in_topic.get(where) != value)
        for failover in failovers:
            if isinstance(failover, RedisFailover):
                failover.finish(client)
            else:
                failover.finish(last)
        evidence.update(worker_log_counts(logs), worker_kills=fleet.kills, workers_at_most=fleet.most)
        return Figures(scenario=scenario, published=len(values), acknowledged=len(acked),
                       in_topic=len(topic), faults=faults, worker_kills=fleet.kills,
                       worker_crashes=fleet.crashes,
                       acknowledged_not_in_topic=missing, seconds=time.monotonic() - started,
                       evidence=evidence, fault_met=fault_met(scenario, evidence), **asdict(diff))
    finally:
        for failover in failovers:
            if isinstance(failover, RedisFailover):
                failover.stop()
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
