"""Shared test configuration: the real local stack, started once per session on free ports."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from msgstate.workers.config import Settings, Topics, environment
from msgstate.workers.tools.stack import private_stack

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Kafka + Redis for the whole session, on ports of their own; stopped at the end."""
    # The jar cache is shared with the developer's stack; the instances are not.
    base = Settings(stack_dir=Path(os.environ.get("MSGSTATE_STACK_DIR", ROOT / ".stack")))
    with private_stack(base, partitions=4) as settings:
        yield settings


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
    return {**os.environ, **environment(settings), "PYTHONPATH": str(ROOT)}
