"""Signed Response Messages: headers, verification, rotation, framing, key parsing."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.records import decode_response
from msgstate.streams.engine.signing import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    Keyring,
    is_authentic,
    mac_input,
    parse_key,
    sign,
    verify,
)

OLD = b"o" * 32
NEW = b"n" * 32


def test_a_signed_record_verifies_and_any_tampering_fails() -> None:
    ring = Keyring({"k1": OLD})
    headers = sign("k1", OLD, b"m1", b'{"id":"r"}')
    assert [name for name, _ in headers] == [KEY_ID_HEADER, SIGNATURE_HEADER]
    assert verify(headers, b"m1", b'{"id":"r"}', ring)
    assert not verify(headers, b"m2", b'{"id":"r"}', ring)
    assert not verify(headers, b"m1", b'{"id":"s"}', ring)
    assert not verify(sign("k1", NEW, b"m1", b'{"id":"r"}'), b"m1", b'{"id":"r"}', ring)
    assert verify(dict(headers), b"m1", b'{"id":"r"}', ring)  # headers given as a mapping


def test_missing_repeated_or_unknown_headers_fail() -> None:
    ring = Keyring({"k1": OLD})
    headers = sign("k1", OLD, b"m", b"v")
    assert not verify(None, b"m", b"v", ring)
    assert not verify([], b"m", b"v", ring)
    assert not verify(headers[:1], b"m", b"v", ring)
    assert not verify(headers[1:], b"m", b"v", ring)
    assert not verify([*headers, headers[1]], b"m", b"v", ring)
    assert not verify(sign("k2", OLD, b"m", b"v"), b"m", b"v", ring)
    assert not verify([(KEY_ID_HEADER, b"\xff"), headers[1]], b"m", b"v", ring)
    assert not verify([headers[0], (SIGNATURE_HEADER, b"")], b"m", b"v", ring)


def test_rotation_accepts_both_keys_while_both_are_active() -> None:
    ring = Keyring({"2026-01": OLD, "2026-02": NEW})
    assert verify(sign("2026-01", OLD, b"m", b"v"), b"m", b"v", ring)
    assert verify(sign("2026-02", NEW, b"m", b"v"), b"m", b"v", ring)
    ring.remove("2026-01")
    assert not verify(sign("2026-01", OLD, b"m", b"v"), b"m", b"v", ring)
    assert verify(sign("2026-02", NEW, b"m", b"v"), b"m", b"v", ring)


@given(st.binary(max_size=20), st.binary(max_size=20), st.binary(max_size=20), st.binary(max_size=20))
def test_the_mac_input_frames_key_and_value_unambiguously(k1: bytes, v1: bytes, k2: bytes,
                                                          v2: bytes) -> None:
    assert (mac_input(k1, v1) == mac_input(k2, v2)) == ((k1, v1) == (k2, v2))
    assert mac_input(None, v1) != mac_input(b"", v1)


def test_keys_parse_from_keyid_colon_base64() -> None:
    secret = bytes(range(32))
    text = base64.b64encode(secret).decode()
    assert parse_key(f"k1:{text}") == ("k1", secret)
    assert parse_key(f" k1:{text.rstrip('=')} ") == ("k1", secret)
    assert Keyring.parse([f"a:{text}", f"b:{text}"]).secret("b") == secret
    for bad, why in [("nocolon", "keyid:base64secret"), ("k1:***", "not base64"),
                     (f":{text}", "key id"), ("k1:" + base64.b64encode(b"short").decode(), "at least 16")]:
        with pytest.raises(ConfigError, match=why):
            parse_key(bad)


def test_the_verdict_for_decode_response() -> None:
    value = b'{"id": "r", "message_id": "m", "identity_id": "u", "changes": [{"operation": "add",' \
        b' "type": "LWW", "name": "n", "value": 1}]}'
    ring = Keyring({"k1": OLD})
    assert is_authentic(None, None, b"m", value)  # signing off
    assert is_authentic(ring, sign("k1", OLD, b"m", value), b"m", value)
    unsigned = decode_response(value, authentic=is_authentic(ring, None, b"m", value))
    assert isinstance(unsigned, dict) and unsigned["reason"] == "unauthenticated"
    assert unsigned["response_id"] == "r"
