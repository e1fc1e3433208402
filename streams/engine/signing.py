"""Signed Response Messages: an HMAC-SHA256 over the record's key and value, in two headers.

The MAC input frames key and value with their lengths, so no (key, value) pair can be shifted
into another one with the same bytes (`b"ab" + b"c"` and `b"a" + b"bc"` sign differently).
A keyring holds every key a verifier accepts, so a new key can be rolled out while records
signed with the old one are still in flight.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.wording import count

KEY_ID_HEADER = "msgstate-key-id"
SIGNATURE_HEADER = "msgstate-signature"
MAC_DOMAIN = b"msgstate-response-v1\x00"  # a MAC made for anything else never verifies here
MIN_SECRET_BYTES = 16
MAX_KEY_ID = 64

# Kafka record headers: (name, value) pairs as kafka-python and aiokafka give them, or a mapping.
Headers = Sequence[tuple[str, bytes]] | Mapping[str, bytes]
_LENGTH = struct.Struct(">Q")


def mac_input(key: bytes | None, value: bytes) -> bytes:
    """The bytes the MAC covers: a domain tag, then key and value, each preceded by its length.

    A record without a key is framed with the length 2**64 - 1, which no real key has, so it
    differs from a record with an empty key.
    """
    key_part = _LENGTH.pack(2**64 - 1) if key is None else _LENGTH.pack(len(key)) + key
    return MAC_DOMAIN + key_part + _LENGTH.pack(len(value)) + value


def signature(secret: bytes, key: bytes | None, value: bytes) -> str:
    """The hex HMAC-SHA256 of a record under `secret`."""
    return hmac.new(secret, mac_input(key, value), hashlib.sha256).hexdigest()


def sign(key_id: str, secret: bytes, key: bytes | None, value: bytes) -> list[tuple[str, bytes]]:
    """The headers that sign one record."""
    return [
        (KEY_ID_HEADER, key_id.encode()),
        (SIGNATURE_HEADER, signature(secret, key, value).encode()),
    ]


def check_key(key_id: str, secret: bytes) -> None:
    """ConfigError unless `key_id` and `secret` can sign."""
    if not key_id or len(key_id) > MAX_KEY_ID or not key_id.isascii() or not key_id.isprintable() \
            or ":" in key_id or " " in key_id:
        raise ConfigError(f"signing key id {key_id!r} must be 1-{MAX_KEY_ID} printable ASCII "
                          "characters without ':' or spaces")
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"signing key {key_id}: the secret has {count(len(secret), 'byte')}; "
                          f"it needs at least {MIN_SECRET_BYTES}")


class SigningKey(NamedTuple):
    """A key a publisher signs with: its id travels in the header, the secret never does."""

    key_id: str
    secret: bytes

    def headers(self, key: bytes | None, value: bytes) -> list[tuple[str, bytes]]:
        return sign(self.key_id, self.secret, key, value)


class Keyring:
    """The keys a verifier accepts, by key id; several at once while a key is rotated."""

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        self._keys: dict[str, bytes] = {}
        for key_id, secret in (keys or {}).items():
            self.add(key_id, secret)

    def add(self, key_id: str, secret: bytes) -> None:
        check_key(key_id, secret)
        self._keys[key_id] = bytes(secret)

    def remove(self, key_id: str) -> None:
        self._keys.pop(key_id, None)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def secret(self, key_id: str) -> bytes | None:
        return self._keys.get(key_id)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Keyring:
        """A keyring from `keyid:base64secret` texts (see `parse_key`)."""
        ring = cls()
        for spec in specs:
            ring.add(*parse_key(spec))
        return ring


def verify(headers: Headers | None, key: bytes | None, value: bytes, keyring: Keyring) -> bool:
    """Whether the record carries a valid signature by a key of `keyring`.

    False when a header is missing or repeated, the key id is unknown or the signature does
    not match; the comparison takes constant time.
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    key_ids = [v for k, v in pairs if k == KEY_ID_HEADER]
    signatures = [v for k, v in pairs if k == SIGNATURE_HEADER]
    if len(key_ids) != 1 or len(signatures) != 1:
        return False
    try:
        key_id = key_ids[0].decode("ascii")
    except (UnicodeDecodeError, AttributeError):
        return False
    secret = keyring.secret(key_id)
    if secret is None:
        return False
    expected = signature(secret, key, value).encode()
    return hmac.compare_digest(expected, bytes(signatures[0]))


def is_authentic(keyring: Keyring | None, headers: Headers | None, key: bytes | None,
                 value: bytes) -> bool:
    """The `authentic=` verdict for `decode_response`: True when signing is off (no keyring)."""
    return keyring is None or verify(headers, key, value, keyring)


def parse_key(spec: str) -> SigningKey:
    """`keyid:base64secret` (standard base64, padding optional) → (key id, secret)."""
    key_id, sep, encoded = spec.strip().partition(":")
    if not sep:
        raise ConfigError("a signing key must be written keyid:base64secret")
    try:
        secret = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"signing key {key_id!r}: the secret is not base64 ({exc})") from exc
    check_key(key_id, secret)
    return SigningKey(key_id, secret)
