"""Request bodies: one buffer whatever the number of chunks, refused beyond the limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelyard.errors import PayloadTooLarge
from modelyard.server.body import ClientDisconnect, asgi_chunks, read_body

pytestmark = pytest.mark.anyio


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def receiver(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


async def test_chunks_are_joined_in_order() -> None:
    parts = [bytes([i]) * 65536 for i in range(96)]  # a 6 MB body as an ASGI server hands it over
    assert await read_body(chunks(*parts), 6_291_456) == b"".join(parts)
    assert await read_body(chunks(), 10) == b""
    assert await read_body(chunks(b"", b"ab", b"", b"c"), 10) == b"abc"


async def test_a_single_chunk_is_not_copied() -> None:
    body = b"1994,3188,5,1.5,1.62,3"
    assert await read_body(chunks(body), 100) is body


async def test_too_large_is_refused_before_or_while_reading() -> None:
    with pytest.raises(PayloadTooLarge, match="Request body of 11 bytes exceeds the limit of 10 bytes"):
        await read_body(chunks(b"x"), 10, declared=11)
    with pytest.raises(PayloadTooLarge, match="exceeds the limit of 10 bytes"):
        await read_body(chunks(b"123456", b"78901"), 10)
    assert await read_body(chunks(b"12345", b"67890"), 10) == b"1234567890"


async def test_asgi_messages_and_a_client_that_leaves() -> None:
    receive = receiver(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": bytearray(b"cd"), "more_body": True},
        {"type": "http.request", "body": b"e"},
    )
    assert await read_body(asgi_chunks(receive), 10) == b"abcde"
    receive = receiver({"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"})
    with pytest.raises(ClientDisconnect):
        await read_body(asgi_chunks(receive), 10)
