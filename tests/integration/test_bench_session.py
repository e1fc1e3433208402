"""The benchmark's drains on the real stack: a backlog laid while the systems are suspended,
drained by the worker and the bare pipeline in turn, with each process's CPU read.

Nothing here judges a speed; it checks that the figures measure what they say.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import redis
from rich.console import Console

from msgstate.bench import kafka_io
from msgstate.bench.report import print_report
from msgstate.bench.runner import PROCESSES, Plan, Session
from msgstate.bench.suite import Figures, measure, parts
from msgstate.workers.config import Settings
from msgstate.workers.tools import stack


def test_a_backlog_is_laid_unread_then_drained_by_each_system(stack_settings: Settings,
                                                             tmp_path: Path) -> None:
    session = Session(stack_settings, "zipf", tmp_path, timeout=60, say=lambda _: None)
    try:
        worker, bare = session.add("worker"), session.add("bare_pipeline")
        session.start()
        before = {s.name: s.counter.total() for s in (worker, bare)}
        batch = session.lay(3000)
        # Suspended while the backlog was published: neither has produced anything of it.
        assert {s.name: s.counter.total() for s in (worker, bare)} == before
        assert 0 < batch.sent.named < len(batch.records)  # the workload has broken records too
        drains = {s.name: session.drain(s, batch) for s in (bare, worker)}
        for name, drain in drains.items():
            assert drain.rate is not None and drain.rate > 0, name
            assert not drain.note, drain.note
            assert set(drain.cpu) == set(PROCESSES)
            assert drain.cpu["system"] > 0 and drain.cpu["broker"] > 0, (name, drain.cpu)
        # The engine's events for the worker; one event per record for the bare pipeline.
        assert drains["worker"].events == batch.events
        assert drains["bare_pipeline"].events == len(batch.records)
        assert drains["worker"].cpu["redis"] > 0  # found the stack's Redis, and read its CPU
        consumer = session.bare_consumer(batch)
        assert consumer.rate is not None and consumer.rate > 0
        topics = {t for t in kafka_io.topic_names(stack_settings) if session.tag in t}
        own = [session.settings.topics, bare.settings.topics]  # the session's, the bare pipeline's
        assert {t.responses for t in own} | {t.summary_changes for t in own} <= topics
    finally:
        session.close()
    assert not [t for t in kafka_io.topic_names(stack_settings) if session.tag in t]
    client = redis.Redis.from_url(stack_settings.redis)
    try:
        assert not list(client.scan_iter(match=f"{session.tag}*"))
    finally:
        client.close()


def test_a_worker_on_a_single_redis_and_one_on_a_cluster_drain_the_same_backlogs_in_turns(
        stack_settings: Settings, tmp_path: Path) -> None:
    base = stack_settings.with_(partitions=12)
    plan = Plan(["zipf"], [1], [], [], responses=3000, duration=1, timeout=60, repeats=2, warm_up=1)
    with stack.private_redis_cluster(stack_settings, 3) as cluster:
        plan.cluster = cluster.redis
        part = next(p for p in parts(plan) if p.stores)
        figures = Figures("test machine", "now", asdict(plan),
                          measure(base, plan, part, tmp_path, lambda _: None, lambda: None))
        single, on_cluster = figures.find("worker", store="redis"), figures.find("worker", store="cluster")
        assert single is not None and on_cluster is not None
        for run in (single, on_cluster):
            assert not run.note, run.note
            assert len(run.drains) == 2 and all(d.rate and not d.note for d in run.drains), run.drains
        assert len(figures.on_cluster()) == 2 and all(r > 0 for r in figures.on_cluster())
        # CPU of each Redis process: the single server; each master and each replica (which
        # applies its master's writes; CPU times come in ticks of 10 ms, so all drains together).
        masters, replicas = ([n for n in on_cluster.drains[0].cpu if n.startswith(role)]
                             for role in ("master:", "replica:"))
        assert len(masters) == 3 and len(replicas) == 3
        for drain in on_cluster.drains:
            assert drain.cpu["redis"] == pytest.approx(sum(drain.cpu[n] for n in masters)), drain.cpu
            assert drain.cpu["redis"] > 0, drain.cpu
        assert sum(d.cpu[n] for d in on_cluster.drains for n in replicas) > 0, on_cluster.drains
        assert not [n for n in single.drains[0].cpu if ":" in n] and single.drains[0].cpu["redis"] > 0
        # The same records leave the same keys, on one server or spread over the masters by slot.
        assert [(s.node, s.partitions) for s in single.shards] == [("redis", 12)]
        assert sorted(s.partitions for s in on_cluster.shards) == [4, 4, 4]
        assert all(s.keys > 0 and s.used_memory > 0 for s in [*single.shards, *on_cluster.shards])
        assert sum(s.keys for s in on_cluster.shards) == single.shards[0].keys
        per_value = [r.redis["used_memory_per_live_value"] for r in (single, on_cluster)]
        assert all(20 < v < 2000 for v in per_value), per_value
        assert 0.5 < per_value[1] / per_value[0] < 2, per_value
        client = cluster.redis_client()
        try:
            assert not list(client.scan_iter())  # released, and the session dropped the rest
        finally:
            client.close()
        console = Console(record=True, width=200)
        print_report(console, figures)
        text = console.export_text()
        assert "Redis Cluster of 3 masters" in text and "replica:" in text
