"""The compiled engine: decode, the rules, an in-memory store and summaries, in one object.

Same semantics as `decode_response` + `Engine` + `MemoryStore` (the Python reference,
held equal by differential property tests), and the same bytes: events, rejections and
summaries come out as the JSON lines `schemas.codec.dumps_line` makes of the Python
path's records. Records are parsed by orjson called from the compiled code, so malformed
input is judged exactly as on the Python path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from schemas.exceptions import ValidationError
from schemas.limits import DEDUPE_WINDOW
from schemas.registry import check_registry
from streams import _native


class NativeEngine:
    """Applies batches of record values to its own store (replay).

    Raises ConfigError for a bad registry. With `events=False` versions still
    count but no event line is built. `window` response ids are remembered per
    message at least (as in MemoryStore).
    """

    __slots__ = ("_core", "_registry")

    def __init__(
        self,
        registry: Mapping[str, str] | None = None,
        *,
        window: int = DEDUPE_WINDOW,
        events: bool = True,
    ) -> None:
        if window < 1:
            raise ValueError("the dedupe window must hold at least one id")
        self._registry = check_registry(registry or {})
        self._core = _native.Engine(self._registry, window, events, orjson)

    @property
    def registry(self) -> Mapping[str, str]:
        return dict(self._registry)

    def feed(
        self, values: Sequence[bytes], authentic: Sequence[bool] | None = None
    ) -> tuple[list[bytes], list[bytes]]:
        """Apply a batch of record values in order: (event lines, rejection lines).

        `authentic` is each record's signature verdict (all True when omitted).
        """
        if authentic is not None and len(authentic) != len(values):
            raise ValueError("authentic needs one verdict per value")
        return self._core.feed(values, authentic)

    def summary_lines(self, clip: int | None = None) -> list[bytes]:
        """Every summary of a part with a fixed name, as JSON lines, by (message, part)."""
        return self._core.summary_lines(_checked(clip))

    def summary(self, message_id: str, part_id: str, clip: int | None = None) -> dict[str, Any]:
        """One part's summary (like `MemoryStore.summary`)."""
        summary: dict[str, Any] = orjson.loads(
            self._core.summary_line(message_id, part_id, _checked(clip))
        )
        return summary

    def summaries(self, clip: int | None = None) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.summary_lines(clip)]

    def live_values(self) -> int:
        """How many (identity, state, value) are held: one per scalar, one per Set member."""
        return self._core.live_values()

    def forget_response_ids(self) -> None:
        """Drop the dedupe memory (to measure the state alone)."""
        self._core.forget_response_ids()


def heap_bytes() -> int:
    """Bytes the compiled code holds now, every engine together (a counting allocator)."""
    return _native.heap_bytes()


def _checked(clip: int | None) -> int | None:
    if clip is not None and clip < 0:
        raise ValidationError(f"clip must be 0 or more, not {clip}")
    return clip
