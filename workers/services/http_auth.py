"""Who may read: the HTTP API's bearer tokens, and whether one covers a message.

A token is a JWT signed HS256 with a key of `MSGSTATE_HTTP_TOKEN_KEYS`, picked by its `kid`
header (the SDK's `mint_token` makes them). It must carry `exp` and `messages`, a list of
message-id patterns: an id, or a prefix followed by `*`. PyJWT checks the signature, the
algorithm and the times; this module picks the key and reads the scope. No aiohttp here: the
API maps a refusal to its HTTP answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

from msgstate.schemas.exceptions import ConfigError, MsgstateError, ValidationError
from msgstate.streams.engine.signing import SigningKey
from msgstate.streams.sdk.tokens import ALGORITHM, MESSAGES_CLAIM, check_patterns

LEEWAY = 5  # seconds of clock skew allowed between the backend that mints and this API
MAX_TOKEN = 4096  # characters; longer ones are refused unread (a query must fit a request line)


class TokenRefused(MsgstateError):
    """A request's bearer token is missing or does not verify; `error` is RFC 6750's code."""

    def __init__(self, detail: str, error: str = "invalid_token") -> None:
        super().__init__(detail)
        self.detail = detail
        self.error = error


def matches(pattern: str, message_id: str) -> bool:
    """A trailing `*` matches any rest, even none; any other character only itself."""
    if pattern.endswith("*"):
        return message_id.startswith(pattern[:-1])
    return message_id == pattern


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows, and until when."""

    patterns: tuple[str, ...]
    until: float  # Unix time the token stops verifying: `exp` plus the leeway
    token_id: bytes  # its signature: the same token, however its text is spelled

    def may_read(self, message_id: str) -> bool:
        return any(matches(pattern, message_id) for pattern in self.patterns)


class TokenVerifier:
    """Verifies tokens against the configured keys; a key removed from them fails its tokens."""

    def __init__(self, keys: Sequence[SigningKey], leeway: float = LEEWAY) -> None:
        if not keys:
            raise ConfigError("a token verifier needs at least one key")
        self._secrets = {key.key_id: key.secret for key in keys}
        self.leeway = leeway
        self._jwt = jwt.PyJWT({"enforce_minimum_key_length": True})

    def verify(self, token: str) -> Grant:
        if len(token) > MAX_TOKEN:
            raise TokenRefused(f"the token is longer than {MAX_TOKEN} characters")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise TokenRefused("the token is not a JWT") from None
        secret = self._secrets.get(kid) if isinstance(kid, str) else None
        if secret is None:
            raise TokenRefused("the token's kid names no key of this API (a retired one?)")
        try:
            decoded = self._jwt.decode_complete(token, secret, algorithms=[ALGORITHM],
                                                options={"require": ["exp"]}, leeway=self.leeway)
        except jwt.ExpiredSignatureError:
            raise TokenRefused("the token expired") from None
        except jwt.InvalidAlgorithmError:
            raise TokenRefused(f"the token's algorithm is not {ALGORITHM}") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(f"the token has no '{exc.claim}' claim") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("the token is not valid yet") from None
        except jwt.PyJWTError:
            raise TokenRefused("the token is malformed") from None
        payload = decoded["payload"]
        try:
            patterns = check_patterns(payload.get(MESSAGES_CLAIM))
        except ValidationError as exc:
            raise TokenRefused(f"the token's {exc}") from None
        return Grant(tuple(patterns), float(payload["exp"]) + self.leeway, bytes(decoded["signature"]))


def bearer_token(authorization: str | None, query_token: str | None = None) -> str:
    """The token of `Authorization: Bearer …`, else of `?token=` (where the route takes one)."""
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            if not token.strip():
                raise TokenRefused("the Authorization header holds an empty bearer token")
            return token.strip()
    if query_token:
        return query_token
    raise TokenRefused("a bearer token is required: Authorization: Bearer <token>", error="")


def is_loopback(host: str) -> bool:
    """Whether `host` only ever takes connections from this machine."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a name, or "" (every interface)
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def check_exposure(host: str, keys: Sequence[SigningKey], insecure: bool) -> None:
    """ConfigError when the API would serve every message, tokenless, beyond this machine."""
    if keys or insecure or is_loopback(host):
        return
    raise ConfigError(f"refusing to serve the HTTP API on {host or 'every address'} without "
                      "MSGSTATE_HTTP_TOKEN_KEYS: anyone reaching it could read every message; set "
                      "token keys, listen on a loopback address, or set MSGSTATE_HTTP_INSECURE=true")
