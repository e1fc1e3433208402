"""Random parameters never make the API fail: every answer is 200 or a JSON 4xx."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given
from hypothesis import settings as fuzzing
from hypothesis import strategies as st

from .http_helpers import check_schema
from .http_helpers import serve_http as serve_http  # the http_url fixture

text = st.text(st.characters(codec="utf-8"), max_size=300)
query_value = st.one_of(st.none(), text, st.integers(-5, 10**20).map(str))


def fetch(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
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
