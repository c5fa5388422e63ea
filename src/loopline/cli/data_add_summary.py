"""What ``loopline data add`` prints for people, made from its JSON answer.

Both ways the command can answer - the full app (:mod:`loopline.cli.data_cmd`) and the
quick re-add of unchanged data (:mod:`loopline.cli.entry`), which runs before Typer and
SQLAlchemy are imported - print these lines, so both print the same.

Example:
    >>> answer = {"ref": "images@3", "created_now": False, "kind": "folder",
    ...           "hash": "ab" * 32, "ingest": {"files": 2, "bytes": 2048, "hashed": 0,
    ...           "cached": 2, "stored": 0, "already_stored": 0, "seconds": 0.0}}
    >>> for line in summary_lines(answer): print(line)
    [green]images@3[/] (unchanged, same version) folder hash abababababababab
    2 file(s), 2.0 KiB: hashed 0, from cache 2, stored 0, already stored 0 in 0.00 s
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopline.cli._common import esc, human_size


def summary_lines(answer: Mapping[str, Any]) -> list[str]:
    """Rich markup lines for ``answer`` (a ``DatasetVersion.to_dict(with_files=False)``):
    the version and whether it is new, then what the ingest did when it is known.

    Example:
        >>> # for line in summary_lines(version.to_dict(with_files=False)): console.print(line)
    """
    state = "new version" if answer.get("created_now") else "unchanged, same version"
    lines = [
        f"[green]{esc(answer['ref'])}[/] ({state}) {answer['kind']} hash {answer['hash'][:16]}"
    ]
    report = answer.get("ingest")
    if report is not None:
        lines.append(
            f"{report['files']} file(s), {human_size(report['bytes'])}: hashed "
            f"{report['hashed']}, from cache {report['cached']}, stored {report['stored']}, "
            f"already stored {report['already_stored']} in {report['seconds']:.2f} s"
        )
    return lines
