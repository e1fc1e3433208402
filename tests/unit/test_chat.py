"""Chat-message events (SPEC section 8)."""

from __future__ import annotations

import orjson
import pytest

from msgstate.schemas.chat import ChatMessage, decode_chat_message
from msgstate.schemas.exceptions import ValidationError

GOOD = {"id": "c1", "room_id": "GENERAL", "sender_id": "u1", "text": "hi", "ts": 1732277000123}


def test_decode_keeps_unknown_fields() -> None:
    message = decode_chat_message(orjson.dumps({**GOOD, "tmid": "t1"}))
    assert message == ChatMessage("c1", "GENERAL", "u1", "hi", 1732277000123, {"tmid": "t1"})
    assert orjson.loads(message.encode()) == {**GOOD, "tmid": "t1"}


@pytest.mark.parametrize(
    "bad",
    [
        b"nope",
        b"[]",
        orjson.dumps({**GOOD, "id": ""}),
        orjson.dumps({k: v for k, v in GOOD.items() if k != "room_id"}),
        orjson.dumps({**GOOD, "sender_id": 5}),
        orjson.dumps({**GOOD, "text": None}),
        orjson.dumps({**GOOD, "ts": 1.5}),
        orjson.dumps({**GOOD, "ts": True}),
        orjson.dumps({**GOOD, "ts": "2024-11-22T12:00:00Z"}),
        orjson.dumps({**GOOD, "text": "x" * 70_000}),
    ],
)
def test_bad_chat_messages(bad: bytes) -> None:
    with pytest.raises(ValidationError):
        decode_chat_message(bad)
