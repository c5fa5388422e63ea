"""Reading and writing the YAML files people edit (``loopline.core.yaml_files``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopline.core.yaml_files import read_yaml, write_text
from loopline.errors import InvalidInput


def _read(path: Path) -> object:
    return read_yaml(path, field="contract", what="contract file", missing_hint="write one")


@pytest.mark.parametrize(
    ("make", "message", "hint"),
    [
        (lambda p: p, "there is no contract file at", "write one"),
        (lambda p: p.mkdir() or p, "is a folder, not a contract file", "YAML file itself"),
        (
            lambda p: p.write_bytes(b"\xff\xfe\x00") and p,
            "is not a text file (invalid start byte)",
            "YAML file itself",
        ),
        (
            lambda p: p.write_text("x") and p / "c.yaml",
            "cannot be read: Not a directory",
            "permissions",
        ),
        (lambda p: p.write_text("a: 1\nb: 2\na: 3\n") and p, "line 3: the key 'a' is", "one"),
        (lambda p: p.write_text("a: [\n") and p, "is not valid YAML", "syntax"),
    ],
    ids=["missing", "folder", "binary", "through-a-file", "duplicate-key", "bad-yaml"],
)
def test_read_yaml_names_the_file_and_what_is_wrong(
    tmp_path: Path, make: object, message: str, hint: str
) -> None:
    # A folder, a binary file and other OS errors were raw IsADirectoryError,
    # UnicodeDecodeError, ...; a key written twice silently kept the last.
    path = make(tmp_path / "c.yaml")  # type: ignore[operator]
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        _read(path)
    assert info.value.field == "contract" and str(path) in info.value.message
    assert hint in (info.value.hint or "")


def test_a_key_may_repeat_in_different_mappings(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: {x: 1}\nb: {x: 2}\n")
    assert _read(path) == {"a": {"x": 1}, "b": {"x": 2}}


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (lambda p: p / "missing" / "c.yaml", "the folder .*missing does not exist"),
        (lambda p: p, "it is a folder"),
        (lambda p: (p / "file").write_text("x") and p / "file" / "c.yaml", "Not a directory"),
    ],
    ids=["no-folder", "a-folder", "through-a-file"],
)
def test_write_text_names_a_path_that_cannot_be_written(
    tmp_path: Path, where: object, message: str
) -> None:
    path = where(tmp_path)  # type: ignore[operator]
    with pytest.raises(InvalidInput, match=message) as info:
        write_text(path, "a: 1\n", field="path")
    assert info.value.field == "path" and info.value.message.startswith(f"cannot write {path}")
