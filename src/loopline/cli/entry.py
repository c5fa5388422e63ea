"""The ``loopline`` script's entry point: the quick re-add first, else the Typer app.

``loopline data add NAME PATH`` (with or without ``--json``) of data that has not changed
since the newest version is answered by :mod:`loopline.data.quick_readd` with the
standard library, before Typer, SQLAlchemy and pydantic-settings are imported (~0.4 s of
start-up for a ~10 ms answer); the people's output needs Rich's console only for a
terminal (see :mod:`loopline.cli.data_add_summary`). Every other command line, and a
re-add that module cannot decide, runs the full app (:func:`loopline.cli.main.main`),
which prints the same answer the slow way. Any ``data add`` runs with the cyclic garbage
collector off (:func:`_collector_off`).

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
    if sys.argv[1:3] != ["data", "add"]:
        _run()
        return
    _collector_off()
    try:
        _run()
    finally:
        _skip_the_last_collections()


def _run() -> None:
    """The quick re-add when it can answer, else the full app."""
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

    full_main()


def _collector_off() -> None:
    """Run ``data add`` without the cyclic garbage collector's passes.

    A first add is mostly imports (Typer, pydantic-settings, SQLAlchemy: ~0.3 s of CPU) and
    a copy. The imports make hundreds of thousands of objects that live until exit, and the
    collector walks them again and again while they are made: ~13 % of the command's CPU
    on a small folder, freeing nothing. ``data add`` closes what it opens, so nothing it
    leaves in a reference cycle waits for the collector to be flushed or closed; the cycles
    it makes (a few per statement or error) are bounded and go with the process. Reference
    counting still frees every other object at once. Only this command does it: a
    long-running one (``server``, ``serve``, ``loop``) keeps the collector.
    """
    gc.disable()


def _skip_the_last_collections() -> None:
    """Let the process exit without the garbage collector's last walk over every object.

    Once ``data add`` is done (its bytes durable, its version committed, its files and
    connections closed), what is left is the interpreter's shutdown, whose collection walks
    every object that SQLAlchemy, pydantic and Typer made even with the collector off
    (:func:`_collector_off`): ~60 ms. Frozen objects are outside the collector's sight; the
    operating system frees their memory.
    """
    gc.freeze()


if __name__ == "__main__":
    main()
