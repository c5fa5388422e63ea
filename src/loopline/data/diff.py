"""What changed between two dataset versions: files, rows, columns and statistics.

Files are compared by path and digest. For two table versions, rows are compared as
multisets with DuckDB (``EXCEPT ALL`` over the Parquet files, so a duplicated row counts
twice) on the columns both versions share with the same type; columns are compared by
name and type; and a numeric column's statistics "moved" when

- its mean shifted by more than ``mean_tol`` standard deviations (of the older version),
- its standard deviation changed by more than ``std_tol`` (relative), or
- its share of nulls changed by more than ``null_tol`` (absolute, 0.01 = one point), or
- its infinities (``inf``/``-inf``, counted in a floating-point column's ``infinite``
  statistic): the column gained them where it had none, lost them all, or their share
  changed by more than ``null_tol``. One infinity among a million rows is worth a line:
  most models cannot take it.

Example:
    >>> # d = diff_versions(a, b); d.rows_added, d.columns_added, d.stat_changes
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loopline.data.ingest import FileEntry

MEAN_TOL = 0.1
STD_TOL = 0.1
NULL_TOL = 0.01


@dataclass(frozen=True)
class StatChange:
    """One statistic of one column that moved beyond its tolerance."""

    column: str
    statistic: str
    before: float | None
    after: float | None


@dataclass(frozen=True)
class DatasetDiff:
    """The differences from version ``a`` to version ``b`` (``a`` is the older one).

    ``kind_before`` and ``kind_after`` are the versions' kinds (``"table"`` or
    ``"files"``); rows, columns and statistics are compared between two tables only.
    """

    a: str
    b: str
    same_content: bool
    files_added: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)
    rows_before: int | None = None
    rows_after: int | None = None
    rows_added: int | None = None
    rows_removed: int | None = None
    rows_compared_on: list[str] = field(default_factory=list)
    columns_added: list[str] = field(default_factory=list)
    columns_removed: list[str] = field(default_factory=list)
    columns_type_changed: dict[str, tuple[str, str]] = field(default_factory=dict)
    stat_changes: list[StatChange] = field(default_factory=list)
    kind_before: str | None = None
    kind_after: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The diff as plain data (for JSON).

        Example:
            >>> DatasetDiff("d@1", "d@2", same_content=True).to_dict()["same_content"]
            True
        """
        return asdict(self)


def null_share(stats: dict[str, Any]) -> float | None:
    """The share of nulls in a column's statistics, or None for an empty column.

    Example:
        >>> null_share({"count": 3, "nulls": 1})
        0.25
    """
    total = int(stats.get("count", 0)) + int(stats.get("nulls", 0))
    return None if total == 0 else int(stats.get("nulls", 0)) / total


def diff_files(a: list[FileEntry], b: list[FileEntry]) -> tuple[list[str], list[str], list[str]]:
    """Paths added, removed and changed (same path, other digest) from ``a`` to ``b``.

    Example:
        >>> x, y = FileEntry("p", "0" * 64, 1), FileEntry("p", "1" * 64, 1)
        >>> diff_files([x], [y])
        ([], [], ['p'])
    """
    da, db = {e.path: e.digest for e in a}, {e.path: e.digest for e in b}
    added = sorted(set(db) - set(da))
    removed = sorted(set(da) - set(db))
    changed = sorted(p for p in set(da) & set(db) if da[p] != db[p])
    return added, removed, changed


def diff_stats(
    a: dict[str, dict[str, Any]],
    b: dict[str, dict[str, Any]],
    *,
    mean_tol: float = MEAN_TOL,
    std_tol: float = STD_TOL,
    null_tol: float = NULL_TOL,
) -> list[StatChange]:
    """Statistics that moved beyond their tolerance, for columns in both ``a`` and ``b``.

    Example:
        >>> s1 = {"x": {"count": 10, "nulls": 0, "mean": 0.0, "std": 1.0}}
        >>> s2 = {"x": {"count": 10, "nulls": 0, "mean": 0.5, "std": 1.0}}
        >>> [c.statistic for c in diff_stats(s1, s2)]
        ['mean']
    """
    changes: list[StatChange] = []
    for col in [c for c in a if c in b]:
        sa_, sb = a[col], b[col]
        ma, mb, std_a, std_b = sa_.get("mean"), sb.get("mean"), sa_.get("std"), sb.get("std")
        if ma is not None and mb is not None:
            scale = std_a if std_a else (abs(ma) or 1.0)
            if abs(mb - ma) / scale > mean_tol:
                changes.append(StatChange(col, "mean", ma, mb))
        if std_a is not None and std_b is not None:
            moved = abs(std_b - std_a) / std_a > std_tol if std_a else std_b != 0
            if moved:
                changes.append(StatChange(col, "std", std_a, std_b))
        na, nb = null_share(sa_), null_share(sb)
        if na is not None and nb is not None and abs(nb - na) > null_tol:
            changes.append(StatChange(col, "null_share", na, nb))
        if _infinities_moved(sa_, sb, null_tol):
            changes.append(StatChange(col, "infinite", sa_["infinite"], sb["infinite"]))
    return changes


def _infinities_moved(a: dict[str, Any], b: dict[str, Any], tol: float) -> bool:
    """Whether a column gained or lost all its infinities, or their share moved past ``tol``.

    Example:
        >>> _infinities_moved({"count": 100, "infinite": 0}, {"count": 100, "infinite": 1}, 0.01)
        True
    """
    ia, ib = a.get("infinite"), b.get("infinite")
    if ia is None or ib is None:  # not a float column, or stats from before they were counted
        return False
    if (ia == 0) != (ib == 0):
        return True
    ta, tb = int(a.get("count", 0)), int(b.get("count", 0))
    return bool(ta and tb and abs(ib / tb - ia / ta) > tol)


def diff_rows(a_path: Path, b_path: Path, columns: list[str]) -> tuple[int, int]:
    """Rows of ``b`` not in ``a`` and rows of ``a`` not in ``b`` (multisets, on ``columns``).

    Example:
        >>> # diff_rows(Path("a.parquet"), Path("b.parquet"), ["id", "x"])  -> (12, 3)
    """
    import duckdb

    cols = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    con = duckdb.connect()
    try:
        for view, path in (("a", a_path), ("b", b_path)):
            literal = "'" + str(path).replace("'", "''") + "'"
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({literal})")
        added = con.execute(
            f"SELECT count(*) FROM (SELECT {cols} FROM b EXCEPT ALL SELECT {cols} FROM a)"
        ).fetchone()
        removed = con.execute(
            f"SELECT count(*) FROM (SELECT {cols} FROM a EXCEPT ALL SELECT {cols} FROM b)"
        ).fetchone()
    finally:
        con.close()
    return int(added[0]) if added else 0, int(removed[0]) if removed else 0
