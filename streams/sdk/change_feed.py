"""The consumer of `msgstate.summary-changes` that feeds the models being watched.

It reads every partition with no consumer group (each client sees every change of the
messages it watches) from the end of each partition as it was when the feed started. A model
is watched before its summary is read from Redis, so no change falls between the two: events
the summary already holds are recognised by their version and dropped.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from msgstate.schemas.exceptions import ServiceUnreachable
from msgstate.streams.sdk.model import MessageTypeModel

log = logging.getLogger(__name__)

Dispatch = Callable[[Callable[[], None]], None]


class ChangeFeed:
    def __init__(self, servers: Sequence[str], topic: str, dispatch: Dispatch,
                 connect_timeout: float = 10.0, poll_ms: int = 100,
                 consumer_config: Mapping[str, Any] | None = None) -> None:
        self.servers = list(servers)
        self._config = dict(consumer_config or {})
        self.topic = topic
        self._dispatch = dispatch
        self._timeout = connect_timeout
        self._poll_ms = poll_ms
        self._watchers: dict[tuple[str, str], list[MessageTypeModel]] = defaultdict(list)
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def watch(self, model: MessageTypeModel) -> None:
        """Deliver the changes of the model's (message, part) to it from now on."""
        self._start()
        with self._lock:
            self._watchers[(model.message_id, model.part_id)].append(model)

    def unwatch(self, model: MessageTypeModel) -> None:
        with self._lock:
            models = self._watchers.get((model.message_id, model.part_id), [])
            if model in models:
                models.remove(model)
            if not models:
                self._watchers.pop((model.message_id, model.part_id), None)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self._timeout + 5)

    def _start(self) -> None:
        """Start the consumer thread and wait until its positions are set; a failed start is
        raised here and tried again at the next watch."""
        with self._start_lock:
            if self._thread is not None:
                return
            self._ready.clear()
            self._error = None
            thread = threading.Thread(target=self._run, name="msgstate-sdk-changes", daemon=True)
            thread.start()
            self._ready.wait()
            if self._error is not None:
                raise self._error
            self._thread = thread

    def _run(self) -> None:
        try:
            consumer = self._connect()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=self._poll_ms)
                for records in batches.values():
                    for record in records:
                        self._deliver(record.value)
        except KafkaError:
            log.exception("the change feed on %s stopped", self.topic)
        finally:
            consumer.close()

    def _connect(self) -> Any:
        address = ",".join(self.servers)
        ms = int(self._timeout * 1000)
        try:
            consumer = KafkaConsumer(bootstrap_servers=self.servers, enable_auto_commit=False,
                                     group_id=None, client_id="msgstate-sdk-changes",
                                     bootstrap_timeout_ms=ms, request_timeout_ms=max(ms, 30_000),
                                     **self._config)
        except KafkaError as exc:
            raise ServiceUnreachable("Kafka", address, type(exc).__name__) from exc
        try:
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                raise ServiceUnreachable("Kafka", address, f"topic {self.topic} does not exist; "
                                         "a state worker creates it")
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            consumer.seek_to_end(*assigned)
            for tp in assigned:  # resolve the positions now: they are the feed's starting point
                consumer.position(tp)
        except BaseException:
            consumer.close()
            raise
        return consumer

    def _deliver(self, raw: bytes) -> None:
        try:
            event = orjson.loads(raw)
            key = (event["message_id"], event["part_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("skipped a summary-change record that is not an event: %r", raw[:200])
            return
        with self._lock:
            models = list(self._watchers.get(key, ()))
        for model in models:
            change = model.responses.apply_event(event)
            if change is not None:
                self._dispatch(partial(model.changed, change))
