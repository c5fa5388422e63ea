"""What ``loopline data add`` prints for people, made from its JSON answer.

Both ways the command can answer - the full app (:mod:`loopline.cli.data_cmd`) and the
quick re-add of unchanged data (:mod:`loopline.cli.entry`), which runs before Typer and
SQLAlchemy are imported - print these lines, so both print the same. Each line is printed
whole (Rich's ``soft_wrap``: a line piped to a log is not broken at 80 columns), so where
Rich would add no style - output that is not a terminal, as Rich decides it - the lines are
plain text and the quick re-add writes them without importing Rich (~45 ms of its ~0.13 s).

Example:
    >>> answer = {"ref": "images@3", "created_now": False, "kind": "files",
    ...           "hash": "ab" * 32, "ingest": {"files": 2, "bytes": 2048, "hashed": 0,
    ...           "cached": 2, "stored": 0, "already_stored": 0, "seconds": 0.0}}
    >>> for line in summary_lines(answer, markup=False): print(line)
    images@3 (unchanged, same version) files hash abababababababab
    2 file(s), 2.0 KiB: hashed 0, from cache 2, stored 0, already stored 0 in 0.00 s
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from loopline.cli._common import esc
from loopline.core.sizes import fmt_bytes


def summary_lines(answer: Mapping[str, Any], *, markup: bool = True) -> list[str]:
    """The lines for ``answer`` (a ``DatasetVersion.to_dict(with_files=False)``): the
    version and whether it is new, then what the ingest did when it is known. Rich markup,
    or with ``markup=False`` the plain text Rich would print for it without styles.

    Example:
        >>> # for line in summary_lines(version.to_dict(with_files=False)): console.print(line)
    """
    state = "new version" if answer.get("created_now") else "unchanged, same version"
    if answer.get("description_updated"):
        state += ", description updated"
    # A dataset name is letters, digits, '.', '_' and '-': no markup, no :emoji: code.
    ref = f"[green]{esc(answer['ref'])}[/]" if markup else answer["ref"]
    lines = [f"{ref} ({state}) {answer['kind']} hash {answer['hash'][:16]}"]
    report = answer.get("ingest")
    if report is not None:
        lines.append(
            f"{report['files']} file(s), {fmt_bytes(report['bytes'])}: hashed "
            f"{report['hashed']}, from cache {report['cached']}, stored {report['stored']}, "
            f"already stored {report['already_stored']} in {report['seconds']:.2f} s"
        )
    return lines


def styled(stream: TextIO = sys.stdout, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether Rich would write escape codes to ``stream``: Rich's own test (its
    ``Console.is_terminal``: ``TTY_COMPATIBLE``, then ``FORCE_COLOR``, then ``isatty``).

    Example:
        >>> import io
        >>> styled(io.StringIO(), {}), styled(io.StringIO(), {"FORCE_COLOR": "1"})
        (False, True)
    """
    compatible = environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    if "FORCE_COLOR" in environ:
        return environ["FORCE_COLOR"] != ""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
