"""The compiled engine (native/, Rust); `streams.native_engine` is the typed way in."""

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

class Engine:
    def __init__(
        self, registry: Mapping[str, str], window: int, events: bool, orjson: ModuleType
    ) -> None: ...
    def feed(
        self, values: Sequence[bytes], authentic: Sequence[bool] | None = None
    ) -> tuple[list[bytes], list[bytes]]: ...
    def summary_lines(self, clip: int | None = None) -> list[bytes]: ...
    def summary_line(self, message_id: str, part_id: str, clip: int | None = None) -> bytes: ...
    def live_values(self) -> int: ...
    def forget_response_ids(self) -> None: ...
    def memory_bytes(self) -> tuple[int, int]: ...

def heap_bytes() -> int: ...
def record_batch(
    records: bytes, count: int, timestamp: int, producer_id: int, producer_epoch: int,
    base_sequence: int,
) -> bytes: ...
def murmur2(key: bytes) -> int: ...

_Meta = tuple[str, str, int, list[tuple[str, str]]]

class Cache:
    def __init__(
        self,
        registry: Mapping[str, str],
        window: int,
        events: bool,
        tallies: bool,
        orjson: ModuleType,
    ) -> None: ...
    def decide(
        self, values: Sequence[bytes], authentic: Sequence[bool] | None = None
    ) -> tuple[
        list[tuple[str, str]], list[tuple[str, str, str, str]], list[tuple[str, str]]
    ]: ...
    def decide_read(
        self, values: Sequence[bytes], authentic: Sequence[bool] | None, prefix: str,
        whole_fields: int,
    ) -> tuple[list[str], list[bytes | int]] | None: ...
    def load_reply(self, reply: Any) -> None: ...
    def load(
        self,
        metas: list[_Meta],
        held: list[tuple[str, str, str, str, bytes | tuple[bytes, ...] | None]],
        seen: list[tuple[str, list[str]]],
        whole: list[tuple[str, str]],
    ) -> None: ...
    def apply(
        self, delta: bool = True
    ) -> tuple[
        list[tuple[bytes, bytes]],
        list[tuple[int, bytes]],
        list[_Meta],
        list[tuple[str, str, str, str, bytes | tuple[bytes, ...] | None]],
        list[tuple[str, str, str, bytes, int]],
        list[tuple[str, str, int]],
        list[_Meta],
    ]: ...
    def writes(
        self, prefix: str, base: int, window: int
    ) -> tuple[list[str], bytes]: ...
    def route(
        self, keys: list[bytes | None], starts: list[int], partitions: int, max_bytes: int
    ) -> tuple[list[bytes], list[tuple[int, int, bytes]]]: ...
    def commit(self) -> None: ...
    def clear(self) -> None: ...
    def entries(self) -> int: ...
    def summary_line(self, message_id: str, part_id: str, clip: int | None = None) -> bytes: ...
