"""quix-streams with its State: the state of a message under its key, in RocksDB, with the
changelog topic quix writes for every store. One record at a time through a StreamingDataFrame.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from typing import Any

import orjson

with warnings.catch_warnings():
    # quix-streams imports authlib's httpx integration when authlib is there, which warns that
    # it is deprecated; authlib puts its own "always" filter first on import, so it goes first.
    with contextlib.suppress(ImportError):
        importlib.import_module("authlib.deprecate")
    warnings.filterwarnings("ignore", "The httpx module is deprecated", DeprecationWarning)
    from quixstreams import Application, State
    from quixstreams.models.serializers import Serializer
    from quixstreams.state.rocksdb import RocksDBOptions

from msgstate.bench.kafka_io import read_topic, topic_names
from msgstate.bench.peers.message_state import MessageState
from msgstate.bench.peers.rules import Output, apply_one, rejected_whole
from msgstate.schemas.records import decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.workers.config import Settings

STATE_KEY = b"state"  # one entry per message (quix prefixes it with the record's key)
SEPARATOR = b"|"  # quix's, between that prefix and the entry's key


def _dumps(value: Any) -> bytes:
    return value.to_bytes() if isinstance(value, MessageState) else orjson.dumps(value)


def _loads(raw: bytes) -> Any:
    return MessageState.from_bytes(raw)


class OutputValue(Serializer):  # type: ignore[misc]
    """An output row's value, as is."""

    def __call__(self, value: Output, ctx: Any) -> bytes:
        return value[2]


def group(settings: Settings) -> str:
    return f"{settings.app_id}-quix"


def main(settings: Settings) -> None:
    state_dir = settings.stack_dir / "quix" / group(settings)
    app = Application(
        broker_address=settings.kafka,
        consumer_group=group(settings),
        auto_offset_reset="earliest",
        state_dir=state_dir,
        rocksdb_options=RocksDBOptions(dumps=_dumps, loads=_loads),
        producer_extra_config={"acks": "all"},
        loglevel="WARNING",
    )
    topics = settings.topics
    responses = app.topic(topics.responses, key_deserializer="bytes", value_deserializer="bytes")
    events = app.topic(topics.summary_changes, key_serializer="bytes", value_serializer=OutputValue())
    rejections = app.topic(topics.rejections, key_serializer="bytes", value_serializer=OutputValue())
    engine = Engine()

    def apply_each(raw: bytes, state: State) -> list[Output]:
        item = decode_response(raw)
        if isinstance(item, dict):
            return rejected_whole(item)
        message = state.get(STATE_KEY) or MessageState()
        changed, outputs = apply_one(engine, item, message)
        if changed:
            state.set(STATE_KEY, message)
        return outputs

    sdf = app.dataframe(responses)
    sdf = sdf.apply(apply_each, stateful=True, expand=True)
    sdf.to_topic(lambda value, key, timestamp, headers: events if value[0] else rejections,
                 key=lambda value: value[1])
    app.run()


def summaries(settings: Settings) -> list[dict[str, Any]]:
    """Every summary, from the store's changelog topic (what quix recovers a store from)."""
    name = next(n for n in topic_names(settings) if n.startswith("changelog") and group(settings) in n)
    latest: dict[bytes, bytes | None] = {}
    for key, value in read_topic(settings, name):
        if key is not None and key.endswith(SEPARATOR + STATE_KEY):
            latest[key[: -len(SEPARATOR + STATE_KEY)]] = value
    found = []
    for message_id, value in latest.items():
        if value is not None:
            found += MessageState.from_bytes(value).summaries(message_id.decode())
    return sorted(found, key=lambda s: (s["message_id"], s["part_id"]))
