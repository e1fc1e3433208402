"""Reading summaries and per-user state straight from Redis, as the workers wrote them."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import redis

from msgstate.schemas.values import Value
from msgstate.streams.engine.state import Held
from msgstate.streams.engine.summary import decode_held as held_as_json
from msgstate.streams.engine.summary import render_summary
from msgstate.streams.storage.layout import (
    DELETED_FIELD,
    TYPE_FIELD_PREFIX,
    Keys,
    decode_held,
    decode_meta,
    split_field,
    value_field,
)


class SummaryReader:
    """Sync reads for the CLI, the SDK and services; one round trip per call."""

    def __init__(self, client: redis.Redis | redis.RedisCluster, keys: Keys) -> None:
        # Holdings are bytes: a client made with decode_responses=True would garble them.
        self.client = client
        self.keys = keys

    def get_summary(self, message_id: str, part: str = "root", clip: int | None = None
                    ) -> dict[str, Any]:
        """The Response Summary of one (message, part), SPEC section 4."""
        # One consistent view: a message's keys share its partition's hash tag (one slot).
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(self.keys.meta(message_id, part))
        pipe.hgetall(self.keys.values(message_id, part))
        pipe.hgetall(self.keys.tally(message_id, part))
        pipe.hexists(self.keys.message(message_id), DELETED_FIELD)
        meta_raw, values_raw, tally_raw, deleted = pipe.execute()
        meta = decode_meta(meta_raw)
        if deleted:  # SPEC section 3a: any part of a deleted message reads so
            return {"message_id": message_id, "part_id": part, "version": meta.version,
                    "states": {}, "deleted": True}
        holdings: dict[str, dict[str, Held]] = defaultdict(dict)
        for field, raw in values_raw.items():
            name, identity = split_field(field)
            holdings[name][identity.decode()] = decode_held(raw, meta.types.get(name, ""))
        tallies: dict[str, dict[bytes, int]] = defaultdict(dict)
        for field, count in tally_raw.items():
            name, encoded = split_field(field)
            tallies[name][encoded] = int(count)
        return render_summary(message_id, part, meta, holdings, tallies, clip)

    def get_state(self, message_id: str, name: str, identity_id: str, part: str = "root"
                  ) -> Value | list[Value] | None:
        """One identity's value of one state: a value, a Set's members, or None."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(self.keys.values(message_id, part), value_field(name, identity_id))
        pipe.hget(self.keys.meta(message_id, part), TYPE_FIELD_PREFIX + name.encode())
        raw, kind = pipe.execute()
        if raw is None:
            return None
        raw = raw if isinstance(raw, bytes) else raw.encode()
        kind = kind.decode() if isinstance(kind, bytes) else kind or ""
        return held_as_json(decode_held(raw, kind))
