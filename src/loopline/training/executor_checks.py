"""Checks made before anything runs: the executor's name, and whether workers can import a
step or an objective.

The pipeline, the tuner, ``loopline pipeline run`` and ``loopline reproduce`` call them
first, so a wrong name or a step defined at an interactive prompt is refused before any
step starts. They are separate from :mod:`loopline.training.executors` because they run
no call and start no worker.

Example:
    >>> check_executor_name("local")
    'local'
"""

from __future__ import annotations

import os  # noqa: F401 - check_importable's example names os.path.join
import sys
from collections.abc import Callable
from typing import Any

from loopline.errors import InvalidInput
from loopline.training.executors import EXECUTORS, Executor, get_executor
from loopline.training.steps import Step, resolve_target


def check_executor_name(name: str | Executor) -> str:
    """The executor's name, after checking it is a known one (before anything starts).

    Example:
        >>> check_executor_name("process")
        'process'
    """
    if isinstance(name, Executor):
        return name.name
    if name not in EXECUTORS:
        get_executor(name)  # raises the InvalidInput naming the choices
    return name


def check_importable(
    item: Step[Any, Any] | Callable[..., Any], what: str = "step", *, allow_main: bool = True
) -> None:
    """Raise InvalidInput unless worker processes can import ``item`` by its path.

    ``allow_main=False`` also refuses a script's ``__main__`` (Ray workers cannot import
    it; spawned processes can).

    Example:
        >>> check_importable(os.path.join, "function")
    """
    if isinstance(item, Step):
        target, fn = item.target, item.fn
    else:
        fn = item
        target = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"
    module = target.partition(":")[0]
    if module == "__main__" and not getattr(sys.modules.get("__main__"), "__file__", None):
        raise InvalidInput(
            f"the {what} {target} was defined at an interactive prompt; worker processes "
            "cannot import it",
            field=what,
            hint=f"move the {what} into a module file, or use the local executor",
        )
    if module == "__main__" and not allow_main:
        raise InvalidInput(
            f"the {what} {target} is defined in the script being run; Ray workers cannot import it",
            field=what,
            hint=f"move the {what} into a module next to the script and import it from there",
        )
    found = resolve_target(target, what=what)
    if found is not item and getattr(found, "fn", None) is not fn:
        raise InvalidInput(
            f"the {what} {target} is not what worker processes would import from there",
            field=what,
            hint=f"define the {what} once, at the top level of its module",
        )
