"""JSON Schemas (draft 2020-12) of the wire records, built from the same limits as the code.

`python -m schemas.json_schema` rewrites `schemas/json/*.schema.json`; a unit
test fails when the files differ from what this module builds, and property
tests check that the schemas and the Python validators agree.

Two rules of SPEC section 2 are about how JSON is written, which JSON Schema
cannot see (it compares numbers and code points): an integer must be written
without fraction or exponent (`1.0` and `1e2` are not integers), and a string
value is limited in UTF-8 bytes. The schemas carry the second as the keyword
`x-maxUtf8Bytes` (ignored by plain validators) and say both in `$comment`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from msgstate.schemas.limits import (
    INT_MAX,
    INT_MIN,
    MAX_CHANGES,
    MAX_CHAT_ID,
    MAX_IDENTITY_ID,
    MAX_MEMBERS,
    MAX_MESSAGE_ID,
    MAX_NAME,
    MAX_NAMES,
    MAX_PART_ID,
    MAX_RESPONSE_ID,
    MAX_STATUS_TEXT,
    MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH,
    NAME_CHARS,
)
from msgstate.schemas.records import CAUSES, KIND_DELETE, KIND_ERASE, KIND_RESPONSE, OPERATIONS, STATE_TYPES
from msgstate.schemas.rejections import CHANGE_REASONS, MALFORMED, REASONS, RESPONSE_REASONS, TOO_LARGE

DRAFT = "https://json-schema.org/draft/2020-12/schema"
DIRECTORY = Path(__file__).parent / "json"
_INTEGER_NOTE = (
    "Integers are written without fraction or exponent: 1.0 and 1e2 are not integers, "
    "and booleans are never integers."
)
_CONTAINER_NOTE = (
    " An array or object value's limits are on its nesting (x-maxDepth, the value itself "
    "being level 1) and on the bytes of its canonical encoding (x-maxCanonicalBytes: JSON "
    "with no whitespace, object keys sorted by code point, as orjson writes it)."
)
Schema = dict[str, Any]


def _text(low: int, high: int, *, nullable: bool = False) -> Schema:
    schema: Schema = {"type": ["string", "null"] if nullable else "string"}
    if low:
        schema["minLength"] = low
    schema["maxLength"] = high
    return schema


def _int64(minimum: int = INT_MIN) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": INT_MAX}


def _defs() -> dict[str, Schema]:
    return {
        "name": {
            "description": f"A state name: 1-{MAX_NAME} of ASCII A-Z a-z 0-9 _ . : -",
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_NAME,
            # "No character outside the set" means the same in every regex dialect.
            "not": {"pattern": f"[^{NAME_CHARS}]"},
        },
        "value": {
            "description": (
                "A state value (v1.1): any JSON value but null. A string of at most "
                f"{MAX_VALUE_BYTES} UTF-8 bytes, an integer in the 64-bit signed range, a "
                "boolean, a float below 2^63 in magnitude, or an array or object of JSON data "
                f"(null allowed inside) nesting at most {MAX_VALUE_DEPTH} levels, whose "
                f"canonical encoding is at most {MAX_VALUE_BYTES} bytes"
            ),
            "$comment": _INTEGER_NOTE + _CONTAINER_NOTE,
            "anyOf": [
                {
                    "type": "string",
                    "maxLength": MAX_VALUE_BYTES,
                    "x-maxUtf8Bytes": MAX_VALUE_BYTES,
                },
                {"$ref": "#/$defs/number"},
                {"type": "boolean"},
                {
                    "type": ["array", "object"],
                    "x-maxDepth": MAX_VALUE_DEPTH,
                    "x-maxCanonicalBytes": MAX_VALUE_BYTES,
                    "items": {"$ref": "#/$defs/data"},
                    "additionalProperties": {"$ref": "#/$defs/data"},
                },
            ],
        },
        "number": {
            "description": "An integer in the 64-bit signed range, or a float below 2^63 in "
            "magnitude",
            "anyOf": [
                _int64(),
                {"type": "number", "exclusiveMinimum": INT_MIN, "exclusiveMaximum": -INT_MIN},
            ],
        },
        "data": {
            "description": "JSON data inside an array or object value",
            "anyOf": [
                {"type": ["null", "boolean", "string"]},
                {"$ref": "#/$defs/number"},
                {
                    "type": ["array", "object"],
                    "items": {"$ref": "#/$defs/data"},
                    "additionalProperties": {"$ref": "#/$defs/data"},
                },
            ],
        },
        "members": {
            "description": "A Set's members for one identity, in the order they were added",
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_MEMBERS,
            "x-uniqueEncodings": True,
            "$comment": (
                "Members are distinct by their canonical encodings (x-uniqueEncodings): 1, "
                "1.0 and true are three members, which uniqueItems would not allow."
            ),
            "items": {"$ref": "#/$defs/value"},
        },
        "state_type": {"enum": list(STATE_TYPES)},
    }


def _base(name: str, title: str, description: str, defs: list[str]) -> Schema:
    every = _defs()
    schema: Schema = {
        "$schema": DRAFT,
        "$id": f"urn:msgstate:v1:{name}",
        "title": title,
        "description": description,
    }
    if defs:
        schema["$defs"] = {key: every[key] for key in defs}
    return schema


def _needs_value(operation: str, kind: str | None = None) -> Schema:
    condition: Schema = {"properties": {"operation": {"const": operation}}}
    if kind is not None:
        condition["properties"]["type"] = {"const": kind}
    return {
        "if": condition,
        "then": {"required": ["value"], "properties": {"value": {"$ref": "#/$defs/value"}}},
    }


def _change_body() -> Schema:
    return {
        "type": "object",
        "required": ["operation", "type", "name"],
        "properties": {
            "operation": {"enum": list(OPERATIONS)},
            "type": {"$ref": "#/$defs/state_type"},
            "name": {"$ref": "#/$defs/name"},
            "value": True,
        },
        "allOf": [
            _needs_value("add"),
            _needs_value("remove", "Set"),
            {
                "if": {"properties": {"operation": {"const": "remove"}, "type": {"const": "LWWN"}}},
                "then": {
                    "properties": {
                        "value": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/value"}]}
                    }
                },
            },
        ],
        "$comment": (
            "An FWW or LWW remove has the right shape (its value is not read) but is always "
            "rejected remove_not_allowed."
        ),
    }


def change_schema() -> Schema:
    schema = _base(
        "change",
        "Change",
        "One change of a Response Message (SPEC section 2). A change that breaks this "
        "schema is rejected invalid_change; the other changes of its response still apply.",
        ["name", "value", "number", "data", "state_type"],
    )
    return {**schema, **_change_body()}


def response_message_schema() -> Schema:
    schema = _base(
        "response-message",
        "Response Message",
        "A record of the msgstate.responses topic whose changes are all well formed "
        "(SPEC section 2). Unknown fields are ignored.",
        ["name", "value", "number", "data", "state_type"],
    )
    schema["$defs"]["change"] = _change_body()
    schema["$comment"] = _INTEGER_NOTE
    schema.update(
        {
            "type": "object",
            "required": ["id", "message_id", "identity_id", "changes"],
            "properties": {
                "id": _text(1, MAX_RESPONSE_ID),
                "message_id": _text(1, MAX_MESSAGE_ID),
                "part_id": _text(1, MAX_PART_ID, nullable=True),
                "identity_id": _text(1, MAX_IDENTITY_ID),
                "changes": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_CHANGES,
                    "items": {"$ref": "#/$defs/change"},
                },
                "status_text": _text(0, MAX_STATUS_TEXT, nullable=True),
                "sent_at": {"anyOf": [_int64(), {"type": "null"}]},
                "kind": {
                    "description": "v1.1: absent or \"response\"; the other kinds are the "
                    "delete-message and erase-identity records",
                    "const": KIND_RESPONSE,
                },
            },
        }
    )
    return schema


def _state() -> Schema:
    return {
        "type": "object",
        "required": ["type", "values", "tally"],
        "properties": {
            "type": {"$ref": "#/$defs/state_type"},
            "values": {
                "type": "object",
                "propertyNames": _text(1, MAX_IDENTITY_ID),
            },
            "tally": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["value", "count"],
                    "properties": {
                        "value": {"$ref": "#/$defs/value"},
                        "count": {"type": "integer", "minimum": 1},
                    },
                    "additionalProperties": False,
                },
            },
            "clipped": {"const": True},
            "identities": {"type": "integer", "minimum": 0},
        },
        "dependentRequired": {"clipped": ["identities"], "identities": ["clipped"]},
        "if": {"properties": {"type": {"const": "Set"}}},
        "then": {
            "properties": {"values": {"additionalProperties": {"$ref": "#/$defs/members"}}}
        },
        "else": {"properties": {"values": {"additionalProperties": {"$ref": "#/$defs/value"}}}},
        "additionalProperties": False,
    }


def response_summary_schema() -> Schema:
    schema = _base(
        "response-summary",
        "Response Summary",
        "The read model of one (message, part) (SPEC section 4). Tally order: count "
        "descending, then false, true, numbers ascending (an integer before a float of equal "
        "value), strings by code point, arrays, objects (by canonical encoding). A part of a "
        "deleted message (SPEC section 3a) has no states and deleted: true.",
        ["name", "value", "number", "data", "members", "state_type"],
    )
    schema["$defs"]["state"] = _state()
    schema.update(
        {
            "type": "object",
            "required": ["message_id", "part_id", "version", "states"],
            "properties": {
                "message_id": _text(1, MAX_MESSAGE_ID),
                "part_id": _text(1, MAX_PART_ID),
                "version": _int64(0),
                "states": {
                    "type": "object",
                    "maxProperties": MAX_NAMES,
                    "propertyNames": {"$ref": "#/$defs/name"},
                    "additionalProperties": {"$ref": "#/$defs/state"},
                },
                "deleted": {"const": True},
            },
            "if": {"required": ["deleted"]},
            "then": {"properties": {"states": {"maxProperties": 0}}},
            "additionalProperties": False,
        }
    )
    return schema


def summary_change_event_schema() -> Schema:
    schema = _base(
        "summary-change-event",
        "Summary-change event",
        "One (response, state name) whose value for the author changed (SPEC section 5), "
        "or one holding removed by a deletion or an erasure (SPEC section 3a). old and new "
        "are the holder's value: a list for a Set, null for none.",
        ["name", "value", "number", "data", "members", "state_type"],
    )
    scalar = {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/value"}]}
    members = {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/members"}]}
    schema.update(
        {
            "type": "object",
            "required": [
                "event_id",
                "message_id",
                "part_id",
                "response_id",
                "identity_id",
                "name",
                "type",
                "old",
                "new",
                "version",
                "status_text",
                "cause",
            ],
            "properties": {
                "event_id": {
                    "type": "string",
                    "description": 'message_id + "/" + response_id + "/" + name; for a '
                    'deletion or an erasure, message_id + "/" + response_id + "/" + part_id + '
                    '"/" + name + "/" + identity_id',
                },
                "message_id": _text(1, MAX_MESSAGE_ID),
                "part_id": _text(1, MAX_PART_ID),
                "response_id": _text(1, MAX_RESPONSE_ID),
                "identity_id": _text(1, MAX_IDENTITY_ID),
                "name": {"$ref": "#/$defs/name"},
                "type": {"$ref": "#/$defs/state_type"},
                "old": True,
                "new": True,
                "version": _int64(1),
                "status_text": _text(0, MAX_STATUS_TEXT, nullable=True),
                "cause": {
                    "description": "What made the change (v1.1): a response, or the record "
                    "of a deletion or an erasure (then new is null)",
                    "enum": list(CAUSES),
                },
            },
            "if": {"properties": {"type": {"const": "Set"}}},
            "then": {"properties": {"old": members, "new": members}},
            "else": {"properties": {"old": scalar, "new": scalar}},
            "additionalProperties": False,
        }
    )
    return schema


def rejection_schema() -> Schema:
    schema = _base(
        "rejection",
        "Rejection",
        "A record, or one change of it, that was not applied, with the reason (SPEC "
        "section 6). The pipeline adds partition and offset; replay has neither.",
        [],
    )
    unread = {"const": None}
    schema.update(
        {
            "type": "object",
            "required": [
                "response_id",
                "message_id",
                "identity_id",
                "reason",
                "detail",
                "change_index",
                "change",
                "raw",
            ],
            "properties": {
                "response_id": {"type": ["string", "null"]},
                "message_id": {"type": ["string", "null"]},
                "identity_id": {"type": ["string", "null"]},
                "reason": {"enum": list(REASONS)},
                "detail": {"type": "string"},
                "change_index": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "maximum": MAX_CHANGES - 1,
                },
                "change": True,
                "raw": {"type": ["string", "null"], "contentEncoding": "base64"},
                "partition": {"type": "integer", "minimum": 0},
                "offset": {"type": "integer", "minimum": 0},
            },
            "allOf": [
                {
                    "if": {"properties": {"reason": {"enum": list(CHANGE_REASONS)}}},
                    "then": {"properties": {"change_index": {"type": "integer"}}},
                },
                {
                    "if": {"properties": {"reason": {"enum": list(RESPONSE_REASONS)}}},
                    "then": {"properties": {"change_index": unread, "change": unread}},
                },
                {
                    "if": {"properties": {"reason": {"const": MALFORMED}}},
                    "then": {"properties": {"raw": {"type": "string"}}},
                    "else": {"properties": {"raw": unread}},
                },
                {
                    "if": {"properties": {"reason": {"enum": [TOO_LARGE, MALFORMED]}}},
                    "then": {
                        "properties": {
                            "response_id": unread,
                            "message_id": unread,
                            "identity_id": unread,
                        }
                    },
                },
            ],
            "additionalProperties": False,
        }
    )
    return schema


def chat_message_event_schema() -> Schema:
    schema = _base(
        "chat-message-event",
        "Chat-message event",
        "A record of the msgstate.messages topic: the core of Rocket.Chat's IMessage "
        "(SPEC section 8). Other fields are allowed and passed to apps untouched.",
        [],
    )
    schema["$comment"] = _INTEGER_NOTE
    schema.update(
        {
            "type": "object",
            "required": ["id", "room_id", "sender_id", "text", "ts"],
            "properties": {
                "id": _text(1, MAX_CHAT_ID),
                "room_id": _text(1, MAX_CHAT_ID),
                "sender_id": _text(1, MAX_CHAT_ID),
                "text": {"type": "string"},
                "ts": {**_int64(), "description": "milliseconds since the epoch"},
            },
        }
    )
    return schema


def _removal_schema(name: str, title: str, description: str, kind: str,
                    ids: dict[str, Schema]) -> Schema:
    schema = _base(name, title, description, [])
    schema["$comment"] = _INTEGER_NOTE
    schema.update(
        {
            "type": "object",
            "required": ["kind", *ids],
            "properties": {
                "kind": {"const": kind},
                **ids,
                "status_text": _text(0, MAX_STATUS_TEXT, nullable=True),
                "sent_at": {"anyOf": [_int64(), {"type": "null"}]},
            },
        }
    )
    return schema


def delete_message_schema() -> Schema:
    return _removal_schema(
        "delete-message",
        "Deletion of a message",
        "A record of the msgstate.responses topic, keyed by message_id (SPEC section 3a): "
        "every holding of the message is removed, and every later record for it is rejected "
        "message_deleted. identity_id is who deleted it. Unknown fields are ignored.",
        KIND_DELETE,
        {
            "id": _text(1, MAX_RESPONSE_ID),
            "message_id": _text(1, MAX_MESSAGE_ID),
            "identity_id": _text(1, MAX_IDENTITY_ID),
        },
    )


def erase_identity_schema() -> Schema:
    return _removal_schema(
        "erase-identity",
        "Erasure of an identity",
        "A record of the msgstate.responses topic with an empty key, published once to every "
        "partition with the same id (SPEC section 3a): the identity's every value is removed "
        "from every message not deleted. Unknown fields are ignored.",
        KIND_ERASE,
        {"id": _text(1, MAX_RESPONSE_ID), "identity_id": _text(1, MAX_IDENTITY_ID)},
    )


SCHEMAS = {
    "response-message": response_message_schema,
    "delete-message": delete_message_schema,
    "erase-identity": erase_identity_schema,
    "change": change_schema,
    "response-summary": response_summary_schema,
    "summary-change-event": summary_change_event_schema,
    "rejection": rejection_schema,
    "chat-message-event": chat_message_event_schema,
}


def render(name: str) -> bytes:
    """The file content of one schema: indented JSON, keys in a stable order."""
    return orjson.dumps(SCHEMAS[name](), option=orjson.OPT_INDENT_2) + b"\n"


def path_of(name: str, directory: Path = DIRECTORY) -> Path:
    return directory / f"{name}.schema.json"


def load(name: str) -> Schema:
    """One schema as shipped in the package."""
    schema: Schema = orjson.loads(path_of(name).read_bytes())
    return schema


def write_all(directory: Path = DIRECTORY) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SCHEMAS:
        path = path_of(name, directory)
        path.write_bytes(render(name))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else DIRECTORY):
        print(path)
