"""An artifact upload's body: streamed to a temporary file, bounded, always removed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import blake3
import pytest
from starlette.requests import Request

from loopline.errors import InvalidInput
from loopline.server import upload_body
from loopline.server.upload_body import received_body


def _request(chunks: list[bytes]) -> Request:
    """A request whose body arrives in ``chunks``, through Starlette's own ASGI reader."""
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return Request({"type": "http", "method": "PUT", "headers": []}, receive)


def test_the_body_is_in_the_file_hashed_and_the_file_goes_afterwards() -> None:
    chunks = [b"alpha-", b"beta-", b"gamma"]
    hasher = blake3.blake3()

    async def receive_it() -> tuple[str, bytes, int]:
        async with received_body(_request(chunks), "a.bin", hasher) as (path, size):
            return path, Path(path).read_bytes(), size

    path, data, size = asyncio.run(receive_it())
    assert data == b"".join(chunks) and size == len(data)
    assert hasher.hexdigest() == blake3.blake3(data).hexdigest()
    assert not Path(path).exists()


def test_a_body_past_the_bound_is_refused_naming_the_artifact_and_nothing_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upload_body, "MAX_ARTIFACT_BYTES", 10)
    made: list[str] = []
    real_mkstemp = upload_body.tempfile.mkstemp

    def mkstemp(**kwargs: Any) -> tuple[int, str]:
        fd, name = real_mkstemp(**kwargs)
        made.append(name)
        return fd, name

    monkeypatch.setattr(upload_body.tempfile, "mkstemp", mkstemp)

    async def receive_it() -> None:
        async with received_body(_request([b"123456", b"78901"]), "big.bin"):
            raise AssertionError("a body past the bound reached the route")

    with pytest.raises(InvalidInput, match=r"'big\.bin' is larger than 10 bytes") as caught:
        asyncio.run(receive_it())
    assert caught.value.field == "body"
    assert len(made) == 1 and not Path(made[0]).exists()


def test_the_file_goes_when_the_route_fails_with_it() -> None:
    seen: list[str] = []

    async def receive_it() -> None:
        async with received_body(_request([b"x"]), "a.bin") as (path, _):
            seen.append(path)
            raise RuntimeError("the store failed")

    with pytest.raises(RuntimeError):
        asyncio.run(receive_it())
    assert seen and not Path(seen[0]).exists()
