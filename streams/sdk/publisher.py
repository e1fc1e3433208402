"""Publishing Response Messages with kafka-python: keyed by message id, idempotent, acks=all.

Every send returns a `DeliveryFuture` at once; one sender thread hands records to the producer
in call order (so one message's responses keep their order) and never blocks the caller. The
future holds the record's partition and offset, or the DeliveryError that kept it from Kafka:
errors are never swallowed. A future can be re-sent as is (`retry()`), with the same response
id, so the workers drop the copy as a duplicate if the first one got through after all.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Generator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from msgstate.schemas.exceptions import DeliveryError, ServiceUnreachable
from msgstate.streams.engine.signing import SigningKey

log = logging.getLogger(__name__)


def record_key(line: bytes) -> bytes | None:
    """The message id of a record, as its key; None when the line has none (the worker rejects it)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    message_id = data.get("message_id") if isinstance(data, dict) else None
    return message_id.encode() if isinstance(message_id, str) else None


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where Kafka stored a record."""

    topic: str
    partition: int
    offset: int
    response_id: str | None


class DeliveryFuture(Future[Delivery]):
    """A record on its way to Kafka: `.result()` in threads, `await` in asyncio code."""

    def __init__(self, key: bytes | None = None, value: bytes = b"",
                 response_id: str | None = None, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        super().__init__()
        self.key = key
        self.value = value
        self.response_id = response_id
        self.headers = list(headers)
        self.partition: int | None = None  # None: the producer picks it from the key
        self.publisher: Publisher | None = None

    def retry(self) -> DeliveryFuture:
        """Send the same record again (same response id, same bytes); a new future."""
        if self.publisher is None:
            raise DeliveryError("this record was never handed to a publisher")
        return self.publisher.send_raw(self.key, self.value, response_id=self.response_id,
                                       partition=self.partition)

    def __await__(self) -> Generator[Any, None, Delivery]:
        return asyncio.wrap_future(self).__await__()


_STOP = object()


class Publisher:
    """A thread-safe publisher of Response Messages to one topic.

    The producer connects on the first send; a broker that cannot be reached within
    `connect_timeout` fails the futures of what was waiting, and the next send tries again.
    `producer_config` passes further kafka-python settings (delivery_timeout_ms, ...).
    """

    def __init__(self, bootstrap_servers: str | Sequence[str], topic: str = "msgstate.responses", *,
                 signing_key: SigningKey | None = None, connect_timeout: float = 10.0,
                 linger_ms: int = 5, client_id: str = "msgstate-sdk",
                 producer_config: Mapping[str, Any] | None = None) -> None:
        servers = bootstrap_servers.split(",") if isinstance(bootstrap_servers, str) \
            else list(bootstrap_servers)
        self.servers = [s.strip() for s in servers if s.strip()]
        self.topic = topic
        self.signing_key = signing_key
        self._config: dict[str, Any] = {
            "bootstrap_servers": self.servers, "acks": "all", "enable_idempotence": True,
            "linger_ms": linger_ms, "client_id": client_id,
            "bootstrap_timeout_ms": int(connect_timeout * 1000),
            "max_block_ms": int(connect_timeout * 1000),
            **(producer_config or {}),
        }
        self._producer: Any = None
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="msgstate-sdk-sender", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return ",".join(self.servers)

    def send_response(self, record: Mapping[str, Any], encoded: bytes | None = None) -> DeliveryFuture:
        """Publish one Response Message (a dict, checked by the caller), keyed by its message id."""
        value = orjson.dumps(record) if encoded is None else encoded
        return self.send_raw(str(record["message_id"]).encode(), value,
                             response_id=str(record["id"]))

    def send_raw(self, key: bytes | None, value: bytes, *, response_id: str | None = None,
                 future: DeliveryFuture | None = None, partition: int | None = None
                 ) -> DeliveryFuture:
        """Publish record bytes as they are (signed when a key is set); `future`, if given, is
        the one to resolve (a model hands out its batch's future before the batch is sent);
        `partition`, if given, is where the record goes whatever its key."""
        if future is None:
            future = DeliveryFuture()
        future.key, future.value, future.response_id = key, value, response_id
        future.partition = partition
        future.headers = self.signing_key.headers(key, value) if self.signing_key else []
        future.publisher = self
        with self._lock:
            if self._closed:
                raise DeliveryError("the publisher is closed")
            self._jobs.put(future)
        return future

    def partitions(self) -> list[int]:
        """The topic's partition numbers, as Kafka's metadata tells them (waits for the sender's
        producer: the erasure is sent once to each)."""
        done: Future[list[int]] = Future()
        with self._lock:
            if self._closed:
                raise DeliveryError("the publisher is closed")
            self._jobs.put(done)
        found = done.result()
        if not found:
            raise DeliveryError(f"Kafka at {self.address} has no topic {self.topic}")
        return found

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything sent so far was acknowledged or failed."""
        self._jobs.join()
        if self._producer is not None:
            try:
                self._producer.flush(timeout=timeout)
            except KafkaError as exc:
                raise DeliveryError(f"flushing to Kafka at {self.address} failed: {exc}") from exc

    def close(self, timeout: float = 10.0) -> None:
        """Send what is pending, then stop; later sends raise DeliveryError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(_STOP)
        self._thread.join(timeout=timeout + 30)
        if self._producer is not None:
            self._producer.close(timeout=timeout)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is _STOP:
                    if self._producer is not None:
                        self._producer.flush()
                    return
                if isinstance(job, DeliveryFuture):
                    self._produce(job)
                else:
                    self._find_partitions(job)
            except Exception as exc:  # a bug must fail the future, not kill the sender thread
                log.exception("msgstate SDK sender failed")
                if isinstance(job, Future) and not job.done():
                    job.set_exception(DeliveryError(f"sending failed: {exc}"))
            finally:
                self._jobs.task_done()

    def _connect(self) -> DeliveryError | None:
        """Make the producer if there is none yet; the error that kept it from Kafka, if any."""
        if self._producer is None:
            try:
                self._producer = KafkaProducer(**self._config)
            except KafkaError as exc:
                error = DeliveryError(str(ServiceUnreachable("Kafka", self.address,
                                                             type(exc).__name__)))
                error.__cause__ = exc
                return error
        return None

    def _find_partitions(self, found: Future[list[int]]) -> None:
        error = self._connect()
        if error is not None:
            found.set_exception(error)
            return
        try:
            found.set_result(sorted(self._producer.partitions_for(self.topic) or ()))
        except KafkaError as exc:
            found.set_exception(DeliveryError(f"Kafka at {self.address} did not tell the "
                                              f"partitions of {self.topic}: {exc}"))

    def _produce(self, future: DeliveryFuture) -> None:
        if not future.set_running_or_notify_cancel():
            return
        error = self._connect()
        if error is not None:
            self._fail_waiting(future, error, error.__cause__ or error)
            return
        try:
            sent = self._producer.send(self.topic, key=future.key, value=future.value,
                                       headers=future.headers or None, partition=future.partition)
        except (KafkaError, ValueError, TypeError) as exc:
            _fail(future, exc)
            return
        sent.add_callback(lambda meta: future.set_result(
            Delivery(meta.topic, meta.partition, meta.offset, future.response_id)))
        sent.add_errback(lambda exc: _fail(future, exc))

    def _fail_waiting(self, first: DeliveryFuture, error: Exception, cause: BaseException
                     ) -> None:
        """Fail this send and every one queued behind it: they would all wait for the same broker."""
        _fail(first, error, cause)
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is _STOP:
                self._jobs.put(job)  # keep the stop request; task_done balances the get below
            elif not isinstance(job, DeliveryFuture):
                job.set_exception(error)  # a partitions request
            elif job.set_running_or_notify_cancel():
                _fail(job, error, cause)
            self._jobs.task_done()
            if job is _STOP:
                return


def _fail(future: DeliveryFuture, exc: BaseException, cause: BaseException | None = None) -> None:
    if isinstance(exc, DeliveryError):
        error: DeliveryError = exc
    else:
        rid = f" (response {future.response_id})" if future.response_id else ""
        error = DeliveryError(f"Kafka did not take the record{rid}: {exc}")
    error.__cause__ = cause or exc
    if not future.done():
        future.set_exception(error)
