"""Progress bars: shown on a terminal, never in the way of the bytes read."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from rich.console import Console

from msgstate.workers.cli.progress import reading


def test_on_a_terminal_the_bytes_pass_through_a_bar_of_the_file_size(tmp_path: Path) -> None:
    data = b"".join(b'{"id": "r%d"}\n' % i for i in range(5000))
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    with path.open("rb") as raw, contextlib.ExitStack() as stack:
        stream = reading(raw, "replaying in.jsonl", stack, console)
        assert stream is not raw
        assert list(stream) == data.splitlines(keepends=True)
    assert "replaying in.jsonl" in screen.getvalue()


def test_elsewhere_the_stream_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"x\n")
    console = Console(file=io.StringIO(), force_terminal=False)
    with path.open("rb") as raw, contextlib.ExitStack() as stack:
        assert reading(raw, "publishing", stack, console) is raw
