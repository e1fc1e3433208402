"""Replay: records from a byte stream through the engine into an in-memory store.

The same rules as the workers, with no broker and no Redis (SPEC section 7). Two
engines give the same bytes: the compiled one (`NativeEngine`, the default) and the
Python reference (decode + `Engine` + `MemoryStore`). The command line in
workers/replay.py only adds files.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any, BinaryIO

from msgstate.schemas.codec import dumps_line
from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.records import decode_response
from msgstate.schemas.rejections import Rejection
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore

# Records per engine batch. Any size gives the same result; small batches keep the
# decoded records in the CPU caches (measured: 128 is ~20% faster than 1024).
BATCH = 128
_CHUNK = 1 << 22

EventSink = Callable[[dict[str, Any]], None]
RejectionSink = Callable[[Rejection], None]
LineSink = Callable[[bytes], None]  # one JSON line (sorted keys, trailing newline)

ENGINES = ("native", "python")


def records_in(data: bytes) -> list[bytes]:
    """The record values of a replay file: split on b"\\n" only, blank lines skipped."""
    return [line for line in data.split(b"\n") if line and not line.isspace()]


def read_records(stream: BinaryIO, chunk: int = _CHUNK) -> Iterator[bytes]:
    """`records_in` over a stream, read in chunks."""
    rest = b""
    while True:
        block = stream.read(chunk)
        if not block:
            break
        lines = (rest + block).split(b"\n") if rest else block.split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line and not line.isspace():
                yield line
    if rest and not rest.isspace():
        yield rest


class Replayer:
    """Replay fed a batch at a time; `replay` is the usual way to drive it.

    Call `feed` with consecutive slices of the records, in order; `store` holds
    the state so far. The caller pauses the garbage collector (see `gc_paused`).
    """

    __slots__ = ("_engine", "_on_event", "_on_rejection", "store")

    def __init__(
        self,
        *,
        registry: Mapping[str, Any] | None = None,
        on_event: EventSink | None = None,
        on_rejection: RejectionSink | None = None,
        store: MemoryStore | None = None,
    ) -> None:
        # The MemoryStore counts tallies when it renders: the engine need not track them.
        self._engine = Engine(registry, events=on_event is not None, tallies=False)
        self._on_event = on_event
        self._on_rejection = on_rejection
        self.store = MemoryStore() if store is None else store

    def feed(self, records: Sequence[bytes]) -> None:
        """Apply one batch of record values."""
        store = self.store
        outcome = self._engine.apply_batch([decode_response(raw) for raw in records], store)
        store.apply(outcome.delta)
        if self._on_event is not None:
            for event in outcome.events:
                self._on_event(event)
        if self._on_rejection is not None:
            for _, rejection in outcome.rejections:
                self._on_rejection(rejection)


def replay(
    records: Iterable[bytes],
    *,
    registry: Mapping[str, Any] | None = None,
    on_event: EventSink | None = None,
    on_rejection: RejectionSink | None = None,
    store: MemoryStore | None = None,
    batch: int = BATCH,
) -> MemoryStore:
    """Apply the records in order; events and rejections go to the sinks as they arise."""
    replayer = Replayer(
        registry=registry, on_event=on_event, on_rejection=on_rejection, store=store
    )
    source = iter(records)
    with gc_paused():
        while chunk := list(islice(source, batch)):
            replayer.feed(chunk)
    return replayer.store


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector.

    Replay builds millions of small, long-lived containers; the collector would
    rescan them again and again (a third of the run time), while neither the
    decoder nor the engine makes reference cycles: reference counting frees
    everything they drop.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def replay_lines(
    records: Iterable[bytes],
    *,
    engine: str = "native",
    registry: Mapping[str, Any] | None = None,
    on_event: LineSink | None = None,
    on_rejection: LineSink | None = None,
    batch: int = BATCH,
) -> list[bytes]:
    """Replay with either engine; events and rejections go to the sinks as JSON lines.

    Returns every summary as a JSON line, sorted by (message_id, part_id): what
    `msgstate replay` prints. Both engines give the same bytes.
    """
    if engine == "python":
        store = replay(
            records,
            registry=registry,
            on_event=None if on_event is None else _encoded(on_event),
            on_rejection=None if on_rejection is None else _encoded(on_rejection),
            batch=batch,
        )
        with gc_paused():  # rendering makes many small objects; the store is not garbage
            return [dumps_line(summary) for summary in store.summaries()]
    if engine != "native":
        raise ConfigError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    # Imported here so that the Python engine runs even where the extension is missing.
    from msgstate.streams.engine.native_engine import NativeEngine

    native = NativeEngine(registry, events=on_event is not None)
    source = iter(records)
    while chunk := list(islice(source, batch)):
        events, rejections = native.feed(chunk)
        if on_event is not None:
            for event in events:
                on_event(event)
        if on_rejection is not None:
            for refused in rejections:
                on_rejection(refused)
    return native.summary_lines()


def _encoded(sink: LineSink) -> Callable[[Any], None]:
    def emit(record: Any) -> None:
        sink(dumps_line(record))

    return emit
