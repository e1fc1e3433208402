"""The apps worker: a faust app that feeds chat messages and summary changes to the installed apps.

Its consumer group is `<MSGSTATE_APP_ID>-apps`, apart from the state workers'. One actor per
partition (`concurrency=1`, `isolated_partitions=True`) takes batches; within a batch, rooms
(for summary changes: messages) run side by side and each one's events in offset order.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import faust
import mode

from msgstate.streams.apps.host import MESSAGE_SENT, STATE_CHANGED, AppsHost, HostEvent, load_apps
from msgstate.workers.config import Settings

BATCH_MAX = 500
BATCH_WITHIN = 0.02  # seconds


def apps_from_env(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """`MSGSTATE_APPS` (comma-separated `module:attr`) when set, else the `msgstate.apps` entry points."""
    env = os.environ if env is None else env
    raw = env.get("MSGSTATE_APPS")
    if raw is None:
        return load_apps(None)
    return load_apps([spec for spec in raw.split(",") if spec.strip()])


class ActorSupervisor(mode.OneForOneSupervisor):
    """Restarts the actors a rebalance stopped, paced instead of exiting the worker.

    mode's restart rate limit holds a single token (its capacity is `over`, one second), so when
    a rebalance (another worker joining or dying) cancels two partitions' actors at once, the
    second restart found no token and the worker exited with MaxRestartsExceeded. Without
    `raises`, the limit waits for its next token instead."""

    def __init__(self, *services: Any, **options: Any) -> None:
        super().__init__(*services, **{**options, "raises": None})


def group_id(settings: Settings) -> str:
    return f"{settings.app_id}-apps"


def build_app(settings: Settings, apps: dict[str, object]) -> faust.App:
    data = settings.stack_dir / "faust"
    data.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        group_id(settings),
        broker=[f"kafka://{s}" for s in settings.kafka_servers],
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_every=BATCH_MAX,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        datadir=str(data / "{conf.name}-data"),
        broker_credentials=settings.kafka_security.faust_credentials(),
    )
    client = settings.async_redis_client(socket_timeout=10, socket_connect_timeout=5)
    host = AppsHost(client, settings.key_prefix, apps)

    def consume(topic_name: str, handle: Callable[[Sequence[HostEvent]], Awaitable[None]],
                name: str) -> None:
        topic = app.topic(topic_name, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")

        async def agent(stream: Any) -> None:
            async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):
                await handle([HostEvent(e.message.topic, e.message.partition, e.message.offset, e.value)
                              for e in events])

        app.agent(topic, name=name, concurrency=1, isolated_partitions=True,
                  supervisor_strategy=ActorSupervisor)(agent)

    # Only the topics some installed app has a handler for.
    if host.handles(MESSAGE_SENT):
        consume(settings.topics.messages, host.messages, "apps-messages")
    if host.handles(STATE_CHANGED):
        consume(settings.topics.summary_changes, host.state_changes, "apps-state-changes")
    return app
