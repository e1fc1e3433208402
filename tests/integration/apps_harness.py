"""Drive apps workers on the real stack: publish chat messages, await the group's committed offsets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from msgstate.streams.apps.persistence import AppPersistence
from msgstate.streams.apps.persistence_model import AppRecord, AssociationRecord
from msgstate.workers.config import Settings
from msgstate.workers.services.apps_worker import group_id
from msgstate.workers.topics import ensure_topics

from ..waiting import wait_for
from .processes import WorkerProcess


def chat_message(i: int, rooms: int, text: str | None = None) -> dict[str, Any]:
    return {"id": f"c-{i}", "room_id": f"room-{i % rooms}", "sender_id": f"u-{i % 7}",
            "text": text if text is not None else f"hello {i}", "ts": 1732277000000 + i}


class AppsDeployment:
    """Topics, a pipelining producer that remembers end offsets, and apps worker processes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        ensure_topics(settings)
        self.producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all", linger_ms=20,
                                      batch_size=256 * 1024, enable_idempotence=True)
        self.ends: dict[tuple[str, int], int] = {}
        self.workers: list[WorkerProcess] = []

    def start_worker(self, app_id: str | None = None) -> WorkerProcess:
        settings = self.settings if app_id is None else self.settings.with_(app_id=app_id)
        proc = WorkerProcess(settings, ["-m", "msgstate.workers", "worker", "--apps", "-l", "warn"],
                             name="apps")
        self.workers.append(proc)
        return proc

    def publish(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        futures = [self.producer.send(topic, key=key, value=value) for key, value in records]
        self.producer.flush(timeout=120)
        for future in futures:
            meta = future.get(timeout=60)
            at = (topic, meta.partition)
            self.ends[at] = max(self.ends.get(at, 0), meta.offset + 1)

    def publish_messages(self, messages: Sequence[dict[str, Any]]) -> None:
        self.publish(self.settings.topics.messages,
                     [(m["room_id"].encode(), orjson.dumps(m)) for m in messages])

    def committed(self, app_id: str | None = None) -> dict[tuple[str, int], int]:
        group = group_id(self.settings if app_id is None else self.settings.with_(app_id=app_id))
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka)
        try:
            offsets = admin.list_group_offsets({group: None}).get(group, {})
        except KafkaError:  # the group (or its coordinator) is not there yet
            return {}
        finally:
            admin.close()
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}

    def await_done(self, app_id: str | None = None, timeout: float = 150) -> None:
        """Until the apps group committed every published record: all handled."""
        def probe() -> dict[tuple[str, int], int]:
            for proc in self.workers:
                proc.check()
            return self.committed(app_id)

        wait_for(probe, lambda seen: all(seen.get(tp, -1) >= end for tp, end in self.ends.items()),
                 timeout=timeout, interval=0.5,
                 what=lambda: f"committed offsets {self.ends}\n"
                 + "\n".join(w.output() for w in self.workers))

    def records(self, app: str, association: AssociationRecord | None = None) -> list[AppRecord]:
        async def read() -> list[AppRecord]:
            client = self.settings.async_redis_client()
            try:
                store = AppPersistence(client, self.settings.key_prefix, app)
                return await (store.read_records_by_association(association) if association
                              else store.read_all())
            finally:
                await client.aclose()

        return asyncio.run(read())

    def close(self) -> None:
        for proc in self.workers:
            proc.stop()
        self.producer.close(timeout=5)
