"""`msgstate replay` (SPEC section 7)."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from msgstate.streams.engine.replay import read_records, records_in
from msgstate.workers.cli.replay import replay
from tests.unit.helpers import add, line, remove


@pytest.fixture(autouse=True, params=["native", "python"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with each engine (MSGSTATE_ENGINE)."""
    monkeypatch.setenv("MSGSTATE_ENGINE", request.param)
    return str(request.param)


def invoke(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[int, bytes, str]:
    result = CliRunner().invoke(replay, list(args), input=stdin, env=env)
    return result.exit_code, result.stdout_bytes, result.stderr


def test_replay_prints_sorted_summaries_with_sorted_keys(tmp_path: Path) -> None:
    data = b"\n".join(
        [
            line("r1", add("LWW", "c", 1), message="b"),
            line("r2", add("LWW", "c", 1), message="\U0001f600"),
            line("r3", add("LWW", "c", 1), message="\uffff"),
            line("r4", add("LWW", "c", 1), message="a", part="z"),
            line("r5", add("LWW", "c", 1), message="a"),
            line("r6", add("LWW", "c", 1), message="B"),
            line("r7", add("LWW", "c", 1), message="a", part="Z"),
            line("r8", remove("FWW", "x"), message="nothing-fixed"),
        ]
    )
    source = tmp_path / "in.jsonl"
    source.write_bytes(data)
    code, out, _ = invoke(str(source))
    assert code == 0
    printed = out.splitlines()
    summaries = [orjson.loads(row) for row in printed]
    assert [(s["message_id"], s["part_id"]) for s in summaries] == [
        ("B", "root"),
        ("a", "Z"),
        ("a", "root"),
        ("a", "z"),
        ("b", "root"),
        ("\uffff", "root"),
        ("\U0001f600", "root"),
    ]
    for row, summary in zip(printed, summaries, strict=True):
        assert row == orjson.dumps(summary, option=orjson.OPT_SORT_KEYS)
    assert out.endswith(b"\n")


def test_changes_and_rejections_files(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b"\n".join(
            [
                line("r1", add("FWW", "f", 1), add("LWW", "c", 1)),
                b"   ",
                b"",
                b"garbage",
                line("r2", add("FWW", "f", 2), add("LWW", "c", 2)),
                line("r2", add("LWW", "c", 3)),
                b"\t\r",
            ]
        )
        + b"\n\n"
    )
    changes, rejections = tmp_path / "changes.jsonl", tmp_path / "rejections.jsonl"
    code, out, _ = invoke(str(source), "--changes", str(changes), "--rejections", str(rejections))
    assert code == 0
    events = [orjson.loads(row) for row in changes.read_bytes().splitlines()]
    assert [(e["response_id"], e["name"], e["new"]) for e in events] == [
        ("r1", "f", 1),
        ("r1", "c", 1),
        ("r2", "c", 2),
    ]
    refused = [orjson.loads(row) for row in rejections.read_bytes().splitlines()]
    assert [r["reason"] for r in refused] == ["malformed", "fww_conflict", "duplicate"]
    assert all("partition" not in r and "offset" not in r for r in refused)
    assert changes.read_bytes().splitlines()[0] == orjson.dumps(
        events[0], option=orjson.OPT_SORT_KEYS
    )
    assert len(out.splitlines()) == 1


def test_lines_split_on_newline_bytes_only() -> None:
    good = line("r1", add("LWW", "c", 1))
    data = good + b"\r\n" + good.replace(b"r1", b"r2") + b"\r" + good.replace(b"r1", b"r3")
    records = records_in(data)
    assert len(records) == 2  # "\r" alone does not split
    assert records == list(read_records(io.BytesIO(data), chunk=7))


def test_read_records_in_small_chunks_matches_split() -> None:
    data = b"\n".join([b"a", b"", b" ", b"bb", b"\t", b"ccc"]) + b"\n \n d"
    expected = [b"a", b"bb", b"ccc", b" d"]
    assert records_in(data) == expected
    for chunk in (1, 2, 3, 5, 100):
        assert list(read_records(io.BytesIO(data), chunk=chunk)) == expected


def test_stdin_and_an_empty_input() -> None:
    code, out, _ = invoke("-", stdin=line("r1", add("LWW", "c", 1)))
    assert code == 0 and len(out.splitlines()) == 1
    code, out, _ = invoke("-", stdin=b"")
    assert (code, out) == (0, b"")


def test_bad_lines_never_crash(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"\xff\n{\n[]\nnull\n" + b"x" * 70000 + b"\n")
    rejections = tmp_path / "r.jsonl"
    code, out, _ = invoke(str(source), "--rejections", str(rejections))
    assert (code, out) == (0, b"")
    reasons = [orjson.loads(row)["reason"] for row in rejections.read_bytes().splitlines()]
    assert reasons == ["malformed"] * 4 + ["too_large"]


def test_unreadable_input_is_one_line_and_non_zero(tmp_path: Path) -> None:
    code, out, err = invoke(str(tmp_path / "missing.jsonl"))
    assert code != 0 and out == b""
    assert len(err.strip().splitlines()) == 1
    assert "missing.jsonl" in err
    code, _, err = invoke(str(tmp_path))  # a directory
    assert code != 0 and len(err.strip().splitlines()) == 1


def test_registry_option(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(line("r1", add("LWW", "poll", "a")) + b"\n")
    registry = tmp_path / "registry.json"
    registry.write_bytes(b'{"poll": "FWW"}')
    rejections = tmp_path / "r.jsonl"
    code, out, _ = invoke(str(source), "--registry", str(registry), "--rejections", str(rejections))
    assert (code, out) == (0, b"")
    assert orjson.loads(rejections.read_bytes())["reason"] == "type_mismatch"


def test_engines_print_the_same_bytes(tmp_path: Path, engine: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join([
        line("r1", add("Set", "tags", 'q"\\\u00e9'), add("FWW", "f", 1), identity="\u00e9\t"),
        line("r2", add("FWW", "f", 2), remove("LWWN", "n"), {"x": [1.5, {"b": None}]}),
        line("r1", add("LWW", "c", True)),
        b"[1]",
    ]))
    outputs = []
    for name in ("native", "python"):
        changes, rejections = tmp_path / f"c-{name}", tmp_path / f"r-{name}"
        code, out, _ = invoke(str(source), "--changes", str(changes), "--rejections", str(rejections),
                              env={"MSGSTATE_ENGINE": name})
        assert code == 0
        outputs.append((out, changes.read_bytes(), rejections.read_bytes()))
    assert outputs[0] == outputs[1]
    assert outputs[0][0] and outputs[0][1] and outputs[0][2]


def test_an_unknown_engine_is_one_line_and_non_zero(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(line("r1", add("LWW", "c", 1)))
    code, out, err = invoke(str(source), env={"MSGSTATE_ENGINE": "rust"})
    assert code != 0 and out == b""
    assert "MSGSTATE_ENGINE" in err and len(err.strip().splitlines()) == 1


def test_replay_applies_deletions_erasures_and_caps(tmp_path: Path, engine: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join([
        line("r1", add("Set", "reactions", "a"), message="m1"),
        line("r2", add("Set", "reactions", "b"), message="m1", identity="bob"),
        line("r3", add("LWW", "c", {"k": [1.5]}), message="m2"),
        b'{"kind": "delete_message", "id": "d1", "message_id": "m1", "identity_id": "mod"}',
        b'{"kind": "erase_identity", "id": "e1", "identity_id": "alice"}',
        line("r4", add("Set", "reactions", "c"), message="m1"),
    ]))
    registry = tmp_path / "registry.json"
    registry.write_bytes(b'{"reactions": {"type": "Set", "max_values": 1}}')
    changes, rejections = tmp_path / "changes", tmp_path / "rejections"
    code, out, _ = invoke(str(source), "--registry", str(registry), "--changes", str(changes),
                          "--rejections", str(rejections))
    assert code == 0
    assert [orjson.loads(summary) for summary in out.splitlines()] == [
        {"message_id": "m1", "part_id": "root", "version": 2, "states": {}, "deleted": True},
        {"message_id": "m2", "part_id": "root", "version": 2,
         "states": {"c": {"type": "LWW", "values": {}, "tally": []}}},
    ]
    causes = [orjson.loads(event)["cause"] for event in changes.read_bytes().splitlines()]
    assert causes == ["response", "response", "delete_message", "erase_identity"]
    assert [orjson.loads(r)["reason"] for r in rejections.read_bytes().splitlines()] == [
        "limit_exceeded", "message_deleted",
    ]


def test_a_bad_registry_is_one_line_and_non_zero(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(line("r1", add("LWW", "c", 1)))
    registry = tmp_path / "registry.json"
    registry.write_bytes(b'{"reactions": {"type": "Set", "max_values": 0}}')
    code, out, err = invoke(str(source), "--registry", str(registry))
    assert code != 0 and out == b""
    assert "max_values 0" in err and len(err.strip().splitlines()) == 1
