from __future__ import annotations

from pathlib import Path

import pytest

from loopline.core import artifact_paths
from loopline.core.context import Context
from loopline.errors import InvalidInput, NotFound


def test_put_get_list_delete(ctx: Context, tmp_path: Path) -> None:
    artifact_paths.put_bytes(ctx, "1/run/artifacts/model/MLmodel", b"flavors: {}")
    src = tmp_path / "w.bin"
    src.write_bytes(b"weights")
    artifact_paths.put_file(ctx, "1/run/artifacts/model/data/w.bin", src)
    artifact_paths.put_bytes(ctx, "1/run/artifacts/notes_1%.txt", b"n")
    assert artifact_paths.get_bytes(ctx, "1/run/artifacts/model/data/w.bin") == b"weights"
    top = {(e.path, e.is_dir) for e in artifact_paths.list_dir(ctx, "1/run/artifacts")}
    assert top == {("1/run/artifacts/model", True), ("1/run/artifacts/notes_1%.txt", False)}
    inner = artifact_paths.list_dir(ctx, "1/run/artifacts/model")
    assert [(e.path, e.size) for e in inner if not e.is_dir] == [
        ("1/run/artifacts/model/MLmodel", 11)
    ]
    assert artifact_paths.delete_prefix(ctx, "1/run/artifacts/model") == 2
    with pytest.raises(NotFound):
        artifact_paths.get_bytes(ctx, "1/run/artifacts/model/MLmodel")
    assert artifact_paths.get_bytes(ctx, "1/run/artifacts/notes_1%.txt") == b"n"


def test_overwrite_points_at_new_bytes(ctx: Context) -> None:
    artifact_paths.put_bytes(ctx, "a/b.txt", b"one")
    artifact_paths.put_bytes(ctx, "a/b.txt", b"two")
    assert artifact_paths.get_bytes(ctx, "a/b.txt") == b"two"


@pytest.mark.parametrize(
    "bad",
    [
        "../etc/passwd",
        "a/../../b",
        "/abs/path",
        "a\\..\\b",
        "a/\x00b",
        "a/\u2024\u2024/b",
        "",
        "a/\nb",
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "absolute",
        "backslash",
        "nul",
        "unicode-dots",
        "empty",
        "newline",
    ],
)
def test_unsafe_paths_are_rejected(ctx: Context, bad: str) -> None:
    with pytest.raises(InvalidInput):
        artifact_paths.put_bytes(ctx, bad, b"x")


def test_like_wildcards_in_a_prefix_do_not_leak(ctx: Context) -> None:
    artifact_paths.put_bytes(ctx, "a_b/x", b"1")
    artifact_paths.put_bytes(ctx, "axb/y", b"2")
    assert [e.path for e in artifact_paths.list_dir(ctx, "a_b")] == ["a_b/x"]
