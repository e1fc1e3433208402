"""A round's outputs as they wait in a partition's outbox: events, rejections and state
changelog records (streams/rounds/changelog.py), framed.

An outbox entry holds one round's outputs for one input partition (`pack_outbox`); entries of
the format before rounds (one record each) are still read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

EVENT = b"e"
REJECTION = b"r"
STATE = b"s"  # a changelog record; an empty value is a tombstone
_LEN = struct.Struct(">I")
_FRAME = struct.Struct(">cII")  # kind, key length, value length
_ROUND = b"B"  # an outbox entry holding a round's outputs for one partition


class OutRecord(NamedTuple):
    kind: bytes  # EVENT, REJECTION or STATE
    key: bytes  # b"" for a record without a message id
    value: bytes

    def encode(self) -> bytes:
        """One record as an outbox entry of its own (the format before rounds; still read)."""
        return self.kind + _LEN.pack(len(self.key)) + self.key + self.value

    @classmethod
    def decode(cls, raw: bytes) -> OutRecord:
        (size,) = _LEN.unpack_from(raw, 1)
        return cls(raw[:1], raw[5:5 + size], raw[5 + size:])


def pack_frames(outputs: Iterable[OutRecord]) -> bytes:
    """Records as frames of an outbox entry (see `pack_outbox`)."""
    frame = _FRAME.pack
    parts: list[bytes] = []
    for kind, key, value in outputs:
        parts += (frame(kind, len(key), len(value)), key, value)
    return b"".join(parts)


def pack_outbox(outputs: Iterable[OutRecord], frames: bytes = b"") -> bytes:
    """A partition's outputs of one round as one outbox entry; `frames`: more of them, packed
    by `pack_frames` (or alike), last."""
    return b"".join((_ROUND, pack_frames(outputs), frames))


def unpack_outbox(entry: bytes) -> list[OutRecord]:
    """The records of one outbox entry, in order (either format)."""
    if entry[:1] != _ROUND:
        return [OutRecord.decode(entry)]
    records = []
    at = 1
    size = _FRAME.size
    while at < len(entry):
        kind, key_size, value_size = _FRAME.unpack_from(entry, at)
        at += size
        key = entry[at:at + key_size]
        at += key_size
        records.append(OutRecord(kind, key, entry[at:at + value_size]))
        at += value_size
    return records
