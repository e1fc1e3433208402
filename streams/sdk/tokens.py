"""Read tokens for the HTTP API: JWTs (RFC 7519) signed HS256, scoped to message-id patterns.

The chat backend mints one per user and room (`layer:///messages/940de862`, or
`layer:///rooms/r1/*` where a trailing `*` matches any rest) and hands it to the browser; the API
checks the signature with the same key, picked by the `kid` header.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import jwt

from msgstate.schemas.exceptions import ValidationError
from msgstate.schemas.limits import MAX_MESSAGE_ID
from msgstate.streams.engine.signing import SigningKey

ALGORITHM = "HS256"
MESSAGES_CLAIM = "messages"
# RFC 7518 section 3.2: an HS256 key is at least as long as the hash, 256 bits.
MIN_TOKEN_SECRET_BYTES = 32
MAX_PATTERN = MAX_MESSAGE_ID + 1  # an id and a trailing `*`


def check_patterns(patterns: object) -> list[str]:
    """The patterns as a list, or ValidationError: a non-empty list of 1-257 character strings."""
    if not isinstance(patterns, list | tuple) or not patterns:
        raise ValidationError(f"'{MESSAGES_CLAIM}' must be a non-empty list of message-id patterns")
    for pattern in patterns:
        if not isinstance(pattern, str) or not 1 <= len(pattern) <= MAX_PATTERN:
            raise ValidationError(f"a message-id pattern is a string of 1-{MAX_PATTERN} characters, "
                                  f"not {pattern!r}")
    return list(patterns)


def mint_token(key: SigningKey, messages: Sequence[str], ttl: float, *, now: float | None = None) -> str:
    """A bearer token that may read the messages matching `messages` for `ttl` seconds.

    `key` is one of the API's `MSGSTATE_HTTP_TOKEN_KEYS` (`parse_key("k1:base64secret")`); a
    pattern is a message id, or a prefix followed by `*`.
    """
    if len(key.secret) < MIN_TOKEN_SECRET_BYTES:
        raise ValidationError(f"token key {key.key_id}: the secret has {len(key.secret)} bytes; "
                              f"HS256 needs at least {MIN_TOKEN_SECRET_BYTES}")
    if not ttl > 0:
        raise ValidationError(f"ttl must be a positive number of seconds, not {ttl!r}")
    issued = int(time.time() if now is None else now)
    claims = {MESSAGES_CLAIM: check_patterns(list(messages)), "iat": issued, "exp": issued + math.ceil(ttl)}
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.key_id})
