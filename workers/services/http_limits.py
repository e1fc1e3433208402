"""Bounds of the HTTP API under abuse: open event streams, and the sizes the server reads."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from msgstate.schemas.exceptions import MsgstateError

# aiohttp's request parser: longer request lines and header fields, or more headers, get a 4xx
# before any handler runs. A `?token=` must fit the request line (tokens are at most 4096).
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 64


class TooManyStreams(MsgstateError):
    """No stream slot is free: in all, or for this token."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class StreamSlots:
    """Counts open event streams, in all and per token, and refuses one over either bound."""

    def __init__(self, total: int, per_token: int) -> None:
        self.total = total
        self.per_token = per_token
        self._by_token: Counter[bytes] = Counter()
        self.open = 0

    @contextlib.contextmanager
    def hold(self, token_id: bytes | None) -> Iterator[None]:
        """One slot while the block runs; `token_id` None (reads without tokens) counts in all only."""
        if self.open >= self.total:
            raise TooManyStreams(f"this server has {self.open} event streams open, its limit")
        if token_id is not None and self._by_token[token_id] >= self.per_token:
            raise TooManyStreams(f"this token has {self.per_token} event streams open, its limit")
        self.open += 1
        if token_id is not None:
            self._by_token[token_id] += 1
        try:
            yield
        finally:
            self.open -= 1
            if token_id is not None:
                self._by_token[token_id] -= 1
                if not self._by_token[token_id]:
                    del self._by_token[token_id]
