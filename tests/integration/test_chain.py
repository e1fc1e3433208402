"""The chain with real services: kafka-python → partitioned topic → faust agent → Redis."""

from __future__ import annotations

import collections

import redis
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from msgstate.workers.config import Settings

from ..waiting import wait_for
from .processes import WorkerProcess

RECORDS = 400
KEYS = 16


def test_records_flow_from_kafka_through_faust_into_redis(settings: Settings) -> None:
    topic = f"{settings.topics.prefix}.chain"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka)
    admin.create_topics([NewTopic(topic, num_partitions=settings.partitions, replication_factor=1)])
    admin.close()

    worker = WorkerProcess(settings, ["-m", "tests.integration.chain_app", "worker",
                                      "--without-web", "-l", "warn"])
    try:
        producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all")
        sent = collections.defaultdict(list)
        partitions = set()
        for i in range(RECORDS):
            key = f"message-{i % KEYS}".encode()
            meta = producer.send(topic, key=key, value=str(i).encode()).get(timeout=30)
            partitions.add(meta.partition)
            sent[key].append(str(i).encode())
        producer.close()
        assert len(partitions) > 1, "the keys should spread over several partitions"

        store = redis.Redis.from_url(settings.redis)
        lists = {key: f"{settings.topics.prefix}:chain:".encode() + key for key in sent}

        def received() -> int:
            worker.check()
            return sum(int(store.llen(name)) for name in lists.values())

        wait_for(received, lambda n: n >= RECORDS, timeout=90,
                 what=lambda: f"{RECORDS} records in Redis\n{worker.output()}")
        for key, name in lists.items():
            # Every record arrives once, and in its key's order (one partition per key).
            assert store.lrange(name, 0, -1) == sent[key]
        store.close()
    finally:
        assert worker.stop() in (0, -15), worker.output()
