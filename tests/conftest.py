"""Shared test configuration: the real local stack, started once per session on free ports."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from workers import stack
from workers.config import Settings, Topics

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Kafka + Redis for the whole session, on ports of their own; stopped at the end."""
    kafka_port = stack.free_port_pair()
    redis_port = stack.free_port_pair()
    settings = Settings(
        kafka=f"127.0.0.1:{kafka_port}",
        redis=f"redis://127.0.0.1:{redis_port}/0",
        # The jar cache is shared with the developer's stack; the instances are not.
        stack_dir=Path(os.environ.get("MSGSTATE_STACK_DIR", ROOT / ".stack")),
        partitions=4,
    )
    stack.up(settings, echo=lambda _line: None)
    try:
        yield settings
    finally:
        stack.down(settings, echo=lambda _line: None)
        for service in (stack.kafka_service(settings), stack.redis_service(settings)):
            shutil.rmtree(service.home, ignore_errors=True)


@pytest.fixture
def settings(stack_settings: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Per test: unique topics, consumer group and Redis key prefix; Redis flushed before."""
    tag = f"t{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(stack_settings.redis)
    client.flushdb()
    client.close()
    yield stack_settings.with_(topics=Topics(tag), key_prefix=tag, app_id=f"{tag}-app")


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment a worker subprocess needs to join this test's deployment."""
    env = dict(os.environ)
    env.update({
        "MSGSTATE_KAFKA": settings.kafka,
        "MSGSTATE_REDIS": settings.redis,
        "MSGSTATE_STACK_DIR": str(settings.stack_dir),
        "MSGSTATE_PARTITIONS": str(settings.partitions),
        "MSGSTATE_TOPIC_PREFIX": settings.topics.prefix,
        "MSGSTATE_KEY_PREFIX": settings.key_prefix,
        "MSGSTATE_APP_ID": settings.app_id,
        "PYTHONPATH": str(ROOT),
    })
    return env
