"""How holdings and metas are stored in Redis hashes, both ways."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from streams.engine.state import Held, PartMeta
from streams.storage.layout import TYPE_FIELD_PREFIX, VERSION_FIELD


def encode_held(held: Held) -> bytes:
    # A Set is stored as its JSON array; a scalar never starts with "[".
    return held if isinstance(held, bytes) else b"[" + b",".join(held) + b"]"


def decode_held(raw: bytes) -> Held:
    if raw[:1] != b"[":
        return raw
    return tuple(orjson.dumps(member) for member in orjson.loads(raw))


def decode_meta(raw: Mapping[bytes, bytes]) -> PartMeta:
    meta = PartMeta(int(raw.get(VERSION_FIELD, b"0")))
    for field, value in raw.items():
        if field.startswith(TYPE_FIELD_PREFIX):
            meta.types[field[len(TYPE_FIELD_PREFIX):].decode()] = value.decode()
    return meta


def split_field(field: bytes) -> tuple[str, bytes]:
    """`<name>\\0<rest>` -> (name, rest)."""
    name, _, rest = field.partition(b"\0")
    return name.decode(), rest
