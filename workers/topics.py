"""Create msgstate's topics (SPEC section 1) when they are missing."""

from __future__ import annotations

import logging
import time
from contextlib import suppress
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (
    InvalidReplicationFactorError,
    KafkaConnectionError,
    KafkaError,
    NodeNotReadyError,
    TopicAlreadyExistsError,
    UnknownBrokerIdError,
)

from msgstate.schemas.exceptions import MsgstateError, ServiceUnreachable
from msgstate.workers.config import Settings

# How long a request that failed on one broker is tried again. A broker that just died stays in
# the cluster's metadata until the controller fences it (9 s by default), and the admin client
# may send to it; the next try most likely goes elsewhere. Within SPEC's 30 s for a command.
RETRY_SECONDS = 15.0


def topic_names(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.responses, t.summary_changes, t.rejections, t.messages, t.state]


def admin_client(settings: Settings, client_id: str, **options: Any) -> KafkaAdminClient:
    """A kafka-python admin client of the configured Kafka; one it cannot reach is named."""
    try:
        return KafkaAdminClient(**settings.kafka_client(), client_id=client_id, **options)
    except KafkaError as exc:
        raise ServiceUnreachable("Kafka", settings.kafka, type(exc).__name__) from exc


def ensure_topics(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Create the missing topics with the configured partitions and replication; returns them."""
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    wanted = names or topic_names(settings)
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        # A new client each try: one keeps the broker it sends topic creations to (KRaft
        # names a random live one in each metadata answer; a dead one, until fenced).
        admin = admin_client(settings, "msgstate-admin", request_timeout_ms=10_000,
                             bootstrap_timeout_ms=10_000)
        try:
            return _create_missing(admin, settings, wanted)
        except InvalidReplicationFactorError as exc:
            raise MsgstateError(_too_few_brokers(admin, settings)) from exc
        except KafkaError as exc:
            if not _retriable(exc) or time.monotonic() > deadline:
                raise ServiceUnreachable("Kafka", settings.kafka, type(exc).__name__) from exc
        finally:
            admin.close()
        time.sleep(0.2)


def _create_missing(admin: Any, settings: Settings, wanted: list[str]) -> list[str]:
    existing = set(admin.list_topics())
    missing = [n for n in wanted if n not in existing]
    if missing:
        # Another worker may create them at the same time (or an earlier try did).
        with suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(n, settings.partitions, settings.replication,
                                          topic_configs=_configs(settings, n))
                                 for n in missing])
    return missing


def _live_brokers(admin: Any) -> int:
    """Brokers of the cluster the controller has not fenced."""
    return sum(not broker.get("is_fenced", False) for broker in admin.describe_cluster()["brokers"])


def _too_few_brokers(admin: Any, settings: Settings) -> str:
    """Kafka refused the replication factor: as many live brokers are needed."""
    try:
        live = str(_live_brokers(admin))
    except KafkaError:
        live = "fewer"
    return (f"cannot create topics with replication factor {settings.replication} (MSGSTATE_REPLICATION): "
            f"Kafka at {settings.kafka} has {live} live brokers; start the missing ones or lower "
            "MSGSTATE_REPLICATION")


def _configs(settings: Settings, name: str) -> dict[str, str]:
    # The changelog keeps the latest record per key: compaction bounds it by the live state.
    return {"cleanup.policy": "compact"} if name == settings.topics.state else {}


def _retriable(exc: KafkaError) -> bool:
    return (isinstance(exc, KafkaConnectionError | NodeNotReadyError | UnknownBrokerIdError)
            or bool(getattr(exc, "retriable", False)))
