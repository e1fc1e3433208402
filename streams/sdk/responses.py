"""A model's responses (Layer's `MessageTypeResponseSummary`): state registration, batched
operations sent as Response Messages, and the summary kept current by change events."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from msgstate.schemas.exceptions import ValidationError
from msgstate.schemas.limits import INT_MIN, MAX_CHANGES, MAX_STATUS_TEXT
from msgstate.schemas.registry import Entry
from msgstate.schemas.values import encode_value
from msgstate.streams.engine.state import Held
from msgstate.streams.engine.summary import count_tallies, render_tally
from msgstate.streams.sdk import validation
from msgstate.streams.sdk.events import SEND_FAILED, SENDING, ChangeEvent, SendFailedEvent, SendingEvent, log
from msgstate.streams.sdk.ids import new_response_id
from msgstate.streams.sdk.publisher import DeliveryFuture, Publisher
from msgstate.streams.sdk.scheduling import Scheduler, Timer
from msgstate.streams.sdk.states import StateRegistry, custom_states
from msgstate.streams.storage.reader import SummaryReader

if TYPE_CHECKING:
    from msgstate.streams.sdk.model import MessageTypeModel

ID_PLACEHOLDER = new_response_id()  # every id has this length
SEEN_EVENTS = 4096  # event ids remembered to drop re-deliveries (events are at least once)


class Wiring(Protocol):
    """What a model's responses need from its client."""

    publisher: Publisher
    reader: SummaryReader
    scheduler: Scheduler
    send_delay: float

    def dispatch(self, call: Callable[[], None]) -> None: ...


class Responses:
    def __init__(self, model: MessageTypeModel, wiring: Wiring | None) -> None:
        self._model = model
        self._wiring = wiring
        self._own = StateRegistry()
        self._lock = threading.RLock()
        self._changes: list[dict[str, Any]] = []
        self._text: str | None = None
        self._future: DeliveryFuture | None = None
        self._timer: Timer | None = None
        self.summary: dict[str, Any] | None = None  # loaded by `load`, kept current by events
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._loaded_version = 0

    # -- registration ---------------------------------------------------------------------

    def register_state(self, name: str, kind: str, max_values: int | None = None) -> None:
        """Register a state of this message type (call it from `register_all_states`);
        `max_values` caps its distinct values in one part."""
        known = custom_states.get(name)
        if known is not None and known != str(kind):
            raise ValidationError(f"state {name} is a custom state of type {known}; "
                                  f"it cannot be registered as {kind}")
        self._own.register_state(name, kind, max_values)

    @property
    def registry(self) -> dict[str, str]:
        """Every state this model may write, with its type."""
        return {**custom_states, **self._own}

    @property
    def own_states(self) -> dict[str, str]:
        return dict(self._own)

    @property
    def own_entries(self) -> dict[str, Entry]:
        """`own_states` in the registry's written form, with each state's max_values."""
        return self._own.entries()

    # -- operations -----------------------------------------------------------------------

    def add_state(self, name: str, value: Any) -> DeliveryFuture:
        """Add `value` to state `name` for this model's identity; returns the response's future."""
        return self._operate("add", name, value)

    def remove_state(self, name: str, value: Any = None) -> DeliveryFuture:
        """Remove `value` (a Set member; for LWWN the value to unset, or None for any)."""
        kind = self.registry.get(name)
        if value is None and kind != "Set":
            return self._operate("remove", name, validation.NO_VALUE)
        return self._operate("remove", name, value)

    def set_response_message_text(self, text: str | None) -> None:
        """The status text of the next Response Message (e.g. "Frodo voted for Red")."""
        if text is not None and (not isinstance(text, str) or len(text) > MAX_STATUS_TEXT):
            raise ValidationError(f"the response text must be a string of at most {MAX_STATUS_TEXT} "
                                  "characters")
        with self._lock:
            if self._changes and not validation.fits(self._record(self._changes, text)):
                raise ValidationError("with this text the pending response would exceed the record "
                                      "size limit; send it first")
            self._text = text

    def send_response_message(self) -> DeliveryFuture | None:
        """Send the pending operations now; None when there are none."""
        with self._lock:
            if not self._changes:
                return None
            return self._send_locked()

    @property
    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self._changes]

    def _operate(self, operation: str, name: str, value: Any) -> DeliveryFuture:
        model = self._model
        change = validation.make_change(self.registry, operation, name, value, type(model).__name__)
        with self._lock:
            validation.check_against_summary(self.summary, change, model.identity_id, self._changes)
            if self._changes and (len(self._changes) >= MAX_CHANGES or not validation.fits(
                    self._record([*self._changes, change], self._text))):
                self._send_locked()  # full: this change starts the next response
            if not self._changes:
                self._future = DeliveryFuture(response_id=new_response_id())
                wiring = self._need_wiring()
                self._timer = wiring.scheduler.call_later(wiring.send_delay,
                                                          partial(self._send_due, self._future))
            self._changes.append(change)
            assert self._future is not None
            return self._future

    def _send_due(self, future: DeliveryFuture | None) -> None:
        with self._lock:
            if future is self._future and self._changes:
                self._send_locked()

    def _send_locked(self) -> DeliveryFuture:
        future, changes, text, timer = self._future, self._changes, self._text, self._timer
        assert future is not None and future.response_id is not None
        self._changes, self._text, self._future, self._timer = [], None, None, None
        if timer is not None:
            timer.cancel()
        record = self._record(changes, text, future.response_id)
        record["sent_at"] = time.time_ns() // 1_000_000
        try:
            encoded = validation.encode_record(record)
        except ValidationError as exc:  # the checks per operation make this unreachable
            future.set_exception(exc)
            return future
        sending = SendingEvent(record)
        self._model.trigger(SENDING, sending)
        if sending.canceled:
            future.cancel()
            return future
        future.add_done_callback(self._report_failure)
        self._need_wiring().publisher.send_raw(record["message_id"].encode(), encoded,
                                               response_id=future.response_id, future=future)
        return future

    def _report_failure(self, future: Any) -> None:
        if future.cancelled() or future.exception() is None:
            return
        error = future.exception()
        model = self._model
        if not model.listens(SEND_FAILED):
            log.error("response %s of %s was not published: %s", future.response_id,
                      model.message_id, error)
        event = SendFailedEvent(future.response_id, error, future)
        self._need_wiring().dispatch(lambda: model.trigger(SEND_FAILED, event))

    def _record(self, changes: list[dict[str, Any]], text: str | None,
                rid: str = ID_PLACEHOLDER) -> dict[str, Any]:
        """The record; with the defaults, as large as it can be once sent (for size checks)."""
        model = self._model
        return {"id": rid, "message_id": model.message_id, "part_id": model.part_id,
                "identity_id": model.identity_id, "changes": changes, "status_text": text,
                "sent_at": INT_MIN}

    def _need_wiring(self) -> Wiring:
        if self._wiring is None:
            raise ValidationError(f"this {type(self._model).__name__} has no client: open it with "
                                  "client.model(...)")
        return self._wiring

    # -- reading --------------------------------------------------------------------------

    def get_state(self, name: str, identity_id: str | None = None) -> Any:
        """An identity's value of `name` (default: this model's), read from Redis."""
        model = self._model
        return self._need_wiring().reader.get_state(model.message_id, name,
                                                    identity_id or model.identity_id, model.part_id)

    def get_summary(self, clip: int | None = None) -> dict[str, Any]:
        """This part's Response Summary, read from Redis (tallies always whole)."""
        model = self._model
        return self._need_wiring().reader.get_summary(model.message_id, model.part_id, clip)

    def load(self, summary: Mapping[str, Any]) -> None:
        """Take a summary read from Redis as the local view; events up to its version are in it."""
        with self._lock:
            self.summary = dict(summary)
            self._loaded_version = int(summary["version"])

    def apply_event(self, event: Mapping[str, Any]) -> ChangeEvent | None:
        """Fold a summary-change event into the local summary; None if it was already in it."""
        with self._lock:
            summary = self.summary
            if summary is None or event["event_id"] in self._seen \
                    or event["version"] <= self._loaded_version:
                return None
            self._seen[event["event_id"]] = None
            if len(self._seen) > SEEN_EVENTS:
                self._seen.popitem(last=False)
            cause = event.get("cause") or "response"
            summary["version"] = max(summary["version"], event["version"])
            if cause == "delete_message":  # a deleted summary holds nothing (SPEC section 3a)
                summary["states"], summary["deleted"] = {}, True
            else:
                self._fold(summary["states"], event)
            return ChangeEvent(event["name"], event["identity_id"], event["old"], event["new"],
                               event["type"], event["version"], event["response_id"],
                               event["status_text"], dict(event), cause)

    @staticmethod
    def _fold(states: dict[str, Any], event: Mapping[str, Any]) -> None:
        state = states.setdefault(event["name"], {"type": event["type"], "values": {}, "tally": []})
        values = state["values"]
        if event["new"] is None:
            values.pop(event["identity_id"], None)
        else:
            values[event["identity_id"]] = event["new"]
        # A Set holds a list of members; any other type's value may itself be a list (v1.1).
        is_set = state["type"] == "Set"
        held: dict[str, Held] = {
            ident: tuple(map(encode_value, v)) if is_set else encode_value(v)
            for ident, v in values.items()}
        state["tally"] = render_tally(count_tallies(held))
