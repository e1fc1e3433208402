"""The SDK's entry point: a Client publishes, reads and watches; an AsyncClient does the same
for asyncio backends (awaitable reads, timers and listeners on the event loop)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis

from msgstate.schemas.exceptions import ServiceUnreachable
from msgstate.schemas.limits import DEFAULT_PART
from msgstate.schemas.values import Value
from msgstate.streams.engine.signing import SigningKey
from msgstate.streams.sdk.change_feed import ChangeFeed
from msgstate.streams.sdk.deletions import deletion, erasure, send_deletion, send_erasure
from msgstate.streams.sdk.ids import new_response_id
from msgstate.streams.sdk.model import MessageTypeModel
from msgstate.streams.sdk.publisher import DeliveryFuture, Publisher
from msgstate.streams.sdk.scheduling import AsyncioScheduler, Scheduler, ThreadScheduler
from msgstate.streams.sdk.validation import encode_record
from msgstate.streams.storage.client import sync_client
from msgstate.streams.storage.layout import Keys
from msgstate.streams.storage.reader import SummaryReader

M = TypeVar("M", bound=MessageTypeModel)


class _NamedReader(SummaryReader):
    """A SummaryReader whose Redis errors name Redis and its address."""

    def __init__(self, client: redis.Redis | redis.RedisCluster, keys: Keys, address: str) -> None:
        super().__init__(client, keys)
        self.address = address

    def get_summary(self, message_id: str, part: str = DEFAULT_PART, clip: int | None = None
                    ) -> dict[str, Any]:
        try:
            return super().get_summary(message_id, part, clip)
        except redis.RedisError as exc:
            raise ServiceUnreachable("Redis", self.address, str(exc)) from exc

    def get_state(self, message_id: str, name: str, identity_id: str, part: str = DEFAULT_PART
                  ) -> Value | list[Value] | None:
        try:
            return super().get_state(message_id, name, identity_id, part)
        except redis.RedisError as exc:
            raise ServiceUnreachable("Redis", self.address, str(exc)) from exc


def _redis_address(client: redis.Redis | redis.RedisCluster) -> str:
    if isinstance(client, redis.RedisCluster):
        node = client.get_default_node()  # type: ignore[no-untyped-call]
        return f"{node.host}:{node.port}" if node is not None else "redis cluster"
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}" if "host" in kwargs \
        else str(kwargs.get("path", "redis"))


class Client:
    """Publishes Response Messages, reads summaries from Redis, feeds watched models.

    `kafka`: bootstrap servers; `redis_url`: a URL or a redis.Redis (made without
    decode_responses). Topics are `<topic_prefix>.responses` and `.summary-changes`, Redis keys
    start with `key_prefix`, and `partitions` is the responses topic's partition count, as
    configured for the workers (MSGSTATE_PARTITIONS); `redis_cluster`: `redis_url` names a node
    of a Redis Cluster. Operations of a model are sent
    `send_delay` seconds after the first one, or when `send_response_message()` is called.
    """

    def __init__(self, kafka: str | Sequence[str], redis_url: str | redis.Redis | redis.RedisCluster, *,
                 topic_prefix: str = "msgstate", key_prefix: str = "ms", partitions: int = 12,
                 redis_cluster: bool = False, send_delay: float = 0.1,
                 signing_key: SigningKey | None = None, connect_timeout: float = 10.0,
                 scheduler: Scheduler | None = None,
                 dispatch: Callable[[Callable[[], None]], None] | None = None,
                 producer_config: Mapping[str, Any] | None = None,
                 kafka_security: Mapping[str, Any] | None = None) -> None:
        # kafka_security: kafka-python's security_protocol / sasl_* / ssl_* options, for both
        # the publisher and the change feed.
        security = dict(kafka_security or {})
        self.publisher = Publisher(kafka, f"{topic_prefix}.responses", signing_key=signing_key,
                                   connect_timeout=connect_timeout,
                                   producer_config={**security, **(producer_config or {})})
        self._owns_redis = isinstance(redis_url, str)
        self.redis = sync_client(redis_url, cluster=redis_cluster, socket_timeout=connect_timeout,
                                 socket_connect_timeout=connect_timeout) \
            if isinstance(redis_url, str) else redis_url
        address = redis_url if isinstance(redis_url, str) else _redis_address(redis_url)
        # A message's keys are in its partition's: as many partitions as the workers count.
        keys = Keys(key_prefix, f"{topic_prefix}.responses", partitions)
        self.reader: SummaryReader = _NamedReader(self.redis, keys, address)
        self._own_scheduler = ThreadScheduler() if scheduler is None else None
        self.scheduler: Scheduler = scheduler or self._own_scheduler  # type: ignore[assignment]
        self.send_delay = send_delay
        self._dispatch = dispatch
        self.feed = ChangeFeed(self.publisher.servers, f"{topic_prefix}.summary-changes",
                               self.dispatch, connect_timeout, consumer_config=security)
        self._models: weakref.WeakSet[MessageTypeModel] = weakref.WeakSet()

    def dispatch(self, call: Callable[[], None]) -> None:
        """Run a listener call where listeners run (here: at once, on the calling thread)."""
        if self._dispatch is None:
            call()
        else:
            self._dispatch(call)

    def model(self, cls: type[M], message_id: str, identity_id: str, part_id: str = DEFAULT_PART,
              *, watch: bool = True) -> M:
        """Open a model: registered, watched for changes (unless `watch=False`), loaded."""
        model = cls(message_id, identity_id, part_id, wiring=self)
        self._open(model, watch)
        model.parse_model_responses()
        return model

    def _open(self, model: MessageTypeModel, watch: bool) -> None:
        if watch:
            # Watched first: a change made after the read below reaches the model as an event;
            # one made before it is in the summary (workers write Redis before the event).
            self.feed.watch(model)
        try:
            model.responses.load(self.reader.get_summary(model.message_id, model.part_id))
        except BaseException:
            self.feed.unwatch(model)
            raise
        self._models.add(model)

    def close_model(self, model: MessageTypeModel) -> None:
        model.close()
        self.feed.unwatch(model)
        self._models.discard(model)

    def publish(self, record: Mapping[str, Any]) -> DeliveryFuture:
        """Publish one Response Message given as a dict (an `id` is made when it has none)."""
        full = dict(record)
        full.setdefault("id", new_response_id())
        return self.publisher.send_response(full, encode_record(full))

    def delete_message(self, message_id: str, by: str, status_text: str | None = None
                       ) -> DeliveryFuture:
        """Delete a message (SPEC section 3a): every holding of every part is removed, with an
        event each, and every later record for it is refused `message_deleted`. `by` is the
        identity that deletes it."""
        return send_deletion(self.publisher, deletion(message_id, by, status_text))

    def erase_identity(self, identity_id: str, status_text: str | None = None
                       ) -> list[DeliveryFuture]:
        """Erase an identity's values from every message (SPEC section 3a): one record with one
        id to each partition of the responses topic (asks Kafka how many there are, so it
        blocks until Kafka answers); a future per partition."""
        return send_erasure(self.publisher, erasure(identity_id, status_text))

    def get_summary(self, message_id: str, part_id: str = DEFAULT_PART, clip: int | None = None
                    ) -> dict[str, Any]:
        return self.reader.get_summary(message_id, part_id, clip)

    def get_state(self, message_id: str, name: str, identity_id: str, part_id: str = DEFAULT_PART
                  ) -> Value | list[Value] | None:
        return self.reader.get_state(message_id, name, identity_id, part_id)

    def flush(self, timeout: float | None = None) -> None:
        """Send every model's pending operations and wait for Kafka's answers."""
        for model in list(self._models):
            model.responses.send_response_message()
        self.publisher.flush(timeout)

    def close(self) -> None:
        """Flush, then stop the feed, the publisher and the timers."""
        for model in list(self._models):
            model.close()
        self.feed.close()
        self.publisher.close()
        if self._own_scheduler is not None:
            self._own_scheduler.close()
        if self._owns_redis:
            self.redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient:
    """The Client for asyncio: make it inside a running loop; timers, listeners and
    `parse_model_responses` run on that loop; blocking calls run in threads. Futures of sends
    are awaitable."""

    def __init__(self, kafka: str | Sequence[str], redis_url: str | redis.Redis | redis.RedisCluster,
                 **options: Any) -> None:
        loop = asyncio.get_running_loop()

        def on_loop(call: Callable[[], None]) -> None:
            loop.call_soon_threadsafe(call)

        self.sync = Client(kafka, redis_url, scheduler=AsyncioScheduler(loop), dispatch=on_loop,
                           **options)
        self.publisher = self.sync.publisher

    async def model(self, cls: type[M], message_id: str, identity_id: str,
                    part_id: str = DEFAULT_PART, *, watch: bool = True) -> M:
        model = cls(message_id, identity_id, part_id, wiring=self.sync)
        await asyncio.to_thread(self.sync._open, model, watch)
        model.parse_model_responses()
        return model

    async def close_model(self, model: MessageTypeModel) -> None:
        await asyncio.to_thread(self.sync.close_model, model)

    def publish(self, record: Mapping[str, Any]) -> DeliveryFuture:
        return self.sync.publish(record)

    def delete_message(self, message_id: str, by: str, status_text: str | None = None
                       ) -> DeliveryFuture:
        return self.sync.delete_message(message_id, by, status_text)

    async def erase_identity(self, identity_id: str, status_text: str | None = None
                             ) -> list[DeliveryFuture]:
        return await asyncio.to_thread(self.sync.erase_identity, identity_id, status_text)

    async def get_summary(self, message_id: str, part_id: str = DEFAULT_PART,
                          clip: int | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.get_summary, message_id, part_id, clip)

    async def get_state(self, message_id: str, name: str, identity_id: str,
                        part_id: str = DEFAULT_PART) -> Value | list[Value] | None:
        return await asyncio.to_thread(self.sync.get_state, message_id, name, identity_id, part_id)

    async def flush(self) -> None:
        for model in list(self.sync._models):
            model.responses.send_response_message()
        await asyncio.to_thread(self.sync.publisher.flush)

    async def close(self) -> None:
        for model in list(self.sync._models):
            model.close()
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
