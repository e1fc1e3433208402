"""Record ids: time-ordered (ULID layout, Crockford base32), so they sort by creation time.

Responses take `r-`, deletions `d-` and erasures `e-` (SPEC section 3a's examples)."""

from __future__ import annotations

import os
import threading
import time

PREFIX = "r-"
DELETION_PREFIX = "d-"
ERASURE_PREFIX = "e-"
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80


def _base32(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[number & 31])
        number >>= 5
    return "".join(reversed(chars))


class ResponseIds:
    """Makes a prefix (`r-` by default) + 26-character ULIDs; within one millisecond they still
    increase."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def new(self, now_ms: int | None = None, prefix: str = PREFIX) -> str:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        with self._lock:
            if ms <= self._last_ms:  # same millisecond, or the clock went back: keep increasing
                ms = self._last_ms
                random = self._last_random + 1
            else:
                random = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
            self._last_ms, self._last_random = ms, random
        return prefix + _base32(ms & (2**48 - 1), 10) + _base32(random & (2**_RANDOM_BITS - 1), 16)


new_response_id = ResponseIds().new
