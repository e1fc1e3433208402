"""The compiled engine (native/, Rust): decode, the rules, and the state in compiled memory.

`NativeEngine` is replay's: same semantics as `decode_response` + `Engine` +
`MemoryStore` (the Python reference, held equal by differential property tests), and
the same bytes: events, rejections and summaries come out as the JSON lines
`schemas.codec.dumps_line` makes of the Python path's records. `NativeStateCache` is
the workers' (a cache of the state in Redis, two phases per batch, a `StateDelta` out).
Records are parsed by orjson called from the compiled code, so malformed input is
judged exactly as on the Python path.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import orjson

from schemas.exceptions import ConfigError, ValidationError
from schemas.limits import DEDUPE_WINDOW
from schemas.registry import check_registry
from streams.engine.decider import Decision, ReadScript, RedisLayout, Routes
from streams.engine.state import Held, PartKey, PartMeta, StateDelta, StateNeeds, ValueKey
from streams.engine.state_cache import CACHE_ENTRIES

try:
    from streams import _native
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
        self._registry = check_registry(registry or {})
        _require()
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

    def memory_bytes(self) -> int:
        """Bytes this engine's state holds, counted from its tables (the dedupe memory apart)."""
        return self._core.memory_bytes()[0]

    def dedupe_bytes(self) -> int:
        """Bytes its dedupe memory holds, counted alike."""
        return self._core.memory_bytes()[1]


# What a batch produced: the same record as the Python decider's.
NativeOutcome = Decision


class NativeStateCache:
    """The compiled engine over a cache of the state in Redis (a worker's partition).

    A batch goes: `decide` (decode; the `StateNeeds` the cache does not hold) → `load`
    what Redis has for them → `apply` (the cache takes the writes at once; the outcome
    carries them as a `StateDelta` equal to the Python engine's) → `commit` once Redis
    holds them, or `clear` when their fate is unknown: an applied batch must be committed
    or cleared before the next `decide`. Past `limit` entries, `decide` starts again empty
    (like `StateCache`).
    """

    __slots__ = ("_core", "_every", "_unchecked", "limit")

    def __init__(
        self,
        registry: Mapping[str, str] | None = None,
        *,
        window: int = DEDUPE_WINDOW,
        events: bool = True,
        tallies: bool = True,
        limit: int = CACHE_ENTRIES,
    ) -> None:
        _require()
        self._core = _native.Cache(check_registry(registry or {}), window, events, tallies, orjson)
        self.limit = limit
        # Counting the entries walks every part: at a few per cent of a worker's CPU under a
        # steady load, it is done once per hundredth of the limit in records (a record adds a
        # few entries), so the cache may pass its limit by a few per cent.
        self._every = max(1, min(10_000, limit // 100))
        self._unchecked = 0

    def decide(self, values: Sequence[bytes], authentic: Sequence[bool] | None = None,
               layout: RedisLayout | None = None) -> StateNeeds | ReadScript | None:
        """Take a batch of record values; returns what it reads that the cache does not hold:
        as `StateNeeds`, or with a layout as the read script's request (None: nothing), whose
        reply its `take` loads."""
        if authentic is not None and len(authentic) != len(values):
            raise ValueError("authentic needs one verdict per value")
        self._unchecked += len(values)
        if self._unchecked >= self._every:
            self._unchecked = 0
            if self._core.entries() > self.limit:
                self._core.clear()
        if layout is not None:
            # Keys, fields and the reply stay in compiled code: building the request and
            # parsing the reply in Python took a sixth of a worker's CPU.
            request = self._core.decide_read(values, authentic, layout.prefix, layout.whole_fields)
            return None if request is None else ReadScript(*request, self._core.load_reply)
        parts, values_needed, response_ids = self._core.decide(values, authentic)
        return StateNeeds(set(parts), set(values_needed), set(response_ids))

    def load(
        self,
        metas: Mapping[PartKey, PartMeta],
        held: Mapping[ValueKey, Held | None],
        seen: Mapping[str, list[str]],
        whole: Collection[PartKey] = (),
    ) -> None:
        """Take in what was read from Redis (the shapes of `StateCache.loaded`)."""
        self._core.load(
            [(mid, pid, meta.version, list(meta.types.items())) for (mid, pid), meta in metas.items()],
            [(*key, value) for key, value in held.items()],
            list(seen.items()),
            list(whole),
        )

    def apply(self, layout: RedisLayout | None = None) -> NativeOutcome:
        """Apply the decided batch. With a layout, the writes come made for the persist
        script (`writes`), and the delta holds only the taken ids."""
        core = self._core
        events, rejections, parts, values, tallies, taken, before = core.apply(layout is None)
        delta = StateDelta(
            parts={(mid, pid): PartMeta(version, dict(types)) for mid, pid, version, types in parts},
            values={(mid, pid, name, ident): held for mid, pid, name, ident, held in values},
            tallies={(mid, pid, name, value): n for mid, pid, name, value, n in tallies},
            taken=[(mid, rid) for mid, rid, _ in taken],
        )
        return NativeOutcome(
            events=events,
            rejections=[(index, orjson.loads(line)) for index, line in rejections],
            delta=delta,
            taken_at=[index for _, _, index in taken],
            before={(mid, pid): PartMeta(version, dict(types)) for mid, pid, version, types in before},
            writes=None if layout is None else core.writes(layout.prefix, layout.base, layout.window),
        )

    def route(self, keys: Sequence[bytes | None], starts: Sequence[int], partitions: int,
              max_bytes: int) -> Routes:
        """The applied batch's events routed: each input partition's outbox frames (the event
        under the partition of the last record keyed by its message id, else the first), and
        the records of each events-topic partition (Kafka's murmur2 of the message id) as
        record batches of at most `max_bytes` of records (one at least)."""
        return self._core.route(list(keys), list(starts), partitions, max_bytes)

    def commit(self) -> None:
        """Redis holds the applied batch: the cache keeps it."""
        self._core.commit()

    def clear(self) -> None:
        """Drop everything held; the next batch loads what it needs again."""
        self._core.clear()



def heap_bytes() -> int:
    """Bytes the compiled code holds now, every engine together (a counting allocator)."""
    _require()
    return _native.heap_bytes()


def _checked(clip: int | None) -> int | None:
    if clip is not None and clip < 0:
        raise ValidationError(f"clip must be 0 or more, not {clip}")
    return clip
