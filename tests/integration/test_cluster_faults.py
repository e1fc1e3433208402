"""The failover scenarios of `msgstate reliability` on a real cluster stack (three Kafka brokers,
three Redis masters with a replica each): the Redis master of the busiest partition's slot, or
the broker leading that partition, SIGKILLed mid-run. Each run must end equal to a replay of the
topic, and show that its fault was met."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from msgstate.schemas.exceptions import MsgstateError
from msgstate.workers.config import Settings, Topics
from msgstate.workers.tools import stack
from msgstate.workers.tools.fault_run import FaultRunError, Figures, evidence_lines, fault_met, run
from msgstate.workers.topics import ensure_topics, topic_names

from ..conftest import ROOT

pytestmark = pytest.mark.integration

RECORDS = 1600
RATE = 200.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Settings]:
    """Both clusters in one stack of its own (the session's single-node stack is not needed)."""
    base = Settings(stack_dir=Path(os.environ.get("MSGSTATE_STACK_DIR", ROOT / ".stack")))
    with stack.private_stack(base, partitions=4, redis_masters=3, kafka_brokers=3) as settings:
        yield settings


def fresh(settings: Settings) -> Settings:
    tag = f"x{uuid.uuid4().hex[:10]}"
    return settings.with_(topics=Topics(tag), key_prefix=tag, app_id=f"{tag}-app")


def assert_clean(figures: Figures, logs: Path) -> None:
    assert figures.acknowledged == figures.published == figures.in_topic == RECORDS
    assert figures.worker_crashes == 0, f"a worker died by itself; logs in {logs}"
    assert figures.events_expected > 1000 and figures.rejections_expected > 0
    assert figures.clean, figures.as_dict()
    assert figures.fault_met and figures.passed, "\n".join(evidence_lines(figures))


@pytest.mark.timeout(360)
def test_the_stack_replicates_every_topic_three_times_and_needs_two_in_sync(cluster: Settings) -> None:
    settings = fresh(cluster)
    brokers = stack.kafka_nodes(settings)
    assert settings.kafka == ",".join(node.address for node in brokers) and len(brokers) == 3
    assert settings.replication == 3
    ensure_topics(settings)
    admin = KafkaAdminClient(**settings.kafka_client())
    try:
        described = admin.describe_topics([settings.topics.responses])[0]
        assert len(described["partitions"]) == 4
        assert all(sorted(p["replica_nodes"]) == [1, 2, 3] for p in described["partitions"])
        # What a producer's acks=all waits for on msgstate's own topic, and the brokers' defaults.
        topic = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topics.responses)],
                                       config_filter="all")["topic"][settings.topics.responses]
        assert topic["min.insync.replicas"]["value"] == "2", topic.get("min.insync.replicas")
        broker = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "2")],
                                        config_filter="all")["broker"]["2"]
        for name, value in (("default.replication.factor", "3"), ("offsets.topic.replication.factor", "3"),
                            ("transaction.state.log.replication.factor", "3"),
                            ("transaction.state.log.min.isr", "2"), ("min.insync.replicas", "2")):
            assert broker[name]["value"] == value, (name, broker.get(name))
    finally:
        admin.close()


@pytest.mark.timeout(240)
def test_topics_are_found_and_created_while_a_broker_just_died(cluster: Settings) -> None:
    """Until the controller fences a dead broker (9 s), the cluster still lists it, and an admin
    request may go to it: a worker started then (it checks its topics first) must not give up."""
    settings = fresh(cluster)
    ensure_topics(settings)
    first = stack.kafka_nodes(settings)[0]  # the first of MSGSTATE_KAFKA's brokers, too
    assert stack.kill_node(first) is not None
    try:
        for _ in range(3):
            other = fresh(cluster)
            assert ensure_topics(other) == topic_names(other)
        for _ in range(6):
            assert ensure_topics(settings) == []
    finally:
        stack.start_kafka_cluster(cluster, 3)
    assert all(row.answers for row in stack.status(cluster))


def test_more_replicas_than_live_brokers_is_refused_in_one_line_naming_both(cluster: Settings) -> None:
    settings = fresh(cluster).with_(replication=4)
    with pytest.raises(MsgstateError) as refused:
        ensure_topics(settings)
    assert str(refused.value) == (
        f"cannot create topics with replication factor 4 (MSGSTATE_REPLICATION): Kafka at {settings.kafka} "
        "has 3 live brokers; start the missing ones or lower MSGSTATE_REPLICATION")
    admin = KafkaAdminClient(**settings.kafka_client())
    try:
        assert settings.topics.responses not in admin.list_topics()
    finally:
        admin.close()


@pytest.mark.timeout(360)
def test_redis_failover_loses_nothing_and_shows_the_new_master(cluster: Settings, tmp_path: Path) -> None:
    figures = run(fresh(cluster), "redis-failover", records=RECORDS, rate=RATE, logs=tmp_path)
    print("\n".join(evidence_lines(figures)))
    assert_clean(figures, tmp_path)
    e = figures.evidence
    # Another node serves the slot, the old master follows it, and the partition's rounds after
    # the kill were applied there.
    assert e["redis_new_master"] != e["redis_killed_master"]
    assert e["redis_master_at_end"] == e["redis_new_master"] == e["redis_old_master_replicates"]
    assert e["redis_fence_at_kill"] < e["redis_fence_at_end"]
    assert e["redis_promoted_after"] > 0


@pytest.mark.timeout(360)
def test_kafka_leader_killed_loses_nothing_and_shows_the_new_leader(
        cluster: Settings, tmp_path: Path) -> None:
    figures = run(fresh(cluster), "kafka-leader", records=RECORDS, rate=RATE, logs=tmp_path)
    print("\n".join(evidence_lines(figures)))
    assert_clean(figures, tmp_path)
    e = figures.evidence
    assert e["kafka_leader_after"] not in (-1, e["kafka_leader_before"])
    assert e["kafka_leader_before"] not in e["kafka_isr_during"]
    assert e["kafka_leader_before"] in e["kafka_isr_after"]
    # Records were appended to the partition after its leader died, and the worker met the dead
    # broker.
    assert e["kafka_end_at_kill"] <= e["kafka_last_offset"]
    assert e["broker_unreachable"] + e["fetch_failed"] > 0


@pytest.mark.timeout(600)
def test_cluster_chaos_loses_nothing_and_shows_every_fault(cluster: Settings, tmp_path: Path) -> None:
    """Both failovers, two worker SIGKILLs and a scale from one worker to three and back, in one
    run."""
    figures = run(fresh(cluster), "cluster-chaos", records=RECORDS, rate=RATE, logs=tmp_path)
    print("\n".join(evidence_lines(figures)))
    assert_clean(figures, tmp_path)
    e = figures.evidence
    assert e["redis_new_master"] != e["redis_killed_master"]
    assert e["redis_master_at_end"] == e["redis_old_master_replicates"] == e["redis_new_master"]
    assert e["redis_fence_at_kill"] < e["redis_fence_at_end"]
    assert e["kafka_leader_after"] not in (-1, e["kafka_leader_before"])
    assert e["kafka_leader_before"] in e["kafka_isr_after"]
    assert e["kafka_end_at_kill"] <= e["kafka_last_offset"]
    assert figures.worker_kills == 2 and e["workers_at_most"] == 3


def test_a_failover_scenario_refuses_a_stack_that_is_not_a_cluster(tmp_path: Path) -> None:
    single = Settings(stack_dir=tmp_path, kafka=f"127.0.0.1:{stack.free_port_pair()}",
                      redis=f"redis://127.0.0.1:{stack.free_port_pair()}/0")
    for scenario, says in (("redis-failover", "needs a local Redis Cluster of 3 masters"),
                           ("kafka-leader", "needs 3 local Kafka brokers"),
                           ("cluster-chaos", "needs a local Redis Cluster")):
        with pytest.raises(FaultRunError, match=says) as refused:
            run(single, scenario, records=10, rate=10, logs=tmp_path)
        assert "\n" not in str(refused.value)


def test_the_redis_scenarios_refuse_a_redis_cluster(cluster: Settings, tmp_path: Path) -> None:
    for scenario in ("redis", "redis-cut"):
        with pytest.raises(FaultRunError, match="is a Redis Cluster"):
            run(fresh(cluster), scenario, records=10, rate=10, logs=tmp_path)


def test_without_its_failover_a_run_does_not_pass() -> None:
    """The evidence check can fail: a failover that did not happen, or happened after the
    partition's last record, is not met."""
    redis_seen = {"redis_killed_master": 7001, "redis_new_master": 7004, "redis_master_at_end": 7004,
                  "redis_old_master_replicates": 7004, "redis_fence_at_kill": 200,
                  "redis_fence_at_end": 700}
    assert fault_met("redis-failover", redis_seen)
    assert not fault_met("redis-failover", {})
    assert not fault_met("redis-failover", {**redis_seen, "redis_new_master": 7001,
                                            "redis_master_at_end": 7001})
    assert not fault_met("redis-failover", {**redis_seen, "redis_fence_at_kill": 700})
    kafka_seen = {"kafka_leader_before": 2, "kafka_leader_after": 3, "kafka_isr_after": [1, 2, 3],
                  "kafka_end_at_kill": 250, "kafka_last_offset": 700, "broker_unreachable": 4,
                  "fetch_failed": 2}
    assert fault_met("kafka-leader", kafka_seen)
    assert not fault_met("kafka-leader", {**kafka_seen, "kafka_leader_after": 2})
    assert not fault_met("kafka-leader", {**kafka_seen, "kafka_end_at_kill": 701})
    assert not fault_met("kafka-leader", {**kafka_seen, "kafka_isr_after": [1, 3]})
    assert not fault_met("kafka-leader", {**kafka_seen, "broker_unreachable": 0, "fetch_failed": 0})
    assert not fault_met("cluster-chaos", redis_seen)
    assert fault_met("cluster-chaos", {**redis_seen, **kafka_seen})
    assert fault_met("sigkill", {})
