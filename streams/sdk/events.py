"""The events a model emits, named like Layer's, and a small listener registry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from msgstate.schemas.values import Value

log = logging.getLogger("msgstate.streams.sdk")

CHANGE = "message-type-model:change"
SENDING = "message-type-model:sending-response-message"  # cancelable
SEND_FAILED = "message-type-model:response-failed"

StateValue = Value | list[Value] | None
Handler = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One state of one identity changed (one summary-change event, SPEC section 5)."""

    name: str
    identity_id: str
    old_value: StateValue
    new_value: StateValue
    type: str
    version: int
    response_id: str
    status_text: str | None
    record: dict[str, Any] = field(repr=False)
    # What made the change (SPEC section 5): "response", "delete_message" or "erase_identity";
    # for the last two, `response_id` is the deletion's or the erasure's id.
    cause: str = "response"

    @property
    def deleted(self) -> bool:
        """Whether the message was deleted (its every holding goes, one event each)."""
        return self.cause == "delete_message"

    def has_property(self, name: str) -> bool:
        """Whether this change concerns state `name` (Layer's `evt.hasProperty`)."""
        return name == self.name

    @property
    def changes(self) -> list[dict[str, Any]]:
        return [{"property": self.name, "old_value": self.old_value, "new_value": self.new_value}]


@dataclass(slots=True)
class SendingEvent:
    """A Response Message about to be published; `cancel()` drops it (its future is cancelled)."""

    record: dict[str, Any]
    canceled: bool = False

    def cancel(self) -> None:
        self.canceled = True


@dataclass(frozen=True, slots=True)
class SendFailedEvent:
    """A Response Message Kafka did not take; `future.retry()` sends it again with the same id."""

    record_id: str | None
    error: BaseException
    future: Any


class Emitter:
    """`on(name, handler)`, `off(name, handler)`, `trigger(name, event)`."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._handlers_lock = threading.Lock()

    def on(self, name: str, handler: Handler) -> Handler:
        with self._handlers_lock:
            self._handlers.setdefault(name, []).append(handler)
        return handler

    def off(self, name: str, handler: Handler | None = None) -> None:
        with self._handlers_lock:
            if handler is None:
                self._handlers.pop(name, None)
            elif handler in self._handlers.get(name, []):
                self._handlers[name].remove(handler)

    def listens(self, name: str) -> bool:
        return bool(self._handlers.get(name))

    def trigger(self, name: str, event: Any) -> None:
        with self._handlers_lock:
            handlers = list(self._handlers.get(name, ()))
        for handler in handlers:
            try:
                handler(event)
            except Exception:  # one faulty listener must not starve the others
                log.exception("a %s listener failed", name)
