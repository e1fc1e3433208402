"""Commands packed by hiredis are the bytes redis-py would have sent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection

from msgstate.streams.storage.client import PackedConnection, PackedSSLConnection, packed_client

arguments = st.lists(st.one_of(st.binary(max_size=300), st.text(max_size=50),
                               st.integers(min_value=-(2**63), max_value=2**63 - 1)), max_size=30)


@given(st.sampled_from(["EVALSHA", "HGETALL", "CONFIG GET", b"ZRANGE"]), arguments)
def test_the_same_bytes_as_redis_py(command: str | bytes, args: list[object]) -> None:
    ours = b"".join(PackedConnection().pack_command(command, *args))
    theirs = b"".join(Connection().pack_command(command, *args))
    assert ours == theirs


def test_plain_and_tls_urls_keep_their_kind_of_connection() -> None:
    plain = packed_client("redis://127.0.0.1:1/0")
    tls = packed_client("rediss://127.0.0.1:1/0")
    assert plain.connection_pool.connection_class is PackedConnection
    assert tls.connection_pool.connection_class is PackedSSLConnection
