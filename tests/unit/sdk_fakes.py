"""In-process stand-ins for the SDK's Kafka and Redis ends, for pure unit tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from msgstate.streams.sdk import CRDT_TYPES, Delivery, DeliveryFuture, ManualScheduler, MessageTypeModel


class RecordingPublisher:
    """Keeps what is sent; resolves each future at once, as Kafka acknowledging it."""

    def __init__(self, partitions: int = 1) -> None:
        self.sent: list[tuple[bytes | None, bytes, str | None]] = []
        self.sent_to: list[int | None] = []  # the explicit partition of each record, if any
        self.fail_with: BaseException | None = None
        self.partition_count = partitions

    def partitions(self) -> list[int]:
        return list(range(self.partition_count))

    def send_raw(self, key: bytes | None, value: bytes, *, response_id: str | None = None,
                 future: DeliveryFuture | None = None, partition: int | None = None
                 ) -> DeliveryFuture:
        future = future or DeliveryFuture()
        future.key, future.value, future.response_id = key, value, response_id
        self.sent.append((key, value, response_id))
        self.sent_to.append(partition)
        if self.fail_with is not None:
            future.set_exception(self.fail_with)
        else:
            future.set_result(Delivery("t", partition or 0, len(self.sent) - 1, response_id))
        return future

    @property
    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(value) for _, value, _ in self.sent]


class Wiring:
    def __init__(self, send_delay: float = 0.1) -> None:
        self.publisher = RecordingPublisher()
        self.scheduler = ManualScheduler()
        self.send_delay = send_delay
        self.reader = None

    def dispatch(self, call: Callable[[], None]) -> None:
        call()


class PollModel(MessageTypeModel):
    def register_all_states(self) -> None:
        self.responses.register_state("poll_choice", CRDT_TYPES.FIRST_WRITER_WINS)
        self.responses.register_state("colors", CRDT_TYPES.SET)
        self.responses.register_state("latest", CRDT_TYPES.LAST_WRITER_WINS)
        self.responses.register_state("answer", CRDT_TYPES.LAST_WRITER_WINS_NULLABLE)


def empty_summary(message_id: str = "m1", part_id: str = "root") -> dict[str, Any]:
    return {"message_id": message_id, "part_id": part_id, "version": 0, "states": {}}


def open_poll(wiring: Wiring, summary: dict[str, Any] | None = None,
              identity: str = "u1") -> PollModel:
    model = PollModel("m1", identity, wiring=wiring)  # type: ignore[arg-type]
    model.responses.load(summary or empty_summary())
    return model
