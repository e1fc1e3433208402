"""Random parameters never make the API fail: every answer is 200 or a JSON 4xx; random tokens
never read a message their patterns do not match."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given
from hypothesis import settings as fuzzing
from hypothesis import strategies as st

from msgstate.streams.sdk import mint_token

from .http_helpers import NEW_KEY, OLD_KEY, check_schema
from .http_helpers import serve_http as serve_http  # the http_url fixture
from .http_helpers import serve_secured_http as serve_secured_http  # the secured_http_url fixture

text = st.text(st.characters(codec="utf-8"), max_size=300)
query_value = st.one_of(st.none(), text, st.integers(-5, 10**20).map(str))


def fetch(url: str, token: str | None = None) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@fuzzing(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=text.filter(bool), name=text.filter(bool), part=query_value, clip=query_value,
       identity=query_value, route=st.sampled_from(["summary", "state"]))
def test_any_parameters_get_200_or_a_clear_4xx(http_url: str, message: str, name: str, part: str | None,
                                               clip: str | None, identity: str | None, route: str) -> None:
    query = {k: v for k, v in {"part": part, "clip": clip, "identity": identity}.items() if v is not None}
    tail = "summary" if route == "summary" else f"states/{quote(name, safe='')}"
    status, body = fetch(f"{http_url}/messages/{quote(message, safe='')}/{tail}?{urlencode(query)}")
    if status == 200:
        check_schema("Summary" if route == "summary" else "StateValue", body)
    else:
        assert status in (400, 404), (status, body)
        check_schema("Error", body)


# Ids and patterns from a few characters, so that they often share prefixes; `*` in an id or in
# the middle of a pattern is a plain character. No `.`: a path segment of dots is normalised away.
id_text = st.text(st.sampled_from("ab/:*%é"), min_size=1, max_size=12)


def may_read(patterns: list[str], message_id: str) -> bool:
    """The rule, written independently of the API: a pattern is a regular expression's literal,
    with `.*` for a trailing `*`."""
    return any(re.fullmatch(re.escape(p[:-1]) + ".*" if p.endswith("*") else re.escape(p), message_id,
                            re.DOTALL) for p in patterns)


@fuzzing(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patterns=st.lists(id_text, min_size=1, max_size=3), message=id_text, data=st.data(),
       route=st.sampled_from(["summary", "states/reactions?identity=u", "events"]))
def test_random_tokens_never_read_a_message_their_patterns_do_not_match(
    secured_http_url: str, patterns: list[str], message: str, data: st.DataObject, route: str
) -> None:
    # Half the time the id extends a pattern's prefix, so matches are common too.
    if data.draw(st.booleans()):
        stem = data.draw(st.sampled_from(patterns)).rstrip("*")
        message = stem + data.draw(st.text(st.sampled_from("ab/*"), max_size=4)) or message
    token = mint_token(data.draw(st.sampled_from([NEW_KEY, OLD_KEY])), patterns, 600, now=time.time())
    url = f"{secured_http_url}/messages/{quote(message, safe='')}/{route}"
    if route == "events":
        status = stream_status(url, token)
    else:
        status, body = fetch(url, token)
        check_schema("Error" if status != 200 else "Summary" if route == "summary" else "StateValue", body)
    assert status == (200 if may_read(patterns, message) else 403), (patterns, message, status)


def stream_status(url: str, token: str) -> int:
    """The status of an event stream, closed as soon as it is known."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        check_schema("Error", json.loads(error.read()))
        return int(error.code)
