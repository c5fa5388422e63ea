"""YAML files a person writes and edits: read with every key once, errors naming the file.

PyYAML's safe loader keeps the last of two entries with one key silently (a second
``age:`` under ``columns:`` replaced the first); :class:`UniqueKeyLoader` refuses it.
:func:`read_yaml` and :func:`write_text` turn what the file system says (no such file, a
folder, no permission, not text) into an :class:`InvalidInput` naming the field and the
path, instead of a raw ``OSError`` or ``UnicodeDecodeError``.

Example:
    >>> import yaml
    >>> try:
    ...     yaml.load("a: 1\\na: 2\\n", Loader=UniqueKeyLoader)
    ... except yaml.YAMLError as exc:
    ...     print(exc.problem)
    found the key 'a' twice
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from loopline.errors import InvalidInput


class DuplicateKey(yaml.constructor.ConstructorError):
    """A key written twice in one YAML mapping (``key``; ``problem_mark`` is the second)."""

    def __init__(self, key: Any, mapping: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(
            "while constructing a mapping", mapping, f"found the key {key!r} twice", second
        )
        self.key = key


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping: it kept the last
    silently, so a second ``accuracy:`` entry replaced the bound above it."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *anchor' entries may be overridden, as YAML says
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable: the base class says so
                if duplicate:
                    raise DuplicateKey(key, node.start_mark, key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, *, field: str, what: str, missing_hint: str) -> Any:
    """The data of the YAML file at ``path`` (keys once each, see :class:`UniqueKeyLoader`).

    No file, a folder, a file that cannot be read or is not UTF-8 text, and invalid YAML
    are each an :class:`InvalidInput` on ``field`` naming ``path``; ``what`` says what the
    file should be ("contract file") and ``missing_hint`` how to make one.

    Example:
        >>> try:
        ...     read_yaml(Path("/"), field="contract", what="contract file", missing_hint="")
        ... except InvalidInput as exc:
        ...     print(exc.field, "-", exc.message)
        contract - / is a folder, not a contract file
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidInput(f"there is no {what} at {path}", field=field, hint=missing_hint) from exc
    except IsADirectoryError as exc:
        raise InvalidInput(
            f"{path} is a folder, not a {what}", field=field, hint="pass the YAML file itself"
        ) from exc
    except OSError as exc:  # no permission, a path through a file, an I/O error
        raise InvalidInput(
            f"the {what} {path} cannot be read: {exc.strerror or exc}",
            field=field,
            hint="check the path and the file's permissions",
        ) from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{path} is not a text file ({exc.reason}), so not a {what}",
            field=field,
            hint="pass the YAML file itself",
        ) from exc
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader
    except DuplicateKey as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise InvalidInput(
            f"{path}, line {line}: the key {exc.key!r} is written twice in one mapping "
            "(YAML would keep the last one silently)",
            field=field,
            hint="keep one entry per key: delete or rename the other",
        ) from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(
            f"{path} is not valid YAML: {exc}", field=field, hint="fix the YAML syntax"
        ) from exc


def write_text(path: Path, text: str, *, field: str) -> None:
    """Write ``text`` to ``path`` as UTF-8; a path that cannot be written (no such folder,
    a folder, no permission) is an :class:`InvalidInput` on ``field`` naming it.

    Example:
        >>> try:
        ...     write_text(Path("/no-such-folder/x.yaml"), "a: 1\\n", field="path")
        ... except InvalidInput as exc:
        ...     print(exc.message)
        cannot write /no-such-folder/x.yaml: the folder /no-such-folder does not exist
    """
    try:
        path.write_text(text, encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidInput(
            f"cannot write {path}: the folder {path.parent} does not exist",
            field=field,
            hint="create the folder first, or choose another path",
        ) from exc
    except IsADirectoryError as exc:
        raise InvalidInput(
            f"cannot write {path}: it is a folder",
            field=field,
            hint="give the path of a file (in that folder, say), not of a folder",
        ) from exc
    except OSError as exc:  # no permission, a path through a file, a full disk
        raise InvalidInput(
            f"cannot write {path}: {exc.strerror or exc}",
            field=field,
            hint="choose a path in a folder you can write",
        ) from exc
