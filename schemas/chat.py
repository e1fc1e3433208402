"""Chat-message events (SPEC section 8), for apps: the Rocket.Chat `IMessage` core.

At least `{"id", "room_id", "sender_id", "text", "ts"}`; `ts` is milliseconds
since the epoch, like a response's `sent_at`. Other fields (Rocket.Chat has
many) travel along untouched in `extra`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from msgstate.schemas.exceptions import ValidationError
from msgstate.schemas.limits import INT_MAX, INT_MIN, MAX_CHAT_ID, MAX_RECORD_BYTES
from msgstate.schemas.values import json_kind

CHAT_FIELDS = ("id", "room_id", "sender_id", "text", "ts")


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat message as the chat backend published it."""

    id: str
    room_id: str
    sender_id: str
    text: str
    ts: int
    extra: dict[str, Any] = field(default_factory=dict)  # every other field, as received

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "id": self.id,
            "room_id": self.room_id,
            "sender_id": self.sender_id,
            "text": self.text,
            "ts": self.ts,
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())


def chat_message_problem(record: Any) -> str | None:
    """Why a decoded record is not a chat-message event, or None when it is one."""
    if type(record) is not dict:
        return f"a chat-message event is a JSON object, not {json_kind(record)}"
    for key in ("id", "room_id", "sender_id"):
        value = record.get(key)
        if type(value) is not str or not 0 < len(value) <= MAX_CHAT_ID:
            return f'"{key}" must be a string of 1-{MAX_CHAT_ID} characters'
    if type(record.get("text")) is not str:
        return '"text" must be a string'
    ts = record.get("ts")
    if type(ts) is not int or not INT_MIN <= ts <= INT_MAX:
        return '"ts" must be an integer (milliseconds since the epoch) in the 64-bit signed range'
    return None


def decode_chat_message(raw: bytes) -> ChatMessage:
    """Decode one chat-message event; ValidationError says what is wrong with it."""
    if len(raw) > MAX_RECORD_BYTES:
        raise ValidationError(f"the chat-message event is over {MAX_RECORD_BYTES} bytes")
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"the chat-message event is not UTF-8 JSON: {exc}") from exc
    problem = chat_message_problem(record)
    if problem is not None:
        raise ValidationError(problem)
    extra = {key: value for key, value in record.items() if key not in CHAT_FIELDS}
    return ChatMessage(
        record["id"], record["room_id"], record["sender_id"], record["text"], record["ts"], extra
    )
