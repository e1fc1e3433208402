"""The benchmark's comparison of a single Redis with a Redis Cluster: the cluster's processes
read from CLUSTER NODES, the partitions each master serves, the CPU and memory figures per
Redis process and per setup."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from msgstate.bench.report import print_report, redis_nodes, shard_rows, store_rows, write
from msgstate.bench.runner import Drain, Plan, Run
from msgstate.bench.shards import Node, ShardLoad, cpu_by_node, parse_cluster_nodes, partitions_on
from msgstate.bench.suite import Figures, parts, stages
from msgstate.streams.storage.layout import Keys

CLUSTER_NODES = """\
a1 127.0.0.1:7001@17001 master - 0 1700000000000 2 connected 5461-10922
r3 127.0.0.1:7005@17005 slave c1 0 1700000000000 3 connected
a0 127.0.0.1:7000@17000 myself,master - 0 1700000000000 1 connected 0-5460
c1 127.0.0.1:7002@17002 master - 0 1700000000000 3 connected 10923-16383
r1 127.0.0.1:7004@17004 slave a1 0 1700000000000 2 connected
r0 127.0.0.1:7003@17003 slave a0 0 1700000000000 1 connected
"""
THIRDS = ((0, 5460),), ((5461, 10922),), ((10923, 16383),)


def test_cluster_nodes_give_the_masters_with_their_slots_then_the_replicas_with_their_master() -> None:
    found = parse_cluster_nodes(CLUSTER_NODES)
    assert [(n.port, n.master, n.slots) for n in found] == [
        (7000, None, THIRDS[0]), (7001, None, THIRDS[1]), (7002, None, THIRDS[2]),
        (7003, 7000, ()), (7004, 7001, ()), (7005, 7002, ())]
    assert [n.name for n in found] == ["master:7000", "master:7001", "master:7002",
                                       "replica:7003", "replica:7004", "replica:7005"]
    assert Node(6379).name == "redis"  # a single server
    # A node not yet following its master is a master without slots, still a cluster node.
    assert [n.name for n in parse_cluster_nodes("x 127.0.0.1:7009@17009 master - 0 0 4 connected")] == [
        "master:7009"]


def test_each_master_serves_the_partitions_whose_slot_is_in_its_ranges() -> None:
    keys = Keys("bench-1", "bench-1.responses", 12)
    masters = [Node(7000 + n, cluster=True, slots=slots) for n, slots in enumerate(THIRDS)]
    assert [partitions_on(master, keys) for master in masters] == [4, 4, 4]
    assert partitions_on(Node(6379), keys) == 12
    assert partitions_on(Node(7000, cluster=True, slots=((0, 16383),)), Keys("b", "b.responses", 5)) == 5


def test_redis_cpu_is_the_masters_and_each_process_is_read_apart() -> None:
    cpu = {1: 2.0, 2: 3.0, 3: 0.5}.get
    assert cpu_by_node([Node(6379, pid=1)], lambda pid: cpu(pid or 0, 0.0)) == {"redis": 2.0}
    cluster = [Node(7000, cluster=True, slots=THIRDS[0], pid=1),
               Node(7001, cluster=True, slots=THIRDS[1], pid=2), Node(7003, cluster=True, master=7000, pid=3)]
    assert cpu_by_node(cluster, lambda pid: cpu(pid or 0, 0.0)) == {
        "master:7000": 2.0, "master:7001": 3.0, "replica:7003": 0.5, "redis": 5.0}


def _drain(rate: float, **cpu: float) -> Drain:
    return Drain(rate, 1000 / rate, {"system": 0.02, "broker": 0.004, "harness": 0.001, **cpu})


def _compared() -> Figures:
    # 1,000 responses a drain: CPU seconds × 1,000,000 / 1,000 are µs per response.
    single = Run("worker", "zipf", 1, 1000, store="redis",
                 drains=[_drain(10_000, redis=0.010), _drain(8_000, redis=0.012)],
                 redis={"live_values": 500, "used_memory_per_live_value": 90.0},
                 shards=[ShardLoad("redis", 12, 400, 45_000)])
    cpu = {"master:7000": 0.004, "master:7001": 0.005, "master:7002": 0.003,
           "replica:7003": 0.001, "replica:7004": 0.002, "replica:7005": 0.001}
    cluster = Run("worker", "zipf", 1, 1000, store="cluster",
                  drains=[_drain(9_000, redis=0.012, **cpu), _drain(4_000, redis=0.012, **cpu)],
                  redis={"live_values": 500, "used_memory_per_live_value": 110.0},
                  shards=[ShardLoad(f"master:{7000 + n}", 4, 130 + n, 18_000) for n in range(3)])
    return Figures("test machine", "now", {"repeats": 2}, [single, cluster])


def test_the_cluster_is_judged_pair_by_pair_against_the_single_redis() -> None:
    figures = _compared()
    assert figures.on_cluster() == [0.9, 0.5]
    single, cluster = store_rows(figures)
    assert single.on_single is not None and single.on_single.median == 1
    assert cluster.on_single is not None and cluster.on_single.median == pytest.approx(0.7)
    assert cluster.worker_cpu is not None and cluster.worker_cpu.median == pytest.approx(20)
    # The masters' CPU together, the replicas' apart, per 1,000 responses in ms.
    assert cluster.masters_cpu is not None and cluster.masters_cpu.median == pytest.approx(12)
    assert cluster.replicas_cpu is not None and cluster.replicas_cpu.median == pytest.approx(4)
    assert single.masters_cpu is not None and single.masters_cpu.median == pytest.approx(11)
    assert single.replicas_cpu is None
    assert (single.per_live_value, cluster.per_live_value) == (90.0, 110.0)
    assert figures.find("worker") is None  # the comparison's workers are not the main one


def test_each_redis_process_gets_a_row_masters_with_what_they_hold() -> None:
    single, cluster = (_compared().find("worker", store=s) for s in ("redis", "cluster"))
    assert single is not None and cluster is not None
    assert redis_nodes(single) == ["redis"]
    rows = shard_rows(cluster)
    assert [r.node for r in rows] == ["master:7000", "master:7001", "master:7002",
                                      "replica:7003", "replica:7004", "replica:7005"]
    assert [(r.partitions, r.keys) for r in rows[:3]] == [(4, 130), (4, 131), (4, 132)]
    assert all(r.partitions is None and r.used_memory is None for r in rows[3:])
    assert rows[1].cpu is not None and rows[1].cpu.median == pytest.approx(5)
    assert [(r.partitions, r.keys, r.used_memory) for r in shard_rows(single)] == [(12, 400, 45_000)]


def test_the_report_and_the_files_carry_the_comparison(tmp_path: Path) -> None:
    figures = _compared()
    console = Console(record=True, width=250)
    print_report(console, figures)
    text = console.export_text()
    assert "single Redis and on a Redis Cluster of 3 masters" in text
    assert "0.70 (0.50-0.90)" in text and "master:7002" in text and "replica:7005" in text
    # Beside a main run, the comparison's workers are not given the main worker's ratios.
    main = Run("worker", "zipf", 1, 1000, drains=[_drain(5_000, redis=0.01), _drain(5_000, redis=0.01)])
    bare = Run("bare_pipeline", "zipf", 1, 1000, drains=[_drain(10_000), _drain(10_000)])
    figures.runs += [main, bare]
    console = Console(record=True, width=250)
    print_report(console, figures)
    ratios = [line for line in console.export_text().splitlines() if "0.50 (0.50-0.50)" in line]
    assert len(ratios) == 1 and "msgstate worker " in ratios[0] and "Redis" not in ratios[0], ratios
    json_path, csv_path, _ = write(tmp_path, figures)
    assert b'"cluster_per_single_redis"' in json_path.read_bytes()
    assert ",cluster," in csv_path.read_text()


def test_a_cluster_adds_one_session_of_paired_drains_at_the_end() -> None:
    plan = Plan(["zipf"], [1], [], [], 40_000, 6, 90, repeats=3, warm_up=2)
    before = stages(plan)
    plan.cluster = "redis://127.0.0.1:7000/0"
    last = parts(plan)[-1]
    assert ([s for s, _ in last.systems], last.stores) == (["worker", "worker"], ["redis", "cluster"])
    assert stages(plan) == before + 1 + 2 + 3  # start, warm-ups, drains
