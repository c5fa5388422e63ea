"""The point-in-time join and the latest-row query, in DuckDB over Parquet.

Both read the feature rows straight from Parquet (``read_parquet``), so a view larger than
memory works: DuckDB streams the files and spills its sorts to disk.

The join runs in three steps:

1. once per version of a view's data, :func:`write_prepared` stores its rows
   deduplicated (the tie rules below) and sorted by key and event time;
2. per training set, an ASOF JOIN of the entity rows against the prepared file's keys and
   times finds the position of each entity row's feature row (:func:`historical_sql`);
3. the feature values are fetched at those positions (:mod:`loopline.data.parquet_take`)
   and put back in entity order with an O(n) scatter, not a sort.

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
    >>> # frame = historical(con, entities, [PreparedView(...)], outputs=[["clicks"]])
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from loopline.data.parquet_take import Column, take_rows
from loopline.errors import InvalidInput

ROW = "__ll_row"
ENTITY_TS = "__ll_ets"
_TS = "__ll_ts"
_FILE = "__ll_file"
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
    # The created column holds text (ISO 8601 times), read as times: as text
    # "10:00+05:00" would sort after "06:00Z" though it is an hour older.
    created_is_text: bool = False
    # Columns of nanosecond timestamps: DuckDB's cast to microseconds rounds them (.0000015
    # becomes .000002), where the rule (and a frame source) drops the digits.
    nanosecond_columns: tuple[str, ...] = ()
    # Features of Arrow's duration type and their unit ("s", "ms", "us", "ns"): DuckDB reads
    # them as plain integers in that unit; the prepared copy stores them as microseconds.
    duration_units: tuple[tuple[str, str], ...] = ()


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


# DuckDB adds the column file_row_number (the tie-break's position) to a scan, and refuses a
# file that has a column of that name; internal columns start with __ll_.
ROW_NUMBER_COLUMN = "file_row_number"
INTERNAL_PREFIX = "__ll_"


def reserved_column(name: str) -> bool:
    """Whether a view cannot use a column named ``name`` (see :func:`check_column_names`).

    Example:
        >>> reserved_column("file_row_number"), reserved_column("__ll_ts"), reserved_column("x")
        (True, True, False)
    """
    return name == ROW_NUMBER_COLUMN or name.startswith(INTERNAL_PREFIX)


def check_column_names(src: ViewSource, source_types: dict[str, str]) -> None:
    """Raise :class:`InvalidInput` naming a column of the source the queries cannot read.

    A column ``file_row_number`` (or ``__ll_file``) anywhere in the files (DuckDB refuses
    the scan), or one starting with ``__ll_`` among the view's columns (the queries' own
    names).

    Example:
        >>> # check_column_names(src, {"file_row_number": "BIGINT", ...})  -> InvalidInput
    """
    used = [*src.keys, src.timestamp, *([src.created] if src.created else []), *src.features]
    clash = [c for c in source_types if c in (ROW_NUMBER_COLUMN, _FILE)]
    clash += [c for c in used if c.startswith(INTERNAL_PREFIX)]
    if clash:
        raise InvalidInput(
            f"the source of feature view {src.name!r} has a column named {clash[0]!r}, "
            f"which the feature store uses itself ({ROW_NUMBER_COLUMN!r} and names "
            f"starting with {INTERNAL_PREFIX!r})",
            field=clash[0],
            hint="rename the column in the source and register it again",
        )


def _scan(src: ViewSource) -> str:
    files = "[" + ", ".join(_literal(f) for f in src.files) + "]"
    # The file name goes to a column of our own: 'filename' may be a column of the data.
    many = f", filename = '{_FILE}', union_by_name = true" if len(src.files) > 1 else ""
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
    t = duck_type.upper().strip('"')  # DuckDB names the type of a column of nulls '"NULL"'
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
        # NULL: a key column of nothing but nulls, which matches nothing whatever its type.
        if fl != fr and {fl, fr} != {"integer", "number"} and "NULL" not in (fl, fr):
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


def check_text_times(
    con: duckdb.DuckDBPyConnection, src: ViewSource, source_types: dict[str, str]
) -> None:
    """Raise :class:`InvalidInput` naming a text time column and a value that is no time.

    The event timestamp and the created column may hold ISO 8601 text; the queries cast it
    to TIMESTAMPTZ, which would fail there with DuckDB's own error.

    Example:
        >>> # check_text_times(con, src, {"ts": "VARCHAR", ...})  -> InvalidInput
    """
    for column in dict.fromkeys([src.timestamp, *([src.created] if src.created else [])]):
        if source_types[column] != "VARCHAR":
            continue
        col = quote(column)
        bad = con.execute(
            f"SELECT {col} FROM {_scan(src)} WHERE {col} IS NOT NULL "
            f"AND TRY_CAST({col} AS TIMESTAMPTZ) IS NULL LIMIT 1"
        ).fetchone()
        if bad is not None:
            raise InvalidInput(
                f"column {column!r} of the source of feature view {src.name!r} holds values "
                f"that are not timestamps, e.g. {bad[0]!r}",
                field=column,
                hint="store ISO 8601 times (or timestamps) in the dataset and register it again",
            )


def _dedup_order(src: ViewSource, created: str) -> str:
    parts = [f"{created} DESC NULLS LAST"] if src.created else []
    # One file: its name orders nothing, and carrying it through the sort costs a third of
    # the join's time.
    parts += ["__ll_file DESC", "__ll_frn DESC"] if len(src.files) > 1 else ["__ll_frn DESC"]
    return ", ".join(parts)


def _floor_us(column: str) -> str:
    """A nanosecond timestamp column as UTC microseconds, sub-microsecond digits dropped
    (toward the past, before 1970 too: the remainder is taken positive first)."""
    ns = f"epoch_ns({quote(column)})"
    return f"(({ns} - (({ns} % 1000) + 1000) % 1000) // 1000)"


def nanosecond_types(source_types: dict[str, str]) -> tuple[str, ...]:
    """The columns of ``source_types`` that hold nanosecond timestamps.

    Example:
        >>> nanosecond_types({"ts": "TIMESTAMP_NS", "x": "DOUBLE"})
        ('ts',)
    """
    return tuple(c for c, t in source_types.items() if t in ("TIMESTAMP_NS", "TIMESTAMPTZ_NS"))


_US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}


def _duration_us(column: str, unit: str) -> str:
    """An integer duration column in ``unit`` as microseconds (nanoseconds floored, like
    timestamps)."""
    col = quote(column)
    if unit == "ns":
        return f"(({col} - (({col} % 1000) + 1000) % 1000) // 1000)"
    return f"({col} * {_US_PER[unit]})"


def _base(src: ViewSource) -> str:
    """Rows of a view with the event time as UTC microseconds in ``__ll_ts``."""
    units = dict(src.duration_units)
    cols = [quote(k) for k in src.keys] + [
        f"{_duration_us(f, units[f])} AS {quote(f)}" if f in units else quote(f)
        for f in src.features
    ]
    created = ""
    if src.created:
        cr = quote(src.created)
        if src.created in src.nanosecond_columns:
            created = f", {_floor_us(src.created)} AS __ll_cr"
        elif src.created_is_text:
            created = f", CAST({cr} AS TIMESTAMPTZ) AS __ll_cr"
        else:
            created = f", {cr} AS __ll_cr"
    if src.timestamp in src.nanosecond_columns:
        ts = _floor_us(src.timestamp)
    else:
        ts = f"epoch_us(CAST({quote(src.timestamp)} AS TIMESTAMPTZ))"
    file = f"{_FILE}, " if len(src.files) > 1 else ""
    return (
        f"SELECT {', '.join(dict.fromkeys(cols))}, {ts} AS {_TS}{created}, "
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


def prepare_sql(src: ViewSource) -> str:
    """The rows of a view ready for the join: deduplicated, sorted by key and event time.

    The columns are the keys, the features and ``__ll_ts`` (UTC microseconds). This is
    what :func:`write_prepared` stores, so the tie-breaking window runs once per version
    of a view's data instead of once per training set.

    Example:
        >>> # con.execute(f"COPY ({prepare_sql(src)}) TO 'view.parquet'")
    """
    keys = [quote(k) for k in src.keys]
    cols = ", ".join(dict.fromkeys([*keys, *(quote(f) for f in src.features), _TS]))
    return f"SELECT {cols} FROM ({_deduped(src)}) ORDER BY {', '.join(keys)}, {_TS}"


# The prepared file's key-value metadata entry naming its duration features (a JSON list):
# Parquet written by DuckDB has no duration type, so the file says which integers are
# microseconds of a duration.
DURATIONS_KEY = b"loopline.durations"


def write_prepared(con: duckdb.DuckDBPyConnection, src: ViewSource, path: Path) -> None:
    """Write :func:`prepare_sql`'s rows of ``src`` to the Parquet file ``path``.

    Example:
        >>> # write_prepared(connect(), src, Path("/tmp/view.parquet"))
    """
    durations = json.dumps([f for f, _ in src.duration_units])
    meta = f"KV_METADATA {{{_literal(DURATIONS_KEY.decode())}: {_literal(durations)}}}"
    con.execute(f"COPY ({prepare_sql(src)}) TO {_literal(str(path))} (FORMAT parquet, {meta})")


def prepared_durations(path: str | Path) -> tuple[str, ...]:
    """The duration features of a prepared file (:func:`write_prepared`), by name.

    Example:
        >>> # prepared_durations("view.parquet")  -> ('wait',)
    """
    meta = pq.read_metadata(path).metadata or {}
    raw = meta.get(DURATIONS_KEY)
    return tuple(json.loads(raw)) if raw else ()


@dataclass(frozen=True)
class PreparedView:
    """A view's prepared Parquet file (:func:`write_prepared`) and what to take from it."""

    name: str
    path: str
    keys: tuple[str, ...]
    features: tuple[str, ...]
    ttl_us: int | None
    # Features stored as microseconds of a duration: timedelta64[us] in training sets.
    durations: tuple[str, ...] = ()


def _pos(i: int) -> str:
    return f"__ll_pos{i}"


def historical_sql(views: Sequence[PreparedView]) -> str:
    """The ASOF query: each entity row's ``__ll_row`` and, per view, its feature row.

    ``__ll_pos<i>`` is the position in view ``i``'s prepared file of the feature row that
    the entity row sees, or -1 (no row at or before its time, or one older than the TTL).
    Only keys, times and positions go through the join's sort; the feature values are
    fetched afterwards by position (:mod:`loopline.data.parquet_take`), which halves the
    join's work for ten features. The entity relation ``__ll_entities`` has the key
    columns, ``__ll_ets`` (UTC) and ``__ll_row``. Rows come out in no set order.

    Example:
        >>> # con.execute(historical_sql([view])).fetchnumpy()["__ll_pos0"]
    """
    select = [f"e.{ROW}"]
    joins = []
    for i, view in enumerate(views):
        alias = f"f{i}"
        pos = f"{alias}.__ll_pos"
        if view.ttl_us is not None:
            pos = f"CASE WHEN {alias}.{_TS} >= e.{_TS} - {int(view.ttl_us)} THEN {pos} END"
        select.append(f"coalesce({pos}, -1) AS {_pos(i)}")
        keys = ", ".join(quote(k) for k in view.keys)
        rows = (
            f"SELECT {keys}, {_TS}, file_row_number AS __ll_pos "
            f"FROM read_parquet({_literal(view.path)}, file_row_number = true)"
        )
        on = " AND ".join(f"e.{quote(k)} = {alias}.{quote(k)}" for k in view.keys)
        joins.append(f"ASOF LEFT JOIN ({rows}) {alias} ON {on} AND e.{_TS} >= {alias}.{_TS}")
    entities = f"SELECT *, epoch_us({ENTITY_TS}) AS {_TS} FROM __ll_entities"
    return f"SELECT {', '.join(select)} FROM ({entities}) e {' '.join(joins)}"


# Arrow types whose pandas form (``to_pandas``) is the one DuckDB's ``df()`` gives; the
# others (integers and booleans that may hold nulls, decimals, dates, ...) go through
# DuckDB so that a training set's dtypes do not depend on how its values were fetched.
def _same_in_pandas(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_duration(t)
        or (pa.types.is_timestamp(t) and t.tz in (None, "UTC", "+00:00"))
    )


def _to_pandas(con: duckdb.DuckDBPyConnection, columns: dict[str, Column]) -> pd.DataFrame:
    """A frame of the fetched columns: NumPy ones as they are, Arrow ones converted."""
    out: dict[str, Any] = {}
    slow: dict[str, Column] = {}
    for name, column in columns.items():
        if isinstance(column, np.ndarray):
            out[name] = column
        elif _same_in_pandas(column.type):
            series = column.to_pandas()
            if isinstance(series.dtype, pd.DatetimeTZDtype):
                series = series.dt.tz_convert("UTC")
            out[name] = series
        else:
            slow[name] = column
    if slow:
        # The connection may reorder rows (connect() turns preserve_insertion_order off);
        # this scan must not, or values would land on other entity rows.
        con.execute("SET preserve_insertion_order = true")
        try:
            table = pa.table(list(slow.values()), names=list(slow))
            # A decimal as DuckDB's CAST makes it (the nearest double, as float(Decimal)
            # and the online store give); df() alone is off by an ulp for about a quarter
            # of the values of a DECIMAL(18, 4).
            select = [
                f"CAST({quote(n)} AS DOUBLE) AS {quote(n)}"
                if isinstance(c, pa.Array | pa.ChunkedArray) and pa.types.is_decimal(c.type)
                else quote(n)
                for n, c in slow.items()
            ]
            out.update(con.from_arrow(table).project(", ".join(select)).df().items())
        finally:
            con.execute("SET preserve_insertion_order = false")
    return pd.DataFrame({n: out[n] for n in columns}, copy=False)


def historical(
    con: duckdb.DuckDBPyConnection,
    entities: pd.DataFrame,
    views: Sequence[PreparedView],
    outputs: Sequence[Sequence[str]],
) -> pd.DataFrame:
    """Run the point-in-time join; return the feature columns in entity row order.

    ``outputs[i][j]`` names the output column of ``views[i].features[j]``.

    Example:
        >>> # historical(connect(), entities, [view], [["clicks"]]).columns.tolist()
        >>> # ['clicks']
    """
    if len(entities) == 0:
        # Nothing to join, and an empty column's type says nothing (an empty object column
        # is not a text key): the feature columns come out empty with the view's types.
        found: dict[str, Any] = {ROW: np.empty(0, np.int64)}
        found.update({_pos(i): np.empty(0, np.int64) for i in range(len(views))})
    else:
        found = _join(con, entities, views)
    # Back to entity order: an O(n) scatter of the row numbers is cheaper than ORDER BY.
    rows = np.asarray(found[ROW], dtype=np.int64)
    where = np.empty_like(rows)
    where[rows] = np.arange(len(rows), dtype=np.int64)
    columns: dict[str, Column] = {}
    for i, (view, outs) in enumerate(zip(views, outputs, strict=True)):
        positions = np.asarray(found[_pos(i)], dtype=np.int64)[where]
        taken = take_rows(view.path, view.features, positions)
        for f in view.durations:  # microseconds in the file; never a float (NumPy) column
            column = taken[f]
            assert isinstance(column, pa.Array | pa.ChunkedArray)
            taken[f] = column.cast(pa.duration("us"))
        columns.update(zip(outs, (taken[f] for f in view.features), strict=True))
    return _to_pandas(con, columns)


def _join(
    con: duckdb.DuckDBPyConnection, entities: pd.DataFrame, views: Sequence[PreparedView]
) -> dict[str, Any]:
    """The ASOF join's row numbers and positions (:func:`historical_sql`), keys checked."""
    con.register("__ll_entities", entities)
    try:
        entity_types = {
            str(r[0]): str(r[1])
            for r in con.execute("DESCRIBE SELECT * FROM __ll_entities").fetchall()
        }
        # A view without rows (none, or none with a whole key) matches nothing, and its key
        # columns' types say nothing (an empty text column is NULL or DOUBLE): no join.
        joined = [i for i, view in enumerate(views) if pq.read_metadata(view.path).num_rows]
        for i in joined:
            view = views[i]
            src = ViewSource(
                name=view.name,
                files=(view.path,),
                keys=view.keys,
                timestamp=_TS,
                created=None,
                features=view.features,
                ttl_us=view.ttl_us,
            )
            check_key_types(entity_types, src, describe(con, src))
        found = dict(con.sql(historical_sql([views[i] for i in joined])).fetchnumpy())
    finally:
        con.unregister("__ll_entities")
    out = {ROW: found[ROW]}
    for i in range(len(views)):
        out[_pos(i)] = np.full(len(found[ROW]), -1, dtype=np.int64)
    for j, i in enumerate(joined):
        out[_pos(i)] = found[_pos(j)]
    return out


SPECIAL = "__ll_odd"
_FLOATS = re.compile(r"\b(FLOAT|DOUBLE)\b")
_BLOBS = re.compile(r"\bBLOB\b")


def _online_value(view: PreparedView, feature: str, duck_type: str) -> str:
    """A feature as the online store writes it: a duration as an INTERVAL (a Python
    timedelta), a decimal as the nearest double (what training sets give)."""
    col = quote(feature)
    if feature in view.durations:
        return f"to_microseconds({col}) AS {col}"
    if duck_type.startswith("DECIMAL"):
        return f"CAST({col} AS DOUBLE) AS {col}"
    return col


def _special_flag(features: Sequence[str], types: dict[str, str]) -> str:
    """A flag for rows that may hold inf, -inf, NaN or bytes, which JSON cannot carry: exact
    for a FLOAT or DOUBLE feature, a conservative test of the text for one that nests
    them; any value of a feature that is or holds a BLOB."""
    tests = []
    for f in features:
        t = types.get(f, "")
        if _BLOBS.search(t):
            tests.append(f"{quote(f)} IS NOT NULL")
        elif t in ("FLOAT", "DOUBLE"):
            tests.append(f"coalesce(NOT isfinite({quote(f)}), false)")
        elif _FLOATS.search(t):
            text = f"CAST({quote(f)} AS VARCHAR)"
            tests.append(f"coalesce(regexp_matches({text}, 'inf|nan', 'i'), false)")
    return " OR ".join(tests) if tests else "false"


def latest_sql(
    view: PreparedView, end_us: int, start_us: int | None, types: dict[str, str] | None = None
) -> str:
    """The newest row per entity with ``start <= ts <= end`` (and within the TTL of end).

    It reads the view's prepared file, whose rows are already one per key and event time
    (:func:`prepare_sql`), so the newest event time alone picks the row. ``types`` are the
    file's column types (:func:`describe`); the last column, ``__ll_odd``, is true for a
    row that may hold a non-finite float or bytes.

    Example:
        >>> # con.execute(latest_sql(view, end_us, None)).fetchall()
    """
    types = types or {}
    lo = [start_us] if start_us is not None else []
    if view.ttl_us is not None:
        lo.append(end_us - view.ttl_us)
    where = f"{_TS} <= {int(end_us)}"
    if lo:
        where += f" AND {_TS} >= {int(max(lo))}"
    keys = ", ".join(quote(k) for k in view.keys)
    values = [_online_value(view, f, types.get(f, "")) for f in view.features]
    cols = ", ".join(dict.fromkeys([quote(k) for k in view.keys] + values))
    odd = f"{_special_flag(view.features, types)} AS {SPECIAL}"
    # Rows come out sorted by the keys' text, the order of the online store's B-tree, so
    # that its inserts append instead of splitting pages (1.5x faster on SQLite).
    text = ", ".join(f"CAST({quote(k)} AS VARCHAR)" for k in view.keys)
    return (
        f"SELECT {cols}, {odd} FROM read_parquet({_literal(view.path)}) WHERE {where} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {_TS} DESC) = 1 "
        f"ORDER BY {text}"
    )


def file_types(con: duckdb.DuckDBPyConnection, path: str | Path) -> dict[str, str]:
    """The DuckDB type of each column of the Parquet file ``path``.

    Example:
        >>> # file_types(connect(), "view.parquet")  -> {'user': 'BIGINT', 'x': 'DOUBLE', ...}
    """
    rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_literal(str(path))})").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def online_types(con: duckdb.DuckDBPyConnection, view: PreparedView) -> dict[str, str]:
    """The type of each feature of ``view`` as the online store serves it: its DuckDB type
    in the prepared file, ``INTERVAL`` for a duration (kept there as BIGINT microseconds).

    Example:
        >>> # online_types(connect(), prepared)  -> {'clicks': 'BIGINT', 'wait': 'INTERVAL'}
    """
    types = file_types(con, view.path)
    return {f: "INTERVAL" if f in view.durations else types[f] for f in view.features}


def latest_rows(
    con: duckdb.DuckDBPyConnection, view: PreparedView, end_us: int, start_us: int | None
) -> Iterator[tuple[Any, ...]]:
    """Stream ``(key..., feature..., special)`` tuples of the newest row per entity.

    ``special`` is true when the row may hold inf, -inf, NaN or bytes
    (:func:`latest_sql`).
    Durations come as ``datetime.timedelta``, decimals as floats.

    Example:
        >>> # for *row, special in latest_rows(connect(), view, end_us, None): ...
    """
    result = con.execute(latest_sql(view, end_us, start_us, file_types(con, view.path)))
    while batch := result.fetchmany(_FETCH):
        yield from batch
