"""Records of msgstate.responses (SPEC sections 2, 3a): the typed models and their decoder.

`decode_response` makes the whole-response checks of SPEC section 3 in their
order (too_large, malformed, invalid, unauthenticated) and returns a `Response`,
a `Deletion` or an `Erasure` (told apart by the record's `kind`), or a
rejection. Each change is checked on its own (`invalid_change` is decided here,
once); the rules that need state are the engine's.

The checks are written by hand, not with a schema library: this is the hot
path of every worker and of `msgstate replay`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, Final, NamedTuple

import orjson

from msgstate.schemas import rejections
from msgstate.schemas.limits import (
    DEFAULT_PART,
    INT_MAX,
    INT_MIN,
    MAX_CHANGE_DEPTH,
    MAX_CHANGES,
    MAX_IDENTITY_ID,
    MAX_MESSAGE_ID,
    MAX_NAME,
    MAX_PART_ID,
    MAX_RECORD_BYTES,
    MAX_RESPONSE_ID,
    MAX_STATUS_TEXT,
    MAX_VALUE_BYTES,
    NAME_CHARS,
)
from msgstate.schemas.rejections import Rejection
from msgstate.schemas.values import (
    FALSE,
    SURELY_SHORT,
    TRUE,
    checked_encoding,
    json_kind,
    value_problem,
)
from msgstate.schemas.wording import with_article

STATE_TYPES: Final = ("Set", "FWW", "LWW", "LWWN")
OPERATIONS: Final = ("add", "remove")

_TYPES = frozenset(STATE_TYPES)
_NAME = re.compile(f"[{NAME_CHARS}]{{1,{MAX_NAME}}}")
_SHORT_VALUE = SURELY_SHORT
_dumps = orjson.dumps
_loads = orjson.loads


_known_names: set[str] = set()  # names already found valid: most records reuse a few
_KNOWN_NAMES_MAX = 65_536


def is_state_name(name: Any) -> bool:
    """Whether `name` is a valid state name (1-128 of ASCII A-Z a-z 0-9 _ . : -)."""
    if type(name) is not str:
        return False
    if name in _known_names:
        return True
    if _NAME.fullmatch(name) is None:
        return False
    if len(_known_names) < _KNOWN_NAMES_MAX:
        _known_names.add(name)
    return True


class Change(NamedTuple):
    """One change of a response, checked for shape; `error` says why it is `invalid_change`.

    A tuple, so the engine can unpack it in one step on its hot path.
    """

    is_add: bool
    type: str
    name: str
    # The canonical encoding of the value, or b"" where the change carries none (an
    # LWWN remove without value; FWW and LWW removes, whose value is never read).
    # Never empty otherwise: every encoding has at least one byte.
    value: bytes
    raw: Any  # the change exactly as received, for rejections
    error: str | None = None

    @property
    def operation(self) -> str:
        return "add" if self.is_add else "remove"


class Response(NamedTuple):
    """A Response Message that passed the whole-response checks (not yet the dedupe)."""

    id: str
    message_id: str
    part_id: str
    identity_id: str
    changes: Sequence[Change]  # in array order
    status_text: str | None = None
    sent_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON data (changes as received, unknown fields dropped)."""
        return {
            "id": self.id,
            "message_id": self.message_id,
            "part_id": self.part_id,
            "identity_id": self.identity_id,
            "changes": [change.raw for change in self.changes],
            "status_text": self.status_text,
            "sent_at": self.sent_at,
        }


class Deletion(NamedTuple):
    """A `delete_message` record (SPEC section 3a) that passed the whole-record checks."""

    id: str
    message_id: str
    identity_id: str  # who deleted it
    status_text: str | None = None
    sent_at: int | None = None


class Erasure(NamedTuple):
    """An `erase_identity` record (SPEC section 3a) that passed the whole-record checks."""

    id: str
    identity_id: str  # whose values are erased
    status_text: str | None = None
    sent_at: int | None = None


Record = Response | Deletion | Erasure
KIND_RESPONSE: Final = "response"
KIND_DELETE: Final = "delete_message"
KIND_ERASE: Final = "erase_identity"
KINDS: Final = (KIND_RESPONSE, KIND_DELETE, KIND_ERASE)
# An event's `cause` (SPEC section 5): the kind of the record that made it.
CAUSES: Final = KINDS


_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (hot path)


def _invalid_change(raw: Any, error: str) -> Change:
    return Change(False, "", "", b"", raw, error)


def decode_change(raw: Any) -> Change:
    """Check one change as received (SPEC section 2); never raises."""
    if type(raw) is not dict:
        return _invalid_change(raw, f"the change is {json_kind(raw)}, not a JSON object")
    op = raw.get("operation")
    if op == "add":
        is_add = True
    elif op == "remove":
        is_add = False
    else:
        return _invalid_change(raw, 'the change\'s "operation" must be "add" or "remove"')
    kind = raw.get("type")
    if type(kind) is not str or kind not in _TYPES:
        return _invalid_change(raw, 'the change\'s "type" must be one of Set, FWW, LWW, LWWN')
    name = raw.get("name")
    if not is_state_name(name):
        return _invalid_change(
            raw,
            f'the change\'s "name" must be 1-{MAX_NAME} characters of A-Z a-z 0-9 _ . : -',
        )
    if is_add or kind == "Set":
        if "value" not in raw:
            return _invalid_change(raw, f"{with_article(kind)} {op} needs a value")
        encoded = checked_encoding(raw["value"])
        if encoded is None:
            return _invalid_change(raw, f"bad value: {value_problem(raw['value'])}")
    elif kind == "LWWN":
        value = raw.get("value")
        if value is None:
            encoded = b""
        else:
            encoded = checked_encoding(value)
            if encoded is None:
                return _invalid_change(raw, f"bad value: {value_problem(value)}")
    else:
        encoded = b""  # FWW / LWW remove: rejected by the rules whatever the value
    return _new(Change, (is_add, kind, name, encoded, raw, None))


# The well-formed (operation, type) pairs that need a value: the fast path takes only these.
_NEEDS_VALUE: Final = {
    ("add", "Set"): True,
    ("add", "FWW"): True,
    ("add", "LWW"): True,
    ("add", "LWWN"): True,
    ("remove", "Set"): False,
    ("remove", "LWWN"): False,
}
_change_fields = itemgetter("operation", "type", "name", "value")
_required_fields = itemgetter("id", "message_id", "identity_id", "changes")

# Encodings of values already seen: equal values share one bytes object, and the hot
# path skips orjson.dumps. Keyed per kind, so that 1 and True never meet. Bounded (only
# short strings, at most _CACHE_MAX of each kind: a few MB at worst) and never evicted.
_CACHE_MAX = 65_536
_CACHED_STR_MAX = 64
_str_encodings: dict[str, bytes] = {}
_int_encodings: dict[int, bytes] = {}


def _encoded_str(value: str) -> bytes | None:
    if len(value) > _SHORT_VALUE and len(value.encode()) > MAX_VALUE_BYTES:
        return None
    encoded = _dumps(value)
    if len(value) <= _CACHED_STR_MAX and len(_str_encodings) < _CACHE_MAX:
        _str_encodings[value] = encoded
    return encoded


def _encoded_int(value: int) -> bytes | None:
    if not INT_MIN <= value <= INT_MAX:
        return None
    encoded = _dumps(value)
    if len(_int_encodings) < _CACHE_MAX:
        _int_encodings[value] = encoded
    return encoded


def _decode_changes(changes: list[Any]) -> list[Change]:
    """decode_change over a list, with the common well-formed change inline (hot path).

    Only a change that passes every check here is decoded here; anything else
    (a missing key, an unknown or unhashable field, a new name, an odd value)
    goes through `decode_change`, which finds the reason. The result is the same
    either way (a property test holds them equal).
    """
    decoded: list[Change] = []
    append = decoded.append
    known = _known_names
    strs = _str_encodings
    ints = _int_encodings
    for raw in changes:
        if type(raw) is dict:
            try:
                op, kind, name, value = _change_fields(raw)
                is_add = _NEEDS_VALUE[op, kind]
            except (KeyError, TypeError):  # a key is missing, or a field is not hashable
                append(decode_change(raw))
                continue
            if type(name) is str and name in known:
                of = type(value)
                if of is str:
                    encoded = strs.get(value) or _encoded_str(value)
                elif of is bool:
                    encoded = TRUE if value else FALSE
                elif of is int:
                    encoded = ints.get(value) or _encoded_int(value)
                else:
                    encoded = None
                if encoded is not None:
                    append(_new(Change, (is_add, kind, name, encoded, raw, None)))
                    continue
        append(decode_change(raw))
    return decoded


_FLAT = frozenset({str, int, bool, float, type(None)})


def _too_deep_change(changes: list[Any]) -> int | None:
    """The index of the first change nested deeper than MAX_CHANGE_DEPTH levels, or None.

    A rejection echoes its change, so a change must stay encodable inside one.
    """
    for index, raw in enumerate(changes):
        kind = type(raw)
        if kind is dict:
            if all(type(value) in _FLAT for value in raw.values()):
                continue  # the usual change: one level
        elif kind is not list:
            continue
        pending = [(raw, 1)]
        while pending:
            container, depth = pending.pop()
            if depth > MAX_CHANGE_DEPTH:
                return index
            for item in container.values() if type(container) is dict else container:
                if type(item) is dict or type(item) is list:
                    pending.append((item, depth + 1))
    return None


def decode_response(raw: bytes, *, authentic: bool = True) -> Record | Rejection:
    """Decode one record value: a Response, Deletion or Erasure, or the rejection of the
    whole record.

    `authentic` is the signature verdict, decided by the caller (True when
    signing is off). `duplicate` and `message_deleted` need state and are the
    engine's to decide.
    """
    size = len(raw)
    if size > MAX_RECORD_BYTES:
        return rejections.too_large(size, MAX_RECORD_BYTES)
    try:
        record = _loads(raw)
    except orjson.JSONDecodeError as exc:
        return rejections.malformed(bytes(raw), f"the record is not UTF-8 JSON: {exc}")
    if type(record) is not dict:
        return rejections.malformed(
            bytes(raw), f"the record is {json_kind(record)}, not a JSON object"
        )
    if "kind" in record and record["kind"] != KIND_RESPONSE:
        return _decode_other(record, authentic)
    try:
        rid, mid, ident, changes = _required_fields(record)
    except KeyError:
        return rejections.of_record(record, rejections.INVALID, _invalid_detail(record))
    get = record.get
    part = get("part_id")
    status = get("status_text")
    sent_at = get("sent_at")
    # One combined test for the common, valid case; the slow path finds the reason.
    if not (
        type(rid) is str
        and 0 < len(rid) <= MAX_RESPONSE_ID
        and type(mid) is str
        and 0 < len(mid) <= MAX_MESSAGE_ID
        and type(ident) is str
        and 0 < len(ident) <= MAX_IDENTITY_ID
        and type(changes) is list
        and 0 < len(changes) <= MAX_CHANGES
        and (part is None or (type(part) is str and 0 < len(part) <= MAX_PART_ID))
        and (status is None or (type(status) is str and len(status) <= MAX_STATUS_TEXT))
        and (sent_at is None or (type(sent_at) is int and INT_MIN <= sent_at <= INT_MAX))
    ):
        return rejections.of_record(record, rejections.INVALID, _invalid_detail(record))
    deep = _too_deep_change(changes)
    if deep is not None:
        return rejections.of_record(
            record, rejections.INVALID,
            f"change {deep} is nested deeper than {MAX_CHANGE_DEPTH} levels",
        )
    if not authentic:
        return rejections.of_record(
            record, rejections.UNAUTHENTICATED, "the record's signature is missing or wrong"
        )
    return _new(
        Response,
        (
            rid,
            mid,
            DEFAULT_PART if part is None else part,
            ident,
            _decode_changes(changes),
            status,
            sent_at,
        ),
    )


_OPTIONAL_FIELDS = (
    ("status_text", 0, MAX_STATUS_TEXT, True),
)


def _decode_other(record: dict[str, Any], authentic: bool) -> Record | Rejection:
    """A record whose `kind` is not "response": a deletion, an erasure, or invalid."""
    kind = record["kind"]
    if kind == KIND_DELETE:
        fields: tuple[tuple[str, int, int, bool], ...] = (
            ("id", 1, MAX_RESPONSE_ID, False),
            ("message_id", 1, MAX_MESSAGE_ID, False),
            ("identity_id", 1, MAX_IDENTITY_ID, False),
        )
    elif kind == KIND_ERASE:
        fields = (("id", 1, MAX_RESPONSE_ID, False), ("identity_id", 1, MAX_IDENTITY_ID, False))
    else:
        shown = orjson.dumps(kind).decode() if type(kind) is str else json_kind(kind)
        return rejections.of_record(
            record, rejections.INVALID,
            f'"kind" is {shown}; it must be one of {", ".join(KINDS)} (or absent)',
        )
    for key, low, high, optional in fields + _OPTIONAL_FIELDS:
        problem = _text_problem(record, key, low, high, optional)
        if problem:
            return rejections.of_record(record, rejections.INVALID, problem)
    sent_at = record.get("sent_at")
    if sent_at is not None and not (type(sent_at) is int and INT_MIN <= sent_at <= INT_MAX):
        return rejections.of_record(record, rejections.INVALID, _sent_at_problem(sent_at))
    if not authentic:
        return rejections.of_record(
            record, rejections.UNAUTHENTICATED, "the record's signature is missing or wrong"
        )
    status = record.get("status_text")
    if kind == KIND_DELETE:
        return Deletion(record["id"], record["message_id"], record["identity_id"], status, sent_at)
    return Erasure(record["id"], record["identity_id"], status, sent_at)


def _sent_at_problem(sent_at: Any) -> str:
    what = "out of range" if type(sent_at) is int else json_kind(sent_at)
    return f'"sent_at" is {what}; it must be an integer in the 64-bit signed range or null'


def _text_problem(record: dict[str, Any], key: str, low: int, high: int, optional: bool) -> str:
    value = record.get(key)
    if value is None and optional:
        return ""
    if type(value) is str and low <= len(value) <= high:
        return ""
    what = (
        f"a string of {low}-{high} characters" if low else f"a string of at most {high} characters"
    )
    if optional:
        what += " or null"
    if key not in record:
        return f'"{key}" is missing; it must be {what}'
    if type(value) is str:
        return f'"{key}" has {len(value)} characters; it must be {what}'
    return f'"{key}" is {json_kind(value)}; it must be {what}'


def _invalid_detail(record: dict[str, Any]) -> str:
    """Why a record that failed the fast check is invalid (the first field at fault)."""
    for key, low, high, optional in (
        ("id", 1, MAX_RESPONSE_ID, False),
        ("message_id", 1, MAX_MESSAGE_ID, False),
        ("part_id", 1, MAX_PART_ID, True),
        ("identity_id", 1, MAX_IDENTITY_ID, False),
    ):
        problem = _text_problem(record, key, low, high, optional)
        if problem:
            return problem
    changes = record.get("changes")
    if type(changes) is not list:
        if "changes" not in record:
            return f'"changes" is missing; it must be an array of 1-{MAX_CHANGES} changes'
        return f'"changes" is {json_kind(changes)}; it must be an array of 1-{MAX_CHANGES} changes'
    if not 0 < len(changes) <= MAX_CHANGES:
        return f'"changes" has {len(changes)} items; it must have 1-{MAX_CHANGES}'
    problem = _text_problem(record, "status_text", 0, MAX_STATUS_TEXT, True)
    if problem:
        return problem
    sent_at = record.get("sent_at")
    if sent_at is not None and not (type(sent_at) is int and INT_MIN <= sent_at <= INT_MAX):
        return _sent_at_problem(sent_at)
    return "the record breaks the Response Message rules"
