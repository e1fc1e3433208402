"""App persistence records (SPEC section 8): associations, records, their checks and Redis keys.

Rocket.Chat's `RocketChatAssociationRecord(model, id)` with its eight models; data are JSON
objects. In Redis, every key of one app carries the app name as its hash tag, so one app's
keys live on one Redis Cluster slot and one script can touch all of them:

    <prefix>:app:{<app>}:ids                   set   every record id of the app
    <prefix>:app:{<app>}:rec:<id>              hash  top-level field -> its JSON value
    <prefix>:app:{<app>}:links:<id>            set   the record's associations, "<model>:<id>"
    <prefix>:app:{<app>}:assoc:<model>:<id>    set   ids of the records with that association
    <prefix>:app:{<app>}:rev                   hash  record id -> revision (bumped by every write)
    <prefix>:app:{<app>}:done                  zset  once tokens already applied (newest kept)
    <prefix>:app:{<app>}:seq                   int   the score of the next once token
    <prefix>:app:{<app>}:dead                  stream handler failures (dead letters)

Top-level fields are kept one per hash field so that an increment is a plain HINCRBY: a
JSON integer is written the way Redis writes integers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from msgstate.schemas.exceptions import ValidationError
from msgstate.schemas.limits import MAX_RECORD_BYTES

MAX_RECORD_ID = 256
MAX_ASSOCIATION_ID = 256
MAX_ASSOCIATIONS = 32
APP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class AssociationModel(StrEnum):
    """Rocket.Chat's `RocketChatAssociationModel`."""

    ROOM = "room"
    DISCUSSION = "discussion"
    MESSAGE = "message"
    LIVECHAT_MESSAGE = "livechat-message"
    USER = "user"
    FILE = "file"
    MISC = "misc"
    VIDEO_CONFERENCE = "video-conference"


@dataclass(frozen=True, slots=True)
class AssociationRecord:
    """What a record is about: `(model, id)`, e.g. `(room, GENERAL)` or `(misc, message-count)`."""

    model: AssociationModel
    id: str

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "model", AssociationModel(self.model))
        except ValueError:
            models = ", ".join(m.value for m in AssociationModel)
            raise ValidationError(f"unknown association model {self.model!r}; one of: {models}") from None
        if type(self.id) is not str or not 0 < len(self.id) <= MAX_ASSOCIATION_ID:
            raise ValidationError(f"an association id is a string of 1-{MAX_ASSOCIATION_ID} characters, "
                                  f"not {self.id!r}")

    @classmethod
    def parse(cls, text: str) -> AssociationRecord:
        """`"room:GENERAL"` -> AssociationRecord(ROOM, "GENERAL") (the id may hold colons)."""
        model, sep, rid = text.partition(":")
        if not sep:
            raise ValidationError(f"an association is MODEL:ID, not {text!r}")
        return cls(model, rid)  # type: ignore[arg-type]  # __post_init__ checks and converts it

    def __str__(self) -> str:
        return f"{self.model.value}:{self.id}"


@dataclass(frozen=True, slots=True)
class AppRecord:
    """A record with its id, its data and its associations (reads that return ids give these)."""

    id: str
    data: dict[str, Any]
    associations: frozenset[AssociationRecord] = field(default_factory=frozenset)
    revision: int = 0  # how many writes the record has seen


def check_app_name(name: str) -> str:
    if type(name) is not str or not APP_NAME.fullmatch(name):
        raise ValidationError(f"an app name is 1-64 characters of A-Z a-z 0-9 _ . -, not {name!r}")
    return name


def check_record_id(record_id: str) -> str:
    if type(record_id) is not str or not 0 < len(record_id) <= MAX_RECORD_ID:
        raise ValidationError(f"a record id is a string of 1-{MAX_RECORD_ID} characters, not {record_id!r}")
    return record_id


def check_associations(associations: Iterable[AssociationRecord]) -> list[str]:
    """The associations as "model:id" strings, without repeats; at least one."""
    out: list[str] = []
    for a in associations:
        if not isinstance(a, AssociationRecord):
            raise ValidationError(f"an association is an AssociationRecord, not {a!r}")
        if str(a) not in out:
            out.append(str(a))
    if not out:
        raise ValidationError("at least one association is needed")
    if len(out) > MAX_ASSOCIATIONS:
        raise ValidationError(f"a record has at most {MAX_ASSOCIATIONS} associations, not {len(out)}")
    return out


def encode_data(data: Mapping[str, Any]) -> list[bytes | str]:
    """A JSON object as flat (field, JSON value) pairs; ValidationError when it is not one or too big."""
    if not isinstance(data, Mapping):
        raise ValidationError(f"record data is a JSON object (a dict), not {type(data).__name__}")
    try:
        whole = orjson.dumps(data)
    except TypeError as exc:
        raise ValidationError(f"record data is not JSON: {exc}") from exc
    if len(whole) > MAX_RECORD_BYTES:
        raise ValidationError(f"record data is {len(whole)} bytes as JSON; at most {MAX_RECORD_BYTES}")
    flat: list[bytes | str] = []
    for key, value in data.items():
        flat += [key, orjson.dumps(value)]
    return flat


def decode_data(raw: Mapping[bytes, bytes] | list[bytes]) -> dict[str, Any]:
    """A record hash (HGETALL, as a mapping or a flat list) back into its JSON object."""
    if isinstance(raw, list):
        return {raw[i].decode(): orjson.loads(raw[i + 1]) for i in range(0, len(raw), 2)}
    return {key.decode(): orjson.loads(value) for key, value in raw.items()}

