"""Which version a dataset reference means: names, version numbers, ``NAME@VERSION``, pins.

:func:`check_name`, :func:`parse_version` and :func:`parse_ref` check what a caller
wrote (a name, a number or ``"latest"``, a ``NAME@VERSION`` reference) before anything is
read; :func:`pins` and :func:`pinned` make ``"latest"`` mean a fixed version (``loopline
reproduce`` reruns a pipeline on the versions it read). Pure checks and process state,
with no catalog: other stages (the model registry, the gates, the feature store) parse
references with them without loading the rest of :mod:`loopline.data.datasets`.

Example:
    >>> parse_ref("churn@3"), parse_version("latest")
    (('churn', 3), None)
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
from collections.abc import Iterator, Mapping

import orjson

from loopline.core.columns import MAX_INTEGER, integer_value
from loopline.errors import InvalidInput

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: object, field: str = "name") -> str:
    """Return ``name`` if it is a valid dataset name, else raise :class:`InvalidInput`.

    Example:
        >>> check_name("churn-2024.v1")
        'churn-2024.v1'
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"{field} {name!r} is not a valid dataset name",
            field=field,
            hint="use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(no '/' and no '..')",
        )
    return name


def parse_version(version: int | str) -> int | None:
    """``"latest"`` -> None, ``3`` or ``"3"`` -> 3; anything else is :class:`InvalidInput`.

    Example:
        >>> parse_version("latest"), parse_version("7")
        (None, 7)
    """
    if version == "latest":
        return None
    number = integer_value(version, low=1)
    if number is not None:
        return number
    raise InvalidInput(
        f"version {version!r} is not a version number",
        field="version",
        hint=f"use a whole number from 1 to {MAX_INTEGER} or 'latest'",
    )


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"churn@3"`` -> ``("churn", 3)``; ``"churn"`` or ``"churn@latest"`` -> ``("churn", None)``.

    ``"churn@"`` is :class:`InvalidInput` (a version left out, not the latest one).

    Example:
        >>> parse_ref("churn@3"), parse_ref("churn")
        (('churn', 3), ('churn', None))
    """
    name, sep, version = ref.partition("@")
    return check_name(name), parse_version(version if sep else "latest")


#: The environment variable holding dataset pins as JSON ``{"NAME": VERSION}``. Read here
#: rather than through the settings because it must reach every process a pipeline's steps
#: run in (process pools and Ray workers inherit the environment, not our context).
PINS_ENV = "LOOPLINE_DATASET_PINS"
_pin_stack: list[dict[str, int]] = []
_pin_lock = threading.Lock()


def _check_pins(pins: Mapping[str, object], where: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, version in pins.items():
        check_name(name, field=where)
        number = parse_version(version) if isinstance(version, int | str) else None
        if number is None:
            raise InvalidInput(
                f"{where}: the pin of dataset {name!r} is {version!r}, not a version number",
                field=where,
                hint='pin whole version numbers, e.g. {"churn": 3}',
            )
        out[name] = number
    return out


@functools.cache
def _env_pins(raw: str) -> dict[str, int]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"{PINS_ENV} is not JSON: {exc}",
            field=PINS_ENV,
            hint='set it to a JSON object of dataset name -> version, e.g. {"churn": 3}',
        ) from exc
    if not isinstance(value, dict):
        raise InvalidInput(
            f"{PINS_ENV} must be a JSON object, got {type(value).__name__}",
            field=PINS_ENV,
            hint='e.g. {"churn": 3}',
        )
    return _check_pins(value, PINS_ENV)


def pins() -> dict[str, int]:
    """The dataset versions that ``get(name)`` returns instead of ``"latest"``.

    From :data:`PINS_ENV` (set by ``loopline reproduce`` for the pipeline it reruns), then
    the innermost :func:`pinned` block on top. Process-wide, not per thread: the steps of a
    pipeline run in the executor's threads.

    Example:
        >>> with pinned({"churn": 2}):
        ...     pins()["churn"]
        2
    """
    raw = os.environ.get(PINS_ENV)
    out = dict(_env_pins(raw)) if raw else {}
    with _pin_lock:
        for layer in _pin_stack:
            out.update(layer)
    return out


@contextlib.contextmanager
def pinned(versions: Mapping[str, int]) -> Iterator[dict[str, int]]:
    """Within the block, ``get(name)`` (``"latest"``) returns the pinned version of ``name``.

    An explicit version (``get(name, 3)``) is returned as asked. Used to rerun a pipeline
    on the data versions it read the first time (``loopline reproduce``).

    Example:
        >>> with pinned({"churn": 1}) as active:
        ...     active
        {'churn': 1}
    """
    layer = _check_pins(versions, "pins")
    with _pin_lock:
        _pin_stack.append(layer)
    try:
        yield dict(layer)
    finally:
        with _pin_lock:
            _pin_stack.remove(layer)
