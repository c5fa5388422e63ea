"""The raw-path layer keeps an encoded slash inside its segment (routes see it whole)."""

from __future__ import annotations

import pytest

from loopline.server.raw_path import keep_encoded_slashes


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/api/v1/runs/abc%2Fdef", "/api/v1/runs/abc%2Fdef"),
        (b"/api/v1/runs/abc%2f", "/api/v1/runs/abc%2F"),
        (b"/api/v1/runs/a%20b%2Fc%25", "/api/v1/runs/a b%2Fc%"),
        (b"/api/v1/runs/%252F", "/api/v1/runs/%2F"),  # an encoded '%' followed by '2F'
    ],
)
def test_everything_but_an_encoded_slash_is_decoded(raw: bytes, path: str) -> None:
    assert keep_encoded_slashes(raw) == path
