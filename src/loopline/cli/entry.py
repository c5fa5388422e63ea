"""The ``loopline`` script's entry point: the quick re-add first, else the Typer app.

``loopline data add NAME PATH`` (with or without ``--json``) of data that has not changed
since the newest version is answered by :mod:`loopline.data.quick_readd` with the
standard library, before Typer, SQLAlchemy and pydantic-settings are imported (~0.4 s of
start-up for a ~10 ms answer); the people's output needs Rich's console only for a
terminal (see :mod:`loopline.cli.data_add_summary`). Every other command line, and a
re-add that module cannot decide, runs the full app (:func:`loopline.cli.main.main`),
which prints the same answer the slow way (and, for ``data add``, skips the collector's
walk at exit: :func:`_skip_the_last_collections`).

Only the plain shape is taken: exactly ``data add``, two arguments that are not options,
and at most ``--json`` (in any order after ``add``). Anything else (``--description``,
``--debug``, ``--help``) goes to the full app.

Example:
    >>> quick_add_request(["data", "add", "images", "img/", "--json"])
    ('images', 'img/', True)
    >>> quick_add_request(["data", "add", "images", "img/"])
    ('images', 'img/', False)
    >>> quick_add_request(["data", "add", "images", "img/", "-d", "March"]) is None
    True
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence


def quick_add_request(args: Sequence[str]) -> tuple[str, str, bool] | None:
    """``(NAME, PATH, JSON)`` when ``args`` is ``data add NAME PATH`` with or without
    ``--json`` (options after ``add`` in any order), else None.

    Example:
        >>> quick_add_request(["data", "add", "--json", "churn", "x.bin"])
        ('churn', 'x.bin', True)
    """
    if len(args) not in (4, 5) or list(args[:2]) != ["data", "add"]:
        return None
    rest = list(args[2:])
    json_out = "--json" in rest
    if rest.count("--json") > 1 or len(rest) - json_out != 2:
        return None
    if json_out:
        rest.remove("--json")
    # An empty argument or one that looks like an option is the full app's to judge.
    if any(not arg or arg.startswith("-") for arg in rest):
        return None
    return rest[0], rest[1], json_out


def main() -> None:
    """Run ``loopline``: the quick re-add when it can answer, else the full app.

    Example:
        >>> # $ loopline data add images data/images/   (unchanged: ~0.1 s)
    """
    request = quick_add_request(sys.argv[1:])
    if request is not None:
        from loopline.data.quick_readd import unchanged_readd

        name, path, json_out = request
        answer = unchanged_readd(name, path)
        if answer is not None:
            from loopline.cli import _common

            if json_out:
                _common.print_json(answer)
                return
            from loopline.cli.data_add_summary import styled, summary_lines

            if not styled():  # what Rich prints here is the plain text: no need of Rich
                sys.stdout.write(
                    "".join(f"{line}\n" for line in summary_lines(answer, markup=False))
                )
                sys.stdout.flush()
                return
            for line in summary_lines(answer):
                _common.console.print(line, soft_wrap=True)
            return
    from loopline.cli.main import main as full_main

    if sys.argv[1:3] != ["data", "add"]:
        full_main()
        return
    try:
        full_main()
    finally:
        _skip_the_last_collections()


def _skip_the_last_collections() -> None:
    """Let the process exit without the garbage collector's last walk over every object.

    Once ``data add`` is done (its bytes durable, its version committed, its files and
    connections closed), what is left is the interpreter's shutdown, whose collections walk
    every object that SQLAlchemy, pydantic and Typer made: ~0.1 s, a tenth of the command.
    Frozen objects are outside the collector's sight; the operating system frees their
    memory. Only this command does it: its code closes what it opens, so there is nothing
    in a reference cycle waiting for the collector to flush or close it.
    """
    gc.freeze()


if __name__ == "__main__":
    main()
