"""Tables for datasets: read a source into Arrow, write Parquet, describe schema and statistics.

A table dataset is stored as one Parquet file (zstd). Schema and statistics are computed
with ``pyarrow.compute`` on the Arrow table, so no copy into pandas is needed.

**CSV typing.** CSV files are read with Arrow's multi-threaded reader, which infers each
column's type from all of its values. A column that holds numbers *and* words (``1, 2, x``)
is typed ``string`` and every value is kept verbatim: nothing is coerced to NaN. The
schema of the version shows that ``string``; a contract (``loopline.data.contracts``) that
expects a number then reports a ``dtype`` violation naming the column. A CSV that Arrow
cannot parse (a row with the wrong number of fields, say) is an :class:`InvalidInput`
naming the file and the line.

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"x": [1, 2, None], "c": ["a", "b", "a"]})
    >>> table_schema(t)
    {'x': 'int64', 'c': 'string'}
    >>> table_stats(t)["x"]["nulls"], table_stats(t)["c"]["distinct"]
    (1, 2)
"""

from __future__ import annotations

import decimal
import math
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from loopline.core.columns import duplicate_names, json_number
from loopline.errors import InvalidInput

TOP_VALUES = 5
PARQUET_COMPRESSION = "zstd"


def from_pandas(df: Any) -> pa.Table:
    """An Arrow table from a pandas DataFrame (a non-default index is kept as columns).

    A column Arrow cannot store (complex numbers, values of several types) is an
    :class:`InvalidInput` naming it and saying what to store instead.

    Example:
        >>> import pandas as pd
        >>> from_pandas(pd.DataFrame({"a": [1]})).num_rows
        1
    """
    # Arrow refuses these with a bare ValueError; name the column instead.
    dupes = duplicate_names(df.columns)
    if dupes:
        raise InvalidInput(
            f"the DataFrame has duplicate column names: {', '.join(map(repr, dupes))}",
            field="source",
            hint="rename the columns so that each name is used once",
        )
    for name in df.columns:
        if df[name].dtype.kind == "c":
            raise _complex_column(name)
    try:
        return pa.Table.from_pandas(df)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise _unstorable(df, exc) from exc


def _complex_column(name: object) -> InvalidInput:
    return InvalidInput(
        f"column {name!r} holds complex numbers, which a table (Parquet) cannot store",
        field="source",
        hint=f"store the real and imaginary parts as two float columns "
        f"(df[{name!r}].real and df[{name!r}].imag), or the values as text",
    )


def _unstorable(df: Any, exc: Exception) -> InvalidInput:
    """The error for a DataFrame Arrow refused, naming the first column it refuses alone."""
    for name in df.columns:
        try:
            pa.Table.from_pandas(df[[name]], preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as col_exc:
            if any(isinstance(v, complex) for v in df[name]):
                return _complex_column(name)
            return InvalidInput(
                f"column {name!r} cannot be stored as a table column: {col_exc}",
                field="source",
                hint=f"give the column one type (e.g. df[{name!r}] = df[{name!r}].astype(str))",
            )
    return InvalidInput(
        f"the DataFrame cannot be stored as a table: {exc}",
        field="source",
        hint="give each column one type (e.g. df[col] = df[col].astype(str))",
    )


def read_csv(path: Path) -> pa.Table:
    """Read a CSV file into Arrow; mixed columns become ``string`` (see module docstring).

    Example:
        >>> # read_csv(Path("train.csv")).schema
    """
    parse = pcsv.ParseOptions(delimiter="\t" if path.name.lower().endswith(".tsv") else ",")
    try:
        return pcsv.read_csv(path, parse_options=parse)
    except pa.ArrowInvalid as exc:
        raise InvalidInput(
            f"{path} is not a CSV file Loopline can read: {exc}",
            field="source",
            hint="fix the file, or load it with pandas and register the DataFrame",
        ) from exc


def read_parquet(path: Path) -> pa.Table:
    """Read a Parquet file, naming the file when it is not valid Parquet.

    Example:
        >>> # read_parquet(Path("train.parquet")).num_rows
    """
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(
            f"{path} is not a readable Parquet file: {exc}",
            field="source",
            hint="check the file, or register it as plain files by putting it in a folder",
        ) from exc


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` as one zstd-compressed Parquet file, fsynced.

    Example:
        >>> # write_parquet(table, Path("/tmp/x.parquet"))
    """
    pq.write_table(table, path, compression=PARQUET_COMPRESSION)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def table_schema(table: pa.Table) -> dict[str, str]:
    """Column name -> Arrow type name, in column order.

    Example:
        >>> table_schema(pa.table({"a": [1.5]}))
        {'a': 'double'}
    """
    return {f.name: str(f.type) for f in table.schema}


def parquet_schema(path: Path) -> dict[str, str]:
    """Column name -> Arrow type of a Parquet file as it reads back (Parquet has no
    ``timestamp[s]``, say, so a table's stored types can differ from the table's).

    Example:
        >>> # parquet_schema(Path("data.parquet"))  -> {'x': 'int64'}
    """
    return {f.name: str(f.type) for f in pq.read_schema(path)}


def _clean(value: Any) -> Any:
    """A JSON-safe scalar: NaN becomes None and an infinity the text ``"inf"``/``"-inf"``
    (:func:`~loopline.core.columns.json_number`), dates ISO strings, decimals their exact
    text."""
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    if isinstance(value, bytes):
        return value.hex()
    return value


_DURATION_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def _duration_text(count: int, unit: str) -> str:
    """``count`` of ``unit`` as an exact ISO 8601 duration in seconds.

    Example:
        >>> _duration_text(-1_500, "ms"), _duration_text(2, "s")
        ('-PT1.5S', 'PT2S')
    """
    digits = _DURATION_DIGITS[unit]
    whole, frac = divmod(abs(count), 10**digits)
    text = str(whole) + (f".{frac:0{digits}d}".rstrip("0").rstrip(".") if digits else "")
    return f"{'-' if count < 0 else ''}PT{text}S"


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def _is_categorical(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_boolean(t))


def _finite(value: float | None) -> float | None:
    """A mean or standard deviation, or None when it overflowed (it has no useful text)."""
    return value if value is not None and math.isfinite(value) else None


def column_stats(col: pa.ChunkedArray) -> dict[str, Any]:
    """Statistics of one column: count and nulls always; min/max/mean/std for numbers
    (integer min/max exact, a decimal's as text); distinct count and top values for
    strings, booleans and categoricals; min/max for dates, times and durations (ISO 8601
    text); nothing more for binary, nested and interval columns. NaN counts as null.

    A floating-point column also has ``infinite``, its number of ``inf`` and ``-inf``
    values. They count as values (in ``count``) and as the column's ``min``/``max``,
    written ``"-inf"``/``"inf"`` (JSON has no infinity); ``mean`` and ``std`` are those of
    the finite values, so that one infinity does not hide how the rest moved. A
    ``float16`` column's statistics are computed in ``float32`` (Arrow has no kernels for
    half floats); the stored data keeps its type.

    Example:
        >>> column_stats(pa.chunked_array([[1.0, 3.0, None]]))["mean"]
        2.0
        >>> s = column_stats(pa.chunked_array([[1.0, 3.0, float("inf")]]))
        >>> s["max"], s["mean"], s["infinite"]
        ('inf', 2.0, 1)
    """
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = t.value_type
    if pa.types.is_float16(t):
        col, t = col.cast(pa.float32()), pa.float32()
    finite = col
    if pa.types.is_floating(t):
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, t), col)
        finite = pc.if_else(pc.is_inf(col), pa.scalar(None, t), col)
    nulls = int(col.null_count)
    stats: dict[str, Any] = {"count": len(col) - nulls, "nulls": nulls}
    if _is_numeric(t):
        mm = pc.min_max(col).as_py()
        stats["min"], stats["max"] = _clean(mm["min"]), _clean(mm["max"])
        # An unsafe cast: integers past 2**53 (and wide decimals) have no exact float, which
        # the safe cast refuses; mean and std are approximate anyway, min and max are not.
        as_float = finite.cast(pa.float64(), safe=False) if not pa.types.is_floating(t) else finite
        n_finite = len(finite) - int(finite.null_count)
        stats["mean"] = _finite(pc.mean(as_float).as_py())
        stats["std"] = _finite(pc.stddev(as_float, ddof=1).as_py()) if n_finite > 1 else None
        if pa.types.is_floating(t):
            stats["infinite"] = stats["count"] - n_finite
    elif _is_categorical(t):
        counts = pc.value_counts(col.drop_null())
        pairs = sorted(
            zip(
                counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
            ),
            key=lambda p: (-p[1], str(p[0])),
        )
        stats["distinct"] = len(pairs)
        stats["top"] = [{"value": _clean(v), "count": int(n)} for v, n in pairs[:TOP_VALUES]]
    elif pa.types.is_duration(t):
        # Arrow has no min_max kernel for durations; their integer counts order the same.
        mm = pc.min_max(col.cast(pa.int64())).as_py()
        for key in ("min", "max"):
            stats[key] = None if mm[key] is None else _duration_text(mm[key], t.unit)
    elif pa.types.is_temporal(t) and not pa.types.is_interval(t):
        mm = pc.min_max(col).as_py()
        stats["min"], stats["max"] = _clean(mm["min"]), _clean(mm["max"])
    # Intervals, binary, lists, structs and maps: count and nulls only.
    return stats


def table_stats(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Column name -> :func:`column_stats`.

    Example:
        >>> table_stats(pa.table({"a": ["x", "x", "y"]}))["a"]["top"][0]
        {'value': 'x', 'count': 2}
    """
    return {name: column_stats(table.column(name)) for name in table.column_names}
