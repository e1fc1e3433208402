"""Read tokens of the HTTP API: minting, verification, the pattern rule, settings, the CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
import warnings
from typing import Any

import jwt
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from msgstate.schemas.exceptions import ConfigError, ValidationError
from msgstate.streams.engine.signing import SigningKey
from msgstate.streams.sdk import mint_token
from msgstate.streams.sdk.tokens import MIN_TOKEN_SECRET_BYTES
from msgstate.workers import config
from msgstate.workers.cli.main import cli
from msgstate.workers.config import Settings
from msgstate.workers.services.http_api import AccessLog
from msgstate.workers.services.http_auth import (
    LEEWAY,
    MAX_TOKEN,
    TokenRefused,
    TokenVerifier,
    bearer_token,
    check_exposure,
    is_loopback,
    matches,
)
from msgstate.workers.services.http_limits import StreamSlots, TooManyStreams

KEY = SigningKey("k1", bytes(range(32)))
OTHER_KEY = SigningKey("k2", bytes(range(1, 33)))
ROOM = "layer:///rooms/r1/*"


def spec(*keys: SigningKey) -> str:
    return ",".join(f"{k.key_id}:{base64.b64encode(k.secret).decode()}" for k in keys)


def signed(claims: dict[str, Any], algorithm: str = "HS256", headers: dict[str, Any] | None = None) -> str:
    with warnings.catch_warnings():  # KEY is short for HS384/HS512: on purpose here
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, KEY.secret, algorithm=algorithm,
                          headers={"kid": KEY.key_id} if headers is None else headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def by_hand(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """HS256 with KEY's secret over any header, even one PyJWT would not write."""
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}"
    return f"{signing_input}.{b64url(hmac.new(KEY.secret, signing_input.encode(), hashlib.sha256).digest())}"


# --- the pattern rule -----------------------------------------------------------------------

def reference(pattern: str, message_id: str) -> bool:
    """The rule as a regular expression: the pattern's literal text, `.*` for a trailing `*`."""
    body = re.escape(pattern[:-1]) + ".*" if pattern.endswith("*") else re.escape(pattern)
    return re.fullmatch(body, message_id, re.DOTALL) is not None


chars = st.text(st.sampled_from("ab/:*\n"), max_size=8)


@given(pattern=chars.filter(bool), message_id=chars, extension=chars)
def test_a_pattern_matches_exactly_its_id_or_with_a_trailing_star_its_prefix(
    pattern: str, message_id: str, extension: str
) -> None:
    assert matches(pattern, message_id) == reference(pattern, message_id)
    if pattern.endswith("*"):
        assert matches(pattern, pattern[:-1] + extension)
    elif extension:
        assert not matches(pattern, pattern + extension)


@given(patterns=st.lists(chars.filter(bool), min_size=1, max_size=4), message_id=chars)
def test_a_verified_token_reads_only_what_one_of_its_patterns_matches(
    patterns: list[str], message_id: str
) -> None:
    grant = TokenVerifier([KEY]).verify(mint_token(KEY, patterns, 60))
    assert grant.patterns == tuple(patterns)
    assert grant.may_read(message_id) == any(reference(p, message_id) for p in patterns)


@pytest.mark.parametrize(("pattern", "message_id", "allowed"), [
    ("layer:///messages/940de862", "layer:///messages/940de862", True),
    ("layer:///messages/940de862", "layer:///messages/940de8620", False),
    ("layer:///messages/940de862", "layer:///messages/940de86", False),
    ("layer:///messages/*", "layer:///messages/", True),
    ("layer:///messages/*", "layer:///messages/a/b", True),
    ("layer:///messages/*", "layer:///messages", False),
    ("layer:///*/messages/1", "layer:///r/messages/1", False),  # only a trailing * is a wildcard
    ("layer:///*/messages/1", "layer:///*/messages/1", True),
    ("*", "anything at all", True),
])
def test_patterns_by_example(pattern: str, message_id: str, allowed: bool) -> None:
    assert matches(pattern, message_id) is allowed


# --- verification -------------------------------------------------------------------------

def test_a_minted_token_carries_its_key_id_patterns_and_times() -> None:
    token = mint_token(KEY, [ROOM, "layer:///messages/1"], 3600, now=1_000_000)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    claims = jwt.decode(token, KEY.secret, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"messages": [ROOM, "layer:///messages/1"], "iat": 1_000_000, "exp": 1_003_600}
    grant = TokenVerifier([OTHER_KEY, KEY]).verify(mint_token(KEY, [ROOM], 60))
    assert grant.patterns == (ROOM,)
    assert grant.until == pytest.approx(time.time() + 60 + LEEWAY, abs=2)


def test_clock_skew_of_a_few_seconds_is_allowed_and_no_more() -> None:
    verifier = TokenVerifier([KEY])
    now = time.time()
    verifier.verify(mint_token(KEY, [ROOM], 10, now=now - 10 - (LEEWAY - 2)))  # expired 3 s ago
    verifier.verify(mint_token(KEY, [ROOM], 10, now=now + LEEWAY - 2))  # issued 3 s ahead
    with pytest.raises(TokenRefused, match="expired"):
        verifier.verify(mint_token(KEY, [ROOM], 10, now=now - 10 - (LEEWAY + 2)))
    with pytest.raises(TokenRefused, match="not valid yet"):
        verifier.verify(mint_token(KEY, [ROOM], 10, now=now + LEEWAY + 30))
    with pytest.raises(TokenRefused, match="not valid yet"):
        verifier.verify(signed({"messages": [ROOM], "exp": int(now) + 60, "nbf": int(now) + 60}))


def bad_tokens() -> dict[str, str]:
    soon = int(time.time()) + 600
    good = mint_token(KEY, ["layer:///messages/1"], 600)
    header, payload, signature = good.split(".")
    claims = {"messages": [ROOM], "exp": soon}
    return {
        "alg none": f"{b64url(orjson.dumps({'alg': 'none', 'kid': 'k1'}))}.{b64url(orjson.dumps(claims))}.",
        "alg None": f"{b64url(orjson.dumps({'alg': 'None', 'kid': 'k1'}))}.{b64url(orjson.dumps(claims))}.",
        "alg HS384": signed(claims, "HS384"),
        "alg HS512": signed(claims, "HS512"),
        "no alg": f"{b64url(orjson.dumps({'kid': 'k1'}))}.{payload}.{signature}",
        "wrong secret": jwt.encode(claims, OTHER_KEY.secret, algorithm="HS256", headers={"kid": "k1"}),
        "unknown kid": mint_token(SigningKey("k9", KEY.secret), [ROOM], 600),
        "kid not a string": by_hand({"alg": "HS256", "kid": 1}, claims),
        "no kid": signed(claims, headers={}),
        "tampered claims": f"{header}.{b64url(orjson.dumps(claims))}.{signature}",
        "tampered header": f"{b64url(orjson.dumps({'alg': 'HS256', 'kid': 'k1'}))}.{payload}.{signature}",
        "no exp": signed({"messages": [ROOM]}),
        "exp not a number": signed({"messages": [ROOM], "exp": "tomorrow"}),
        "no messages": signed({"exp": soon}),
        "messages a string": signed({"messages": ROOM, "exp": soon}),
        "messages empty": signed({"messages": [], "exp": soon}),
        "a pattern not a string": signed({"messages": [ROOM, 7], "exp": soon}),
        "an empty pattern": signed({"messages": [""], "exp": soon}),
        "a pattern too long": signed({"messages": ["m" * 258], "exp": soon}),
        "too long": signed({"messages": ["m" * 257] * 20, "exp": soon}),
        "two segments": f"{header}.{payload}",
        "garbage": "garbage",
        "empty": "",
    }


@pytest.mark.parametrize("name", sorted(bad_tokens()))
def test_bad_tokens_are_refused(name: str) -> None:
    token = bad_tokens()[name]
    with pytest.raises(TokenRefused) as refused:
        TokenVerifier([KEY]).verify(token)
    assert refused.value.error == "invalid_token"
    if name == "too long":
        assert len(token) > MAX_TOKEN and str(MAX_TOKEN) in refused.value.detail


def test_a_removed_key_fails_its_tokens() -> None:
    token = mint_token(KEY, [ROOM], 600)
    assert TokenVerifier([OTHER_KEY, KEY]).verify(token).may_read("layer:///rooms/r1/m")
    with pytest.raises(TokenRefused, match="retired"):
        TokenVerifier([OTHER_KEY]).verify(token)


def test_a_respelled_signature_is_refused_or_counts_as_the_same_token() -> None:
    """Base64url's last character carries spare bits: a respelling must not pass for another
    token (the per-token stream limit could be dodged with it)."""
    token = mint_token(KEY, [ROOM], 600)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 43 characters for 32 bytes: the last character's low 2 bits are spare.
    respelled = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    assert base64.urlsafe_b64decode(respelled.split(".")[2] + "=") == \
        base64.urlsafe_b64decode(token.split(".")[2] + "=")
    verifier = TokenVerifier([KEY])
    try:
        seen: bytes | None = verifier.verify(respelled).token_id
    except TokenRefused:
        seen = None
    assert seen in (None, verifier.verify(token).token_id)


def test_the_bearer_comes_from_the_header_else_from_the_query_where_allowed() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token(None, "from-query") == "from-query"
    assert bearer_token("Bearer abc", "from-query") == "abc"
    assert bearer_token("Basic dTpw", "from-query") == "from-query"
    for header, query in ((None, None), (None, ""), ("Basic dTpw", None)):
        with pytest.raises(TokenRefused) as missing:
            bearer_token(header, query)
        assert missing.value.error == ""  # RFC 6750: no error code when no token came
    with pytest.raises(TokenRefused) as empty:
        bearer_token("Bearer ")
    assert empty.value.error == "invalid_token"


# --- minting ------------------------------------------------------------------------------

def test_minting_checks_its_key_patterns_and_lifetime() -> None:
    with pytest.raises(ValidationError, match="32"):
        mint_token(SigningKey("short", b"s" * 16), [ROOM], 60)
    with pytest.raises(ValidationError, match="ttl"):
        mint_token(KEY, [ROOM], 0)
    for patterns in ([], [""], ["m" * 258]):
        with pytest.raises(ValidationError, match="pattern"):
            mint_token(KEY, patterns, 60)
    assert config.MIN_TOKEN_SECRET_BYTES == MIN_TOKEN_SECRET_BYTES


# --- settings and exposure ----------------------------------------------------------------

def test_token_keys_and_limits_come_from_the_environment() -> None:
    settings = Settings.from_env({"MSGSTATE_HTTP_TOKEN_KEYS": spec(OTHER_KEY, KEY),
                                  "MSGSTATE_HTTP_MAX_STREAMS": "50",
                                  "MSGSTATE_HTTP_MAX_STREAMS_PER_TOKEN": "3"})
    assert settings.http_token_keys == (OTHER_KEY, KEY)  # in the order given: the first signs
    assert (settings.http_max_streams, settings.http_max_streams_per_token) == (50, 3)
    assert base64.b64encode(KEY.secret).decode() not in repr(settings) and "k1" not in repr(settings)
    defaults = Settings.from_env({})
    assert defaults.http_token_keys == () and defaults.http_insecure is False
    assert (defaults.http_max_streams, defaults.http_max_streams_per_token) == (1000, 10)
    assert Settings.from_env({"MSGSTATE_HTTP_INSECURE": "TRUE"}).http_insecure is True


@pytest.mark.parametrize(("env", "words"), [
    ({"MSGSTATE_HTTP_TOKEN_KEYS": "k1:" + base64.b64encode(b"s" * 16).decode()}, "at least 32"),
    ({"MSGSTATE_HTTP_TOKEN_KEYS": "k1:not base64!"}, "base64"),
    ({"MSGSTATE_HTTP_TOKEN_KEYS": "no-secret"}, "keyid:base64secret"),
    ({"MSGSTATE_HTTP_TOKEN_KEYS": spec(KEY, SigningKey("k1", OTHER_KEY.secret))}, "twice"),
    ({"MSGSTATE_HTTP_INSECURE": "yes please"}, "true or false"),
    ({"MSGSTATE_HTTP_MAX_STREAMS": "0"}, "at least 1"),
    ({"MSGSTATE_HTTP_MAX_STREAMS_PER_TOKEN": "many"}, "not an integer"),
])
def test_bad_token_settings_name_their_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=next(iter(env))) as bad:
        Settings.from_env(env)
    assert words in str(bad.value)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("::ffff:127.0.0.1", True), ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False),
    ("api.example.com", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serving_beyond_loopback_needs_keys_or_an_explicit_insecure() -> None:
    check_exposure("127.0.0.1", (), insecure=False)
    check_exposure("0.0.0.0", (KEY,), insecure=False)
    check_exposure("0.0.0.0", (), insecure=True)
    with pytest.raises(ConfigError, match="MSGSTATE_HTTP_TOKEN_KEYS") as refused:
        check_exposure("0.0.0.0", (), insecure=False)
    assert "\n" not in str(refused.value) and "MSGSTATE_HTTP_INSECURE=true" in str(refused.value)


# --- stream slots and the access log ------------------------------------------------------

def test_stream_slots_are_bounded_per_token_and_in_all_and_freed() -> None:
    slots = StreamSlots(total=3, per_token=2)
    with slots.hold(b"a"), slots.hold(b"a"):
        with pytest.raises(TooManyStreams, match="token"), slots.hold(b"a"):
            pass
        with slots.hold(None):
            assert slots.open == 3
            with pytest.raises(TooManyStreams, match="server"), slots.hold(b"b"):
                pass
        with slots.hold(b"b"):
            assert slots.open == 3
    assert slots.open == 0
    with slots.hold(b"a"), slots.hold(b"a"):
        assert slots.open == 2


def test_the_access_log_never_writes_a_token(caplog: pytest.LogCaptureFixture) -> None:
    request = make_mocked_request("GET", "/messages/m/events?part=p&token=SECRET.TOKEN.VALUE")
    with caplog.at_level(logging.INFO, logger="test.access"):
        AccessLog(logging.getLogger("test.access"), "").log(request, web.Response(status=200), 0.25)
        AccessLog(logging.getLogger("test.access"), "").log(
            make_mocked_request("GET", "/healthz"), web.Response(status=200), 0.01)
    lines = [r.getMessage() for r in caplog.records]
    assert "SECRET" not in lines[0] and lines[0].startswith("GET /messages/m/events?part=p&token=")
    assert lines[0].endswith(" 200 0 0.250000")
    assert lines[1].startswith("GET /healthz HTTP/1.1 200")


# --- the command ----------------------------------------------------------------------------

def test_msgstate_token_prints_a_token_signed_with_the_first_key_or_the_one_named() -> None:
    runner = CliRunner()
    env = {"MSGSTATE_HTTP_TOKEN_KEYS": spec(OTHER_KEY, KEY)}
    done = runner.invoke(cli, ["token", "--messages", ROOM, "layer:///messages/1", "--ttl", "60"], env=env)
    assert done.exit_code == 0, done.output
    token = done.output.strip()
    assert "\n" not in token and jwt.get_unverified_header(token)["kid"] == "k2"
    grant = TokenVerifier([OTHER_KEY]).verify(token)
    assert grant.patterns == (ROOM, "layer:///messages/1")
    assert grant.until == pytest.approx(time.time() + 60 + LEEWAY, abs=3)

    named = runner.invoke(cli, ["token", "--messages", ROOM, "--messages", "m2", "--kid", "k1"], env=env)
    assert named.exit_code == 0, named.output
    assert TokenVerifier([KEY]).verify(named.output.strip()).patterns == (ROOM, "m2")

    unknown = runner.invoke(cli, ["token", "--messages", ROOM, "--kid", "k7"], env=env)
    assert isinstance(unknown.exception, ConfigError) and "k2, k1" in str(unknown.exception)
    keyless = runner.invoke(cli, ["token", "--messages", ROOM], env={"MSGSTATE_HTTP_TOKEN_KEYS": ""})
    assert isinstance(keyless.exception, ConfigError)
    assert "MSGSTATE_HTTP_TOKEN_KEYS" in str(keyless.exception)
    patternless = runner.invoke(cli, ["token", "--ttl", "60"], env=env)
    assert patternless.exit_code == 2 and "--messages" in patternless.output
