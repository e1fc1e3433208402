"""faust's own way: a faust Table keyed by message id, its value the message's state.

The table lives in the worker's memory and every write goes to its changelog topic (how
faust makes a table durable and recovers it); one record at a time, as faust agents do.
"""

from __future__ import annotations

from typing import Any

from faust.serializers.codecs import Codec

from msgstate.bench.kafka_io import read_topic
from msgstate.bench.peers.faust_app import apply_each, peer_app, run
from msgstate.bench.peers.message_state import MessageState
from msgstate.workers.config import Settings

TABLE = "states"


class StateCodec(Codec):  # type: ignore[misc]
    """A table value as changelog bytes and back."""

    def _dumps(self, obj: Any) -> bytes:
        return obj.to_bytes()  # type: ignore[no-any-return]

    def _loads(self, s: bytes) -> Any:
        return MessageState.from_bytes(s)


def app_name(settings: Settings) -> str:
    return f"{settings.app_id}-table"


def changelog(settings: Settings) -> str:
    return f"{app_name(settings)}-{TABLE}-changelog"


def main(settings: Settings) -> None:
    app, responses, events, rejections = peer_app(settings, "table")
    table = app.Table(TABLE, default=None, partitions=settings.partitions, key_type=bytes)
    table.value_serializer = StateCodec()  # faust takes it from the value type; ours is a codec

    async def load(message_id: str) -> MessageState | None:
        return table.get(message_id.encode())  # type: ignore[no-any-return]

    async def save(message_id: str, state: MessageState) -> None:
        table[message_id.encode()] = state  # a changelog record per write

    @app.agent(responses)
    async def apply_to_table(stream: Any) -> None:
        await apply_each(stream, load, save, events, rejections)

    run(app)


def summaries(settings: Settings) -> list[dict[str, Any]]:
    """Every summary, from the table's changelog (what a restarted worker would recover)."""
    latest: dict[bytes, bytes | None] = {}
    for key, value in read_topic(settings, changelog(settings)):
        if key is not None:
            latest[key] = value
    found = []
    for key, value in latest.items():
        if value is not None:
            found += MessageState.from_bytes(value).summaries(key.decode())
    return sorted(found, key=lambda s: (s["message_id"], s["part_id"]))
