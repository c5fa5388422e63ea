"""The point-in-time join and the latest-row query, in DuckDB over Parquet.

Both read the feature rows straight from Parquet (``read_parquet``), so a view larger than
memory works: DuckDB streams the files and spills its sorts to disk.

Rules, shared by both queries so that the online store agrees with training sets:

- Timestamps are compared as microseconds since the epoch in UTC. A tz-aware timestamp
  keeps its instant; a naive one is read as UTC (the connection's time zone is UTC).
  Sub-microsecond digits are dropped.
- Feature rows with the same key and the same event timestamp are one row: the one with
  the latest ``created`` value wins (``NULL`` created is the oldest); on a full tie the row
  that comes last in the source (file name, then row number) wins.
- A feature row is visible to an entity row at ``ts`` when its event timestamp is at or
  before ``ts`` and, with a TTL, not older than ``ts - ttl``.

Example:
    >>> # frame = historical(con, entities, [ViewSource(...)], outputs=[["clicks"]])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from loopline.errors import InvalidInput

ROW = "__ll_row"
ENTITY_TS = "__ll_ets"
_TS = "__ll_ts"
_FETCH = 50_000


@dataclass(frozen=True)
class ViewSource:
    """One feature view as the queries see it: where its rows are and how to read them."""

    name: str
    files: tuple[str, ...]
    keys: tuple[str, ...]
    timestamp: str
    created: str | None
    features: tuple[str, ...]
    ttl_us: int | None


def quote(name: str) -> str:
    """A DuckDB identifier, quoted.

    Example:
        >>> quote('a"b')
        '"a""b"'
    """
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(temp_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection set up for these queries (UTC, spill folder).

    Example:
        >>> connect().execute("SELECT current_setting('TimeZone')").fetchone()
        ('UTC',)
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {_literal(str(temp_dir))}")
    return con


def _scan(src: ViewSource) -> str:
    files = "[" + ", ".join(_literal(f) for f in src.files) + "]"
    many = ", filename = true, union_by_name = true" if len(src.files) > 1 else ""
    return f"read_parquet({files}, file_row_number = true{many})"


def describe(con: duckdb.DuckDBPyConnection, src: ViewSource) -> dict[str, str]:
    """The columns of a view's Parquet files and their DuckDB types.

    Example:
        >>> # describe(connect(), src) -> {'user_id': 'BIGINT', 'ts': 'TIMESTAMP WITH TIME ZONE'}
    """
    files = "[" + ", ".join(_literal(f) for f in src.files) + "]"
    union = ", union_by_name = true" if len(src.files) > 1 else ""
    rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({files}{union})").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def _family(duck_type: str) -> str:
    t = duck_type.upper()
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT"):
        return "integer"
    if t in ("UINTEGER", "UBIGINT", "UHUGEINT"):
        return "integer"
    if t in ("FLOAT", "DOUBLE") or t.startswith("DECIMAL"):
        return "number"
    if t.startswith("TIMESTAMP") or t == "DATE":
        return "timestamp"
    return t


def check_key_types(
    entity_types: dict[str, str], src: ViewSource, source_types: dict[str, str]
) -> None:
    """Raise :class:`InvalidInput` when a key column cannot be compared across the sides.

    Integers and floats compare; a text key against a number key does not.

    Example:
        >>> # check_key_types({"user": "VARCHAR"}, src, {"user": "BIGINT"})  -> InvalidInput
    """
    for key in src.keys:
        left, right = entity_types[key], source_types[key]
        fl, fr = _family(left), _family(right)
        if fl != fr and {fl, fr} != {"integer", "number"}:
            raise InvalidInput(
                f"key column {key!r} is {left} in the entity frame but {right} in feature "
                f"view {src.name!r}",
                field=key,
                hint=f"convert the entity frame's {key!r} column to the view's type",
            )


def check_timestamp_type(src: ViewSource, source_types: dict[str, str]) -> None:
    """Raise :class:`InvalidInput` unless the view's timestamp column holds times.

    Example:
        >>> # check_timestamp_type(src, {"ts": "BIGINT", ...})  -> InvalidInput
    """
    t = source_types[src.timestamp]
    if _family(t) != "timestamp" and t != "VARCHAR":
        raise InvalidInput(
            f"the timestamp column {src.timestamp!r} of feature view {src.name!r} is {t}, "
            "not a timestamp",
            field="timestamp",
            hint="store event times as timestamps (tz-aware, or naive meaning UTC)",
        )


def _dedup_order(src: ViewSource, created: str) -> str:
    parts = [f"{created} DESC NULLS LAST"] if src.created else []
    # One file: its name orders nothing, and carrying it through the sort costs a third of
    # the join's time.
    parts += ["__ll_file DESC", "__ll_frn DESC"] if len(src.files) > 1 else ["__ll_frn DESC"]
    return ", ".join(parts)


def _base(src: ViewSource) -> str:
    """Rows of a view with the event time as UTC microseconds in ``__ll_ts``."""
    cols = [quote(k) for k in src.keys] + [quote(f) for f in src.features]
    created = f", {quote(src.created)} AS __ll_cr" if src.created else ""
    file = "filename AS __ll_file, " if len(src.files) > 1 else ""
    return (
        f"SELECT {', '.join(dict.fromkeys(cols))}, "
        f"epoch_us(CAST({quote(src.timestamp)} AS TIMESTAMPTZ)) AS {_TS}{created}, "
        f"{file}file_row_number AS __ll_frn FROM {_scan(src)}"
    )


def _deduped(src: ViewSource) -> str:
    keys = ", ".join(quote(k) for k in src.keys)
    not_null = " AND ".join(f"{quote(k)} IS NOT NULL" for k in src.keys)
    return (
        f"SELECT * FROM ({_base(src)}) WHERE {_TS} IS NOT NULL AND {not_null} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys}, {_TS} "
        f"ORDER BY {_dedup_order(src, '__ll_cr')}) = 1"
    )


def historical_sql(sources: Sequence[ViewSource], outputs: Sequence[Sequence[str]]) -> str:
    """The ASOF query: one row per entity row, with its ``__ll_row``, in no set order.

    ``outputs[i][j]`` names the output column of ``sources[i].features[j]``. The entity
    relation ``__ll_entities`` has the key columns, ``__ll_ets`` (UTC) and ``__ll_row``.

    Example:
        >>> # con.execute(historical_sql([src], [["clicks"]])).df()
    """
    ctes = [f"f{i} AS ({_deduped(src)})" for i, src in enumerate(sources)]
    select = [f"e.{ROW}"]
    joins = []
    for i, (src, names) in enumerate(zip(sources, outputs, strict=True)):
        alias = f"f{i}"
        for feature, out in zip(src.features, names, strict=True):
            value = f"{alias}.{quote(feature)}"
            if src.ttl_us is not None:
                value = f"CASE WHEN {alias}.{_TS} >= e.{_TS} - {int(src.ttl_us)} THEN {value} END"
            select.append(f"{value} AS {quote(out)}")
        on = " AND ".join(f"e.{quote(k)} = {alias}.{quote(k)}" for k in src.keys)
        joins.append(f"ASOF LEFT JOIN {alias} ON {on} AND e.{_TS} >= {alias}.{_TS}")
    entities = f"SELECT *, epoch_us({ENTITY_TS}) AS {_TS} FROM __ll_entities"
    return (
        f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM ({entities}) e {' '.join(joins)}"
    )


def historical(
    con: duckdb.DuckDBPyConnection,
    entities: pd.DataFrame,
    sources: Sequence[ViewSource],
    outputs: Sequence[Sequence[str]],
) -> pd.DataFrame:
    """Run the point-in-time join; return the feature columns in entity row order.

    Example:
        >>> # historical(connect(), entities, [src], [["clicks"]]).columns.tolist()
        >>> # ['clicks']
    """
    con.register("__ll_entities", entities)
    try:
        entity_types = {
            str(r[0]): str(r[1])
            for r in con.execute("DESCRIBE SELECT * FROM __ll_entities").fetchall()
        }
        for src in sources:
            types = describe(con, src)
            check_key_types(entity_types, src, types)
        frame = con.execute(historical_sql(sources, outputs)).df()
    finally:
        con.unregister("__ll_entities")
    # Put the rows back in entity order: an O(n) scatter here is cheaper than ORDER BY.
    rows = frame[ROW].to_numpy()
    where = np.empty_like(rows)
    where[rows] = np.arange(len(rows), dtype=rows.dtype)
    return frame.drop(columns=[ROW]).take(where).reset_index(drop=True)


def latest_sql(src: ViewSource, end_us: int, start_us: int | None) -> str:
    """The newest row per entity with ``start <= ts <= end`` (and within the TTL of end).

    Example:
        >>> # con.execute(latest_sql(src, end_us, None)).fetchall()
    """
    lo = [start_us] if start_us is not None else []
    if src.ttl_us is not None:
        lo.append(end_us - src.ttl_us)
    where = f"{_TS} <= {int(end_us)}"
    if lo:
        where += f" AND {_TS} >= {int(max(lo))}"
    keys = ", ".join(quote(k) for k in src.keys)
    not_null = " AND ".join(f"{quote(k)} IS NOT NULL" for k in src.keys)
    cols = ", ".join(dict.fromkeys([quote(k) for k in src.keys] + [quote(f) for f in src.features]))
    order = f"{_TS} DESC, " + _dedup_order(src, "__ll_cr")
    # Rows come out sorted by the keys' text, the order of the online store's B-tree, so
    # that its inserts append instead of splitting pages (1.5x faster on SQLite).
    text = ", ".join(f"CAST({quote(k)} AS VARCHAR)" for k in src.keys)
    return (
        f"SELECT {cols} FROM ({_base(src)}) WHERE {where} AND {not_null} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1 "
        f"ORDER BY {text}"
    )


def latest_rows(
    con: duckdb.DuckDBPyConnection, src: ViewSource, end_us: int, start_us: int | None
) -> Iterator[tuple[Any, ...]]:
    """Stream ``(key..., feature...)`` tuples of the newest row per entity, in batches.

    Example:
        >>> # for row in latest_rows(connect(), src, end_us, None): ...
    """
    result = con.execute(latest_sql(src, end_us, start_us))
    while batch := result.fetchmany(_FETCH):
        yield from batch
