"""Rejection records (SPEC section 6) and their reason codes (SPEC section 3)."""

from __future__ import annotations

import base64
from typing import Any, Final

Rejection = dict[str, Any]

# Whole-response reasons, in the order they are checked.
TOO_LARGE: Final = "too_large"
MALFORMED: Final = "malformed"
INVALID: Final = "invalid"
UNAUTHENTICATED: Final = "unauthenticated"
DUPLICATE: Final = "duplicate"
MESSAGE_DELETED: Final = "message_deleted"  # v1.1 (SPEC section 3a)
RESPONSE_REASONS: Final = (
    TOO_LARGE, MALFORMED, INVALID, UNAUTHENTICATED, DUPLICATE, MESSAGE_DELETED
)

# Change reasons, in the order they are checked.
INVALID_CHANGE: Final = "invalid_change"
TYPE_MISMATCH: Final = "type_mismatch"
REMOVE_NOT_ALLOWED: Final = "remove_not_allowed"
FWW_CONFLICT: Final = "fww_conflict"
LIMIT_EXCEEDED: Final = "limit_exceeded"
CHANGE_REASONS: Final = (
    INVALID_CHANGE,
    TYPE_MISMATCH,
    REMOVE_NOT_ALLOWED,
    FWW_CONFLICT,
    LIMIT_EXCEEDED,
)

REASONS: Final = RESPONSE_REASONS + CHANGE_REASONS


def rejection(
    reason: str,
    detail: str,
    *,
    response_id: str | None = None,
    message_id: str | None = None,
    identity_id: str | None = None,
    change_index: int | None = None,
    change: Any = None,
    raw: str | None = None,
) -> Rejection:
    """A rejection with every key of SPEC section 6, in its order."""
    return {
        "response_id": response_id,
        "message_id": message_id,
        "identity_id": identity_id,
        "reason": reason,
        "detail": detail,
        "change_index": change_index,
        "change": change,
        "raw": raw,
    }


def too_large(size: int, limit: int) -> Rejection:
    """A record over the size limit: nothing of it is read."""
    return rejection(TOO_LARGE, f"the record is {size} bytes, over the limit of {limit}")


def malformed(raw: bytes, why: str) -> Rejection:
    """A record that is not a UTF-8 JSON object; its bytes travel in base64."""
    return rejection(MALFORMED, why, raw=base64.b64encode(raw).decode("ascii"))


def of_record(record: dict[str, Any], reason: str, detail: str) -> Rejection:
    """A whole-response rejection of a decoded record, copying its ids when they are strings."""
    rid = record.get("id")
    mid = record.get("message_id")
    ident = record.get("identity_id")
    return rejection(
        reason,
        detail,
        response_id=rid if type(rid) is str else None,
        message_id=mid if type(mid) is str else None,
        identity_id=ident if type(ident) is str else None,
    )
