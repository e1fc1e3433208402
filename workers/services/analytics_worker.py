"""The analytics consumer: rolling per-minute counts of summary changes, kept in Redis.

It reads `msgstate.summary-changes` in its own consumer group and commits offsets only after
Redis counted a batch. Redelivered events (a restart before the commit, or the state worker's
at-least-once events) carry the same `event_id` and are dropped by the store's dedupe step, so
every change counts once.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from kafka import KafkaConsumer
from prometheus_client import Counter

from msgstate.workers.config import Settings
from msgstate.workers.services.analytics_store import AnalyticsStore

log = logging.getLogger("msgstate.analytics")

READ = Counter("msgstate_analytics_events_read", "Summary-change records read")
COUNTED = Counter("msgstate_analytics_events_counted", "Events counted (first time seen)")
REPEATED = Counter("msgstate_analytics_events_repeated", "Events dropped as already counted")
SKIPPED = Counter("msgstate_analytics_records_skipped", "Records that are not summary-change events")


def decode_event(value: bytes | None) -> dict[str, Any] | None:
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    needed = ("event_id", "message_id", "name")
    if not isinstance(event, dict) or not all(isinstance(event.get(k), str) for k in needed):
        return None
    return event


class AnalyticsWorker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = settings.redis_client(socket_timeout=10)
        self.store = AnalyticsStore(self.client, settings.key_prefix, settings.analytics_retention)
        self.consumer = KafkaConsumer(
            settings.topics.summary_changes, **settings.kafka_client(),
            group_id=f"{settings.app_id}-analytics", enable_auto_commit=False,
            auto_offset_reset="earliest", client_id="msgstate-analytics",
        )
        self.running = True

    def stop(self, *_: object) -> None:
        self.running = False

    def run(self) -> None:
        try:
            while self.running:
                batches = self.consumer.poll(timeout_ms=500, max_records=1000)
                if batches:
                    self.handle([r for records in batches.values() for r in records])
                    self.consumer.commit()
        finally:
            self.consumer.close()
            self.client.close()

    def handle(self, records: list[Any]) -> None:
        events = []
        for record in records:
            READ.inc()
            event = decode_event(record.value)
            if event is None:
                SKIPPED.inc()
                log.warning("skipping a record that is not a summary-change event",
                            extra={"partition": record.partition, "offset": record.offset})
                continue
            events.append((int(record.timestamp), event))
        counted = self.store.count(events) if events else 0
        COUNTED.inc(counted)
        REPEATED.inc(len(events) - counted)
