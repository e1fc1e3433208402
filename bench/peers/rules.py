"""What every peer does with one record: the engine applied to its message's state."""

from __future__ import annotations

import orjson

from msgstate.bench.peers.message_state import MessageState
from msgstate.schemas.records import Response
from msgstate.schemas.rejections import Rejection
from msgstate.streams.engine.engine import Engine

# An output record: (is an event, key, value); rejections go to the rejections topic.
Output = tuple[bool, bytes | None, bytes]


def rejected_whole(rejection: Rejection) -> list[Output]:
    """The output of a record rejected before any state is read (decode_response gave a dict)."""
    message_id = rejection.get("message_id")
    key = message_id.encode() if isinstance(message_id, str) else None
    return [(False, key, orjson.dumps(rejection))]


def apply_one(engine: Engine, item: Response, state: MessageState) -> tuple[bool, list[Output]]:
    """Apply one decoded Response to its message's state, in place.

    Returns whether the state changed (the peer then saves it) and the outputs.
    """
    outcome = engine.apply_batch([item], state)
    changed = not outcome.delta.is_empty()
    if changed:
        state.apply(outcome.delta)
    outputs: list[Output] = []
    key = None
    for event in outcome.events:
        key = key or event["message_id"].encode()
        outputs.append((True, key, orjson.dumps(event)))
    for _, rejection in outcome.rejections:
        outputs += rejected_whole(rejection)
    return changed, outputs
