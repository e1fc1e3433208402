"""Progress bars for long commands: on standard error, and only when it is a terminal, so pipes,
files and tests see exactly the output they saw before."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from typing import BinaryIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def reading(stream: BinaryIO, what: str, stack: contextlib.ExitStack,
            console: Console | None = None) -> BinaryIO:
    """`stream`, read through a progress bar of the bytes read (of the file's size, when it is a
    regular file); `stream` itself when standard error is not a terminal."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        return stream
    total: int | None = None
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        info = os.fstat(stream.fileno())
        if stat.S_ISREG(info.st_mode):
            total = info.st_size - stream.tell()
    progress = stack.enter_context(Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=console, transient=True))
    return stack.enter_context(progress.wrap_file(stream, total=total, description=what))
