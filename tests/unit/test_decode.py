"""Whole-response checks (SPEC section 3, second table) and the field rules of section 2."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest

from msgstate.schemas.records import Response, decode_response
from tests.unit.helpers import add, line, record, run

GOOD = record("r1", add("LWW", "color", "red"))


def decode(data: dict[str, Any] | bytes, authentic: bool = True) -> Response | dict[str, Any]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return decode_response(raw, authentic=authentic)


def reason_of(data: dict[str, Any] | bytes) -> str | None:
    out = decode(data)
    return None if isinstance(out, Response) else out["reason"]


def with_(**fields: Any) -> dict[str, Any]:
    out = dict(GOOD)
    for key, value in fields.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


DROP: Any = object()


def test_a_good_record_decodes_with_defaults() -> None:
    out = decode(GOOD)
    assert isinstance(out, Response)
    assert (out.id, out.message_id, out.part_id, out.identity_id) == ("r1", "m1", "root", "alice")
    assert out.status_text is None and out.sent_at is None
    assert [c.raw for c in out.changes] == GOOD["changes"]


def test_to_dict_round_trips() -> None:
    out = decode(with_(part_id="p", status_text="s", sent_at=5, unknown=1))
    assert isinstance(out, Response)
    again = decode(out.to_dict())
    assert isinstance(again, Response)
    assert again.to_dict() == out.to_dict() == {**with_(part_id="p", status_text="s", sent_at=5)}


# -- too_large ----------------------------------------------------------------------------


def test_too_large_is_over_65536_bytes_of_the_value_alone() -> None:
    base = orjson.dumps(with_(pad=""))
    fill = 65536 - len(base)
    at_limit = orjson.dumps(with_(pad="p" * fill))
    assert len(at_limit) == 65536
    assert isinstance(decode(at_limit), Response)
    over = orjson.dumps(with_(pad="p" * (fill + 1)))
    out = decode(over)
    assert isinstance(out, dict)
    assert out["reason"] == "too_large"
    assert out["raw"] is None and out["response_id"] is None and out["message_id"] is None


def test_too_large_wins_over_malformed() -> None:
    assert reason_of(b"{" * 70000) == "too_large"


# -- malformed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b"[1]",
        b"null",
        b'"a string"',
        b"42",
        b"NaN",
        b"\xff\xfe",
        b'{"id": "\xed\xa0\x80"}',  # an encoded surrogate is not UTF-8
        b'{"id": "\\ud800"}',  # a lone surrogate escape counts as not UTF-8
        b'{"id": "x\\udc00"}',
        b"\xef\xbb\xbf{}",  # a byte order mark is not JSON
        b'{"id": 1,}',
        b"1e400",  # parses to no finite number
    ],
)
def test_malformed(raw: bytes) -> None:
    out = decode(raw)
    assert isinstance(out, dict)
    assert out["reason"] == "malformed"
    assert base64.b64decode(out["raw"]) == raw
    assert (out["response_id"], out["message_id"], out["identity_id"]) == (None, None, None)
    assert out["change_index"] is None and out["change"] is None


def test_a_surrogate_pair_escape_is_fine() -> None:
    raw = b'{"id":"r1","message_id":"m1","identity_id":"a","changes":[{"operation":"add",'
    raw += b'"type":"LWW","name":"c","value":"\\ud83d\\ude00"}]}'
    out = decode(raw)
    assert isinstance(out, Response)
    assert out.changes[0].raw["value"] == "\U0001f600"


def test_whitespace_around_the_object_is_fine() -> None:
    assert isinstance(decode(b" \t" + orjson.dumps(GOOD) + b"\r\n"), Response)


# -- invalid ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("id", DROP),
        ("id", None),
        ("id", ""),
        ("id", "i" * 129),
        ("id", 7),
        ("message_id", DROP),
        ("message_id", ""),
        ("message_id", "m" * 257),
        ("message_id", ["m1"]),
        ("identity_id", DROP),
        ("identity_id", ""),
        ("identity_id", "a" * 257),
        ("identity_id", {"id": "a"}),
        ("part_id", ""),
        ("part_id", "p" * 129),
        ("part_id", 1),
        ("part_id", False),
        ("changes", DROP),
        ("changes", None),
        ("changes", []),
        ("changes", [add("LWW", "x", 1)] * 101),
        ("changes", {"operation": "add"}),
        ("changes", "add"),
        ("status_text", "s" * 4097),
        ("status_text", 5),
        ("status_text", ["s"]),
        ("sent_at", True),
        ("sent_at", False),
        ("sent_at", 1.5),
        ("sent_at", 1.0),
        ("sent_at", "1732277000123"),
        ("sent_at", 2**63),
        ("sent_at", -(2**63) - 1),
    ],
)
def test_invalid(field: str, bad: Any) -> None:
    out = decode(with_(**{field: bad}))
    assert isinstance(out, dict)
    assert out["reason"] == "invalid"
    assert out["raw"] is None and out["change_index"] is None and out["change"] is None
    assert out["detail"]


@pytest.mark.parametrize(
    ("field", "good"),
    [
        ("id", "i" * 128),
        ("id", "\u00e9" * 128),  # code points, not bytes
        ("message_id", "m" * 256),
        ("identity_id", "a" * 256),
        ("part_id", None),
        ("part_id", "p" * 128),
        ("changes", [add("LWW", "x", 1)] * 100),
        ("status_text", None),
        ("status_text", ""),
        ("status_text", "\U0001f600" * 4096),
        ("sent_at", None),
        ("sent_at", 2**63 - 1),
        ("sent_at", -(2**63)),
        ("unknown", {"ignored": [1, 2]}),
    ],
)
def test_valid_edges(field: str, good: Any) -> None:
    assert isinstance(decode(with_(**{field: good})), Response)


def test_exponent_written_integer_is_not_an_integer() -> None:
    raw = orjson.dumps(GOOD)[:-1] + b', "sent_at": 1e3}'
    assert reason_of(raw) == "invalid"
    raw = orjson.dumps(GOOD)[:-1] + b', "sent_at": 1000}'
    assert isinstance(decode(raw), Response)


def test_invalid_copies_ids_when_they_are_strings_even_too_long() -> None:
    out = decode(with_(id="i" * 200, identity_id=5))
    assert isinstance(out, dict)
    assert out["response_id"] == "i" * 200
    assert out["message_id"] == "m1"
    assert out["identity_id"] is None


def test_invalid_is_checked_before_unauthenticated() -> None:
    out = decode(with_(id=None), authentic=False)
    assert isinstance(out, dict) and out["reason"] == "invalid"


def test_unauthenticated() -> None:
    out = decode(GOOD, authentic=False)
    assert isinstance(out, dict)
    assert out["reason"] == "unauthenticated"
    assert (out["response_id"], out["message_id"], out["identity_id"]) == ("r1", "m1", "alice")


def test_malformed_is_checked_before_invalid_and_unauthenticated() -> None:
    out = decode(b"[]", authentic=False)
    assert isinstance(out, dict) and out["reason"] == "malformed"


# -- duplicate (needs state: the engine decides) --------------------------------------------


def test_duplicate_per_message_whatever_the_part() -> None:
    r = run(
        line("r1", add("LWW", "c", "red")),
        line("r1", add("LWW", "c", "blue"), part="p2"),
        line("r1", add("LWW", "c", "blue"), message="m2"),
    )
    assert r.reasons() == ["duplicate"]
    assert r.rejections[0]["response_id"] == "r1"
    assert r.values("c") == {"alice": "red"}
    assert r.values("c", message="m2") == {"alice": "blue"}


def test_a_response_whose_changes_were_all_rejected_still_takes_its_id() -> None:
    r = run(line("r1", {"operation": "nope"}), line("r1", add("LWW", "c", "red")))
    assert r.reasons() == ["invalid_change", "duplicate"]


def test_a_response_rejected_whole_does_not_take_its_id() -> None:
    r = run(
        line("r1", add("LWW", "c", "red"), sent_at=True),
        line("r1", add("LWW", "c", "red")),
    )
    assert r.reasons() == ["invalid"]
    assert r.values("c") == {"alice": "red"}


def test_unauthenticated_does_not_take_its_id() -> None:
    from tests.unit.helpers import Run

    r = Run()
    r.feed(line("r1", add("LWW", "c", "red")), authentic=False)
    r.feed(line("r1", add("LWW", "c", "red")))
    assert r.reasons() == ["unauthenticated"]
    assert r.values("c") == {"alice": "red"}


def test_duplicates_within_one_batch() -> None:
    from tests.unit.helpers import Run

    r = Run().feed(line("r1", add("LWW", "c", "red")), line("r1", add("LWW", "c", "blue")))
    assert r.reasons() == ["duplicate"]
    assert r.values("c") == {"alice": "red"}
