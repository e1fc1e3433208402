"""The apps host: hands chat-message events and summary-change events to installed apps.

An app is an object with a `name` and any of the handlers below (plain or `async` methods):

    execute_post_message_sent(message: ChatMessage, read: PersistenceRead, persistence: AppPersistence)
    execute_post_message_state_changed(event: dict, read: PersistenceRead, persistence: AppPersistence)

Each call gets the app's own persistence, scoped to (event, handler): its writes carry once
tokens, so an event delivered again (Kafka is at least once) does not apply them twice. A
handler that raises is recorded in the app's dead-letter stream with the error and the event,
and the host goes on; only an unreachable Redis stops a batch (it is retried, which the once
tokens make safe).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import time
import traceback
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib.metadata import entry_points
from typing import Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from msgstate.schemas.chat import decode_chat_message
from msgstate.schemas.exceptions import ConfigError, MsgstateError
from msgstate.streams.apps.persistence import DEAD_LETTERS_KEPT, AppPersistence
from msgstate.streams.apps.persistence_model import check_app_name
from msgstate.streams.storage.client import AsyncRedis
from msgstate.streams.storage.layout import Keys

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "msgstate.apps"
MESSAGE_SENT = "execute_post_message_sent"
STATE_CHANGED = "execute_post_message_state_changed"
_TRACE_CHARS = 4000
# Redis not answering: the batch waits and retries. Any other error, even a handler's own
# OSError (say, from an HTTP call), is that handler's failure: a dead letter.
_INFRA = (RedisConnectionError, RedisTimeoutError)


@dataclass(frozen=True, slots=True)
class HostEvent:
    """One input record: where it came from and its raw value."""

    topic: str
    partition: int
    offset: int
    value: bytes


@dataclass(frozen=True, slots=True)
class _Decoded:
    event_id: str
    group: str  # events of one group are handled in order (a room, a message)
    payload: Any
    source: HostEvent


def handlers_of(app: object) -> list[str]:
    """The host's handlers this app has."""
    return [h for h in (MESSAGE_SENT, STATE_CHANGED) if callable(getattr(app, h, None))]


def invalid_key(key_prefix: str) -> str:
    """The stream of input records no app could be given (not a valid event)."""
    return Keys(key_prefix).apps_invalid()


def app_name(app: object, fallback: str) -> str:
    return check_app_name(str(getattr(app, "name", None) or fallback))


def load_apps(specs: Iterable[str] | None = None) -> dict[str, object]:
    """Apps by name: from `module:attr` specs when given, else from the `msgstate.apps` entry points.

    A class is instantiated with no arguments; any other object is used as it is.
    """
    found: dict[str, object] = {}

    def add(obj: object, fallback: str, origin: str) -> None:
        app = obj() if isinstance(obj, type) else obj
        name = app_name(app, fallback)
        if name in found:
            raise ConfigError(f"two apps are named {name!r} (the second from {origin})")
        found[name] = app

    if specs is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                add(ep.load(), ep.name, f"entry point {ep.value}")
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"app entry point {ep.name} = {ep.value} cannot load: {exc}") from exc
        return found
    for spec in specs:
        module, sep, attr = spec.strip().partition(":")
        if not sep or not module or not attr:
            raise ConfigError(f"MSGSTATE_APPS: {spec!r} is not module:attribute")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"MSGSTATE_APPS: cannot load {spec!r}: {exc}") from exc
        add(obj, attr, spec)
    return found


class AppsHost:
    def __init__(self, client: AsyncRedis, key_prefix: str, apps: dict[str, object],
                 retry_max: float = 5.0) -> None:
        self.client = client
        self.apps = {name: (app, AppPersistence(client, key_prefix, name)) for name, app in apps.items()}
        self.invalid_key = invalid_key(key_prefix)
        self.retry_max = retry_max

    def handles(self, handler: str) -> bool:
        return any(handler in handlers_of(app) for app, _ in self.apps.values())

    async def messages(self, events: Sequence[HostEvent]) -> None:
        """A batch of chat-message events, in offset order."""
        await self._batch(MESSAGE_SENT, events, self._decode_message)

    async def state_changes(self, events: Sequence[HostEvent]) -> None:
        """A batch of summary-change events, in offset order."""
        await self._batch(STATE_CHANGED, events, self._decode_change)

    @staticmethod
    def _decode_message(event: HostEvent) -> _Decoded:
        message = decode_chat_message(event.value)
        return _Decoded(message.id, message.room_id, message, event)

    @staticmethod
    def _decode_change(event: HostEvent) -> _Decoded:
        try:
            change = orjson.loads(event.value)
            return _Decoded(str(change["event_id"]), str(change["message_id"]), change, event)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise MsgstateError(f"not a summary-change event: {exc!r}") from exc

    async def _batch(self, handler: str, events: Sequence[HostEvent],
                     decode: Callable[[HostEvent], _Decoded]) -> None:
        groups: dict[str, list[_Decoded]] = defaultdict(list)
        for event in events:
            try:
                decoded = decode(event)
            except MsgstateError as exc:
                await self._retrying(partial(self._invalid, event, exc))
                continue
            groups[decoded.group].append(decoded)

        calls = [(name, fn, store) for name, (app, store) in self.apps.items()
                 if callable(fn := getattr(app, handler, None))]

        # Rooms (or messages) run side by side, and the apps on one event; each app sees the
        # events of one room in their order.
        async def run(group: list[_Decoded]) -> None:
            for item in group:
                await asyncio.gather(*(self._retrying(partial(self._call, name, handler, fn, store, item))
                                       for name, fn, store in calls))

        await asyncio.gather(*(run(group) for group in groups.values()))

    async def _call(self, name: str, handler: str, fn: Callable[..., Any], store: AppPersistence,
                    item: _Decoded) -> None:
        scoped = store.scoped(f"{handler}:{item.event_id}")
        try:
            result = fn(item.payload, store.reader(), scoped)
            if inspect.isawaitable(result):
                await result
        except _INFRA:
            raise
        except Exception as exc:
            log.warning("app %s: %s failed on %s/%d@%d: %r", name, handler, item.source.topic,
                        item.source.partition, item.source.offset, exc)
            # Under its own once token: a re-delivered event that fails again is not recorded twice.
            await store.record_failure({
                "app": name, "handler": handler, "event_id": item.event_id,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": "".join(traceback.format_exception(exc))[-_TRACE_CHARS:],
                "topic": item.source.topic, "partition": item.source.partition,
                "offset": item.source.offset, "at": int(time.time() * 1000), "event": item.source.value,
            }, once=f"{handler}:{item.event_id}#failed")

    async def _invalid(self, event: HostEvent, exc: Exception) -> None:
        log.warning("%s/%d@%d is not a valid event: %s", event.topic, event.partition, event.offset, exc)
        await self.client.xadd(self.invalid_key, {
            "error": str(exc), "topic": event.topic, "partition": event.partition,
            "offset": event.offset, "at": int(time.time() * 1000), "event": event.value,
        }, maxlen=DEAD_LETTERS_KEPT, approximate=True)

    async def _retrying(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run a step until Redis answers; the step's writes carry once tokens, so repeats are safe."""
        delay = 0.05
        while True:
            try:
                await step()
                return
            except _INFRA as exc:
                log.warning("Redis unreachable (%r); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)


async def read_dead_letters(client: AsyncRedis, key: str, count: int = 100) -> list[dict[str, Any]]:
    """The newest `count` entries of a dead-letter stream, oldest first, fields decoded."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrevrange(key, count=count)  # type: ignore[assignment]
    out = []
    for entry_id, fields in reversed(entries):
        row: dict[str, Any] = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        row["id"] = entry_id.decode()
        out.append(row)
    return out
