"""The compiled engine (native/, Rust): decode, the rules, and the state in compiled memory.

`NativeEngine` is replay's: same semantics as `decode_response` + `Engine` +
`MemoryStore` (the Python reference, held equal by differential property tests), and
the same bytes: events, rejections and summaries come out as the JSON lines
`schemas.codec.dumps_line` makes of the Python path's records. `cache_core` is the
workers' (streams/rounds/compiled_decider.py).
Records are parsed by orjson called from the compiled code, so malformed input is
judged exactly as on the Python path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from msgstate.schemas.exceptions import ConfigError, ValidationError
from msgstate.schemas.limits import DEDUPE_WINDOW
from msgstate.schemas.registry import check_registry, registry_caps

try:
    from msgstate.streams import _native
except ImportError:  # installed without Rust: the Python engine runs
    _native = None  # type: ignore[assignment]


log = logging.getLogger(__name__)
_said = False


def compiled() -> bool:
    """Whether the compiled engine is installed."""
    return _native is not None


def engine_name() -> str:
    """The engine that runs by default: "compiled" or "Python"."""
    return "compiled" if compiled() else "Python"


def default_engine() -> str:
    """`native` where the compiled engine is installed, else `python` (said once, in a log line)."""
    global _said
    if compiled():
        return "native"
    if not _said:
        _said = True
        log.warning("the compiled engine is not installed (built without Rust): the Python engine runs")
    return "python"


def _require() -> None:
    if _native is None:
        raise ConfigError("the compiled engine is not installed (built without Rust); "
                          "use MSGSTATE_ENGINE=python")


class NativeEngine:
    """Applies batches of record values to its own store (replay).

    Raises ConfigError for a bad registry (a type per name, or `{"type", "max_values"}`).
    With `events=False` versions still count but no event line is built. `window`
    response ids are remembered per message at least (as in MemoryStore).
    """

    __slots__ = ("_core", "_registry")

    def __init__(
        self,
        registry: Mapping[str, Any] | None = None,
        *,
        window: int = DEDUPE_WINDOW,
        events: bool = True,
    ) -> None:
        self._registry = check_registry(registry or {})
        _require()
        self._core = _native.Engine(self._registry, registry_caps(registry or {}), window, events, orjson)

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

    def memory_bytes(self) -> int:
        """Bytes this engine's state holds, counted from its tables (the dedupe memory apart)."""
        return self._core.memory_bytes()[0]

    def dedupe_bytes(self) -> int:
        """Bytes its dedupe memory holds, counted alike."""
        return self._core.memory_bytes()[1]


def cache_core(registry: Mapping[str, str], caps: Mapping[str, int], window: int) -> _native.Cache:
    """The compiled engine over a cache of Redis's state, for `CompiledDecider`; `registry`
    checked (name -> type), `caps` the capped states' `max_values`."""
    _require()
    return _native.Cache(registry, caps, window, orjson)


def heap_bytes() -> int:
    """Bytes the compiled code holds now, every engine together (a counting allocator)."""
    _require()
    return _native.heap_bytes()


def _checked(clip: int | None) -> int | None:
    if clip is not None and clip < 0:
        raise ValidationError(f"clip must be 0 or more, not {clip}")
    return clip
