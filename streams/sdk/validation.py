"""Local checks of what a model is about to send, with the workers' own rules (schemas/), so
a mistake raises ValidationError in the caller instead of becoming a rejection later."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from msgstate.schemas.exceptions import ValidationError
from msgstate.schemas.limits import MAX_NAMES, MAX_RECORD_BYTES
from msgstate.schemas.records import decode_change, decode_response
from msgstate.schemas.rejections import Rejection
from msgstate.schemas.wording import with_article

NO_VALUE = object()  # a remove without a value


def make_change(registry: Mapping[str, str], operation: str, name: str, value: Any,
                owner: str) -> dict[str, Any]:
    """The wire change for `operation` on a registered state; ValidationError if the workers
    would reject it whatever the state (`invalid_change`, `type_mismatch` with the registry,
    `remove_not_allowed`)."""
    kind = registry.get(name)
    if kind is None:
        raise ValidationError(f"state {name!r} is not registered for {owner}: register it in "
                              "register_all_states() or in custom_states")
    if operation == "remove" and kind in ("FWW", "LWW"):
        raise ValidationError(f"state {name} is {kind}: its values cannot be removed "
                              "(remove_not_allowed)")
    change: dict[str, Any] = {"operation": operation, "type": kind, "name": name}
    if value is not NO_VALUE:
        change["value"] = value
    decoded = decode_change(change)
    if decoded.error is not None:
        raise ValidationError(f"state {name}: {decoded.error}")
    return change


def check_against_summary(summary: Mapping[str, Any] | None, change: Mapping[str, Any],
                          identity_id: str, pending: list[dict[str, Any]]) -> None:
    """Rejections the loaded summary already decides: a state fixed to another type, an FWW
    value already held, one state name too many. These facts never revert, so a stale summary
    cannot make a wrong call."""
    name, kind = change["name"], change["type"]
    states = (summary or {}).get("states", {})
    known = states.get(name)
    if known is not None and known["type"] != kind:
        raise ValidationError(f"state {name} is {with_article(known['type'])} state on this message, "
                              f"not {kind} (type_mismatch)")
    if kind == "FWW" and change["operation"] == "add":
        held = known is not None and identity_id in known["values"]
        if held or any(c["name"] == name and c["operation"] == "add" for c in pending):
            raise ValidationError(f"state {name} is first writer wins and {identity_id} already "
                                  "has a value (fww_conflict)")
    if known is None:
        new_names = {c["name"] for c in pending if c["name"] not in states} | {name}
        if len(states) + len(new_names) > MAX_NAMES:
            raise ValidationError(f"this message part already has {len(states)} states; "
                                  f"{name} would pass the limit of {MAX_NAMES} (limit_exceeded)")


def encode_record(record: Mapping[str, Any]) -> bytes:
    """The record's bytes, once the workers' whole-record checks pass."""
    encoded = orjson.dumps(record)
    decoded = decode_response(encoded)
    if isinstance(decoded, dict):
        rejection: Rejection = decoded
        raise ValidationError(f"the record would be rejected {rejection['reason']}: "
                              f"{rejection['detail']}")
    return encoded


def record_size(record: Mapping[str, Any]) -> int:
    return len(orjson.dumps(record))


def fits(record: Mapping[str, Any]) -> bool:
    return record_size(record) <= MAX_RECORD_BYTES
