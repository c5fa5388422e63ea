"""Which files Loopline reads as tables, told by their names (no heavy imports here).

Example:
    >>> is_csv(Path("train.csv.gz")), is_parquet(Path("x.parquet"))
    (True, True)
"""

from __future__ import annotations

from pathlib import Path

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")


def is_csv(path: Path) -> bool:
    """Whether ``path`` names a CSV (or TSV) file, possibly compressed.

    Example:
        >>> is_csv(Path("train.csv.gz")), is_csv(Path("x.parquet"))
        (True, False)
    """
    return path.name.lower().endswith(CSV_SUFFIXES)


def is_parquet(path: Path) -> bool:
    """Whether ``path`` names a Parquet file.

    Example:
        >>> is_parquet(Path("x.parquet"))
        True
    """
    return path.name.lower().endswith(PARQUET_SUFFIXES)
