"""What the commands say: tail's lines, counts in the singular, where long-running commands connect."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from rich.text import Text

from msgstate.workers.cli import publish as publish_module
from msgstate.workers.cli.analytics import analytics
from msgstate.workers.cli.apps import apps
from msgstate.workers.cli.http import http
from msgstate.workers.cli.tail import describe
from msgstate.workers.cli.worker import worker


def plain(markup: str) -> str:
    return Text.from_markup(markup).plain


def test_tail_shows_an_absent_id_as_a_dash() -> None:
    malformed = {"response_id": None, "message_id": None, "identity_id": None, "reason": "malformed",
                 "detail": "not JSON", "change_index": None, "change": None, "raw": "eA=="}
    assert plain(describe("reject", malformed)) == "reject  -  -  malformed: not JSON"
    line = plain(describe("change", {"message_id": "m", "identity_id": "u", "name": "reactions",
                                     "old": None, "new": ["👍"], "version": 1}))
    assert line == 'change  m -  u  reactions null → ["👍"]  v1'
    assert "None" not in line


class OnePublisher:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send_raw(self, key: bytes | None, value: bytes) -> Future[None]:
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float = 10.0) -> None:
        pass


@pytest.mark.parametrize(("lines", "said"), [(1, "published 1 record to"), (2, "published 2 records to")])
def test_publish_counts_in_the_right_number(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            lines: int, said: str) -> None:
    monkeypatch.setattr(publish_module.probes, "require_kafka", lambda *a, **k: None)
    monkeypatch.setattr(publish_module, "Publisher", OnePublisher)
    record = b'{"id": "r", "message_id": "m", "identity_id": "u", "changes": []}\n'
    source = tmp_path / "in.jsonl"
    source.write_bytes(record * lines)
    result = CliRunner().invoke(publish_module.publish, [str(source)], env={"MSGSTATE_SIGNING_KEY": ""})
    assert result.exit_code == 0, result.output
    assert said in result.stderr


@pytest.mark.parametrize(("command", "variables"), [
    (worker, ("MSGSTATE_KAFKA", "MSGSTATE_REDIS", "MSGSTATE_PARTITIONS")),
    (http, ("MSGSTATE_KAFKA", "MSGSTATE_REDIS", "MSGSTATE_HTTP_PORT")),
    (analytics, ("MSGSTATE_KAFKA", "MSGSTATE_REDIS")),
    (apps, ("MSGSTATE_APPS", "MSGSTATE_REDIS")),
])
def test_long_running_commands_say_where_they_connect(command: click.Command,
                                                      variables: tuple[str, ...]) -> None:
    result = CliRunner().invoke(command, ["--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "docs/operations.md" in result.output
    # The variables' block is kept as written: each variable starts a line of its own.
    rows = {line.split()[0] for line in result.output.splitlines() if line.strip().startswith("MSGSTATE_")}
    assert set(variables) <= rows, result.output
