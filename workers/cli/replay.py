"""`msgstate replay INPUT [--changes FILE] [--rejections FILE]` (SPEC section 7)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import click

from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.registry import Entry, parse_registry
from msgstate.streams.engine.native_engine import default_engine
from msgstate.streams.engine.replay import ENGINES, read_records, replay_lines
from msgstate.workers.cli.progress import reading

ENGINE_ENV = "MSGSTATE_ENGINE"


def engine_from_env(env: Mapping[str, str] | None = None) -> str:
    """The replay engine: `native` (compiled, the default) or `python` (the reference)."""
    env = os.environ if env is None else env
    engine = env.get(ENGINE_ENV, "").strip() or default_engine()
    if engine not in ENGINES:
        raise ConfigError(f"{ENGINE_ENV}={engine!r}: it must be one of {', '.join(ENGINES)}")
    return engine


def _open_output(stack: contextlib.ExitStack, path: Path | None) -> BinaryIO | None:
    if path is None:
        return None
    try:
        return stack.enter_context(path.open("wb"))
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc


def _open_input(stack: contextlib.ExitStack, name: str) -> BinaryIO:
    if name == "-":
        return sys.stdin.buffer
    try:
        return stack.enter_context(Path(name).open("rb"))
    except OSError as exc:
        raise click.ClickException(f"cannot read {name}: {exc.strerror or exc}") from exc


@click.command()
@click.argument("input_name", metavar="INPUT")
@click.option(
    "--changes",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the summary-change events here, one JSON per line.",
)
@click.option(
    "--rejections",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the rejections here, one JSON per line.",
)
@click.option(
    "--registry",
    type=click.Path(dir_okay=False, path_type=Path),
    help='State-type registry: a JSON object of name -> type or {"type", "max_values"}, '
    'e.g. {"poll": "FWW", "reactions": {"type": "Set", "max_values": 20}}.',
)
def replay(
    input_name: str, changes: Path | None, rejections: Path | None, registry: Path | None
) -> None:
    """Apply a file of Response Messages with the engine, print every summary.

    INPUT holds one record per line ("-" reads standard input). Summaries go to
    standard output, one JSON line each, sorted by message and part.
    """
    try:
        engine = engine_from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    types: dict[str, Entry] | None = None
    if registry is not None:
        try:
            types = parse_registry(registry.read_bytes())
        except OSError as exc:
            raise click.ClickException(f"cannot read {registry}: {exc.strerror or exc}") from exc
        except ConfigError as exc:
            raise click.ClickException(f"{registry}: {exc}") from exc
    with contextlib.ExitStack() as stack:
        source = reading(_open_input(stack, input_name), f"replaying {input_name}", stack)
        events_out = _open_output(stack, changes)
        rejections_out = _open_output(stack, rejections)
        summaries = replay_lines(
            _records(source, input_name),
            engine=engine,
            registry=types,
            on_event=None if events_out is None else _writer(events_out, changes),
            on_rejection=None if rejections_out is None else _writer(rejections_out, rejections),
        )
    out = click.get_binary_stream("stdout")
    try:
        for summary in summaries:
            out.write(summary)
        out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as the Python docs advise.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _records(source: BinaryIO, name: str) -> Iterator[bytes]:
    try:
        yield from read_records(source)
    except OSError as exc:
        raise click.ClickException(f"cannot read {name}: {exc.strerror or exc}") from exc


def _writer(stream: BinaryIO, path: Path | None) -> Callable[[bytes], None]:
    write = stream.write

    def emit(record: bytes) -> None:
        try:
            write(record)
        except OSError as exc:
            raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc

    return emit
