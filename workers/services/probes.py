"""Is Kafka / Redis answering? Every command asks before it works, and names what is missing."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import redis
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from msgstate.schemas.exceptions import ServiceUnreachable

# SPEC section 9: a command that cannot reach a service exits within 30 s.
DEFAULT_TIMEOUT = 10.0


def kafka_answers(bootstrap: str, timeout: float = 3.0, options: Mapping[str, Any] | None = None
                  ) -> bool:
    """One metadata request; True when an unfenced broker answers."""
    try:
        _describe_brokers(bootstrap, timeout, options)
    except ServiceUnreachable:
        return False
    return True


def redis_answers(url: str, timeout: float = 2.0) -> bool:
    try:
        _ping(url, timeout)
    except ServiceUnreachable:
        return False
    return True


def require_kafka(bootstrap: str, timeout: float = DEFAULT_TIMEOUT,
                  options: Mapping[str, Any] | None = None) -> None:
    """Raise ServiceUnreachable naming Kafka and its address unless a broker answers in time.

    `options`: kafka-python security options (`Settings.kafka_security.kafka_python()`)."""
    _retry_until(lambda: _describe_brokers(bootstrap, min(3.0, timeout), options), timeout)


def require_redis(url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Raise ServiceUnreachable naming Redis and its address unless PING answers in time."""
    _retry_until(lambda: _ping(url, min(2.0, timeout)), timeout)


def _retry_until(check: object, timeout: float) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except ServiceUnreachable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _describe_brokers(bootstrap: str, timeout: float, options: Mapping[str, Any] | None = None
                      ) -> None:
    ms = max(500, int(timeout * 1000))
    # kafka-python logs every failed connection attempt; the error below says it once.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
            client_id="msgstate-probe",
            **(options or {}),
        )
    except KafkaError as exc:
        raise ServiceUnreachable("Kafka", bootstrap, type(exc).__name__) from exc
    try:
        brokers = admin.describe_cluster().get("brokers") or []
    except KafkaError as exc:
        raise ServiceUnreachable("Kafka", bootstrap, type(exc).__name__) from exc
    finally:
        admin.close()
    if not any(not b.get("is_fenced") for b in brokers):
        raise ServiceUnreachable("Kafka", bootstrap, "no broker is ready yet")


def _ping(url: str, timeout: float) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServiceUnreachable("Redis", url, str(exc)) from exc
    finally:
        client.close()
