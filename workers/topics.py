"""Create msgstate's topics (SPEC section 1) when they are missing."""

from __future__ import annotations

import logging
from contextlib import suppress

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from msgstate.schemas.exceptions import ServiceUnreachable
from msgstate.workers.config import Settings


def topic_names(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.responses, t.summary_changes, t.rejections, t.messages]


def ensure_topics(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Create the missing topics with the configured partitions and replication; returns them."""
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    wanted = names or topic_names(settings)
    try:
        admin = KafkaAdminClient(**settings.kafka_client(), client_id="msgstate-admin",
                                 request_timeout_ms=10_000, bootstrap_timeout_ms=10_000)
    except KafkaError as exc:
        raise ServiceUnreachable("Kafka", settings.kafka, type(exc).__name__) from exc
    try:
        existing = set(admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            # Another worker may create them at the same time.
            with suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(n, settings.partitions, settings.replication)
                                     for n in missing])
        return missing
    except KafkaError as exc:
        raise ServiceUnreachable("Kafka", settings.kafka, type(exc).__name__) from exc
    finally:
        admin.close()
