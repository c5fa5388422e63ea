"""What every CLI command shares: the console, JSON output, and the error boundary."""

from __future__ import annotations

import re
import sys
import traceback
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from rich.console import Console

    console: Console
    err_console: Console

_consoles: dict[str, Console] = {}


def _console(name: str) -> Console:
    if name not in _consoles:
        from rich.console import Console

        _consoles[name] = Console(stderr=name == "err_console")
    return _consoles[name]


def __getattr__(name: str) -> Console:
    """``console`` (stdout) and ``err_console`` (stderr), made on first use: importing Rich
    costs a quick command (``loopline data add --json``) more than its work."""
    if name not in ("console", "err_console"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _console(name)


class _State:
    debug = False


state = _State()


def print_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout (for ``--json``)."""
    sys.stdout.write(
        orjson.dumps(
            value,
            option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
            default=str,
        ).decode()
        + "\n"
    )
    sys.stdout.flush()


def esc(value: object) -> str:
    """``value`` as text that Rich prints verbatim inside a markup string or a table cell.

    Data values, paths, dtypes and error messages can hold ``[...]`` (``datetime64[ns]``,
    ``a[/b]``); Rich would take that for markup, dropping the text or failing on a closing
    tag it did not open. A control character but tab and newline is shown as its escape
    (``\\x1b``): Rich passes ESC through, and a stored name holding ``ESC[31m`` (written
    before names were checked, or by another tool) would recolour or rewrite the terminal.

    Example:
        >>> print(esc("datetime64[ns] or [/quote]"))
        datetime64\\[ns] or \\[/quote]
        >>> print(esc("u\\x1b[31m"))
        u\\x1b[31m
    """
    from rich.markup import escape

    return escape(_UNPRINTABLE.sub(_visible, str(value)))


#: What :func:`esc` shows as an escape: C0 controls but tab and newline, DEL, C1 controls.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(found: re.Match[str]) -> str:
    return f"\\x{ord(found.group()):02x}"


def report_error(exc: BaseException) -> int:
    """Print a one-line error (a traceback too with ``--debug``); return the exit code."""
    from loopline.errors import LooplineError

    debug = state.debug or _debug_setting()
    if debug:
        traceback.print_exception(exc)
    err_console = _console("err_console")
    if type(exc).__module__.partition(".")[0] in ("sqlalchemy", "sqlite3"):
        from loopline.core.db import lock_wait_error

        exc = lock_wait_error(exc) or exc  # the driver's words say neither why nor what to do
    if isinstance(exc, LooplineError):
        err_console.print(
            f"[bold red]error:[/] {esc(exc)}", highlight=False, markup=True, soft_wrap=True
        )
        return exc.exit_code
    err_console.print(
        f"[bold red]error:[/] {type(exc).__name__}: {esc(exc)}", highlight=False, soft_wrap=True
    )
    if not debug:
        err_console.print("run again with --debug for the traceback", style="dim")
    return 1


def _debug_setting() -> bool:
    """``LOOPLINE_DEBUG`` (or ``debug`` in loopline.toml); read only when an error is shown."""
    from loopline.config import load_settings

    try:
        return load_settings().debug
    except Exception:  # a broken setting must not hide the error being reported
        return False
