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

A column of numbers whose text a number would not give back is kept as ``string`` too, so
that no information is lost: a value with a leading zero (``00501``, a zip code; ``0.5``
is a number), a leading ``+`` (``+4930...``, a phone number), or in a column of
floating-point numbers an integer past 2**53 (a long id, which a double rounds). Spaces
around a number and the spelling of a float (``1.50``, ``1e3``) are not information. A
column with no value at all (only empty cells or null markers such as ``NA``) is
``string`` as well, its cells null, rather than Arrow's ``null`` type: nothing in the file
says it holds numbers, and nothing says it holds text either.

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
import numbers
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
    :class:`InvalidInput` naming it and saying what to store instead. So is a column of
    dicts that Arrow would change (:func:`_check_dicts`).

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
        table = pa.Table.from_pandas(df)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise _unstorable(df, exc) from exc
    # The DataFrame's columns come first, in order (an index kept as columns follows).
    for i, name in enumerate(df.columns):
        _check_dicts(name, df[name], table.column(i))
    return table


def _check_dicts(name: object, series: Any, stored: pa.ChunkedArray) -> None:
    """Refuse a column of dicts (or of lists of dicts) that would not read back as it was.

    Arrow stores dicts as a struct: one set of keys, each with one type. Dicts with other
    keys get the missing ones as null, and an int among floats becomes a float, silently
    (``{"a": 1}, {"b": 2}`` read back as ``{"a": 1.0, "b": None}, ...``). Such a column is
    an :class:`InvalidInput` naming it and the first row that would change; dicts with the
    same keys and value types are stored as they are.

    Example:
        >>> import pandas as pd
        >>> s = pd.Series([{"a": 1}, {"b": 2}])
        >>> try:
        ...     _check_dicts("d", s, pa.chunked_array([pa.array(list(s))]))
        ... except InvalidInput as e:
        ...     print(e.message.split(": ", 1)[1])
        row 0 {'a': 1} would read back as {'a': 1, 'b': None}
    """
    if series.dtype != object or not any(_holds_dict(v) for v in series):
        return
    for row, value, back in zip(series.index, series, stored.to_pylist(), strict=True):
        if not _same(value, back):
            raise InvalidInput(
                f"column {name!r} holds dicts a table would change: row {row!r} "
                f"{_short(value)} would read back as {_short(back)}",
                field="source",
                hint=_json_hint(name),
            )


def _json_hint(name: object) -> str:
    return (
        f"store them as JSON text: df[{name!r}] = df[{name!r}].map(json.dumps) (json.loads "
        "reads them back); or give every dict the same keys, each with values of one type"
    )


def _holds_dict(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list | tuple) and any(isinstance(v, dict) for v in value)
    )


def _same(value: Any, back: Any) -> bool:
    """Whether ``back`` (as Arrow gives it back) is ``value``: same keys, same length, and
    each scalar of the same kind (bool, integer, float, text) and equal; NaN is null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return back is None
    if isinstance(value, dict):
        return (
            isinstance(back, dict)
            and set(value) == set(back)
            and all(_same(v, back[k]) for k, v in value.items())
        )
    if isinstance(value, list | tuple) or bool(getattr(value, "ndim", 0)):
        return (
            isinstance(back, list)
            and len(value) == len(back)
            and all(_same(v, b) for v, b in zip(value, back, strict=True))
        )
    kind = _kind(value)
    return kind == _kind(back) and bool(value == back)


def _kind(value: Any) -> str:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    return "other"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
            dicts = any(_holds_dict(v) for v in df[name])
            return InvalidInput(
                f"column {name!r} cannot be stored as a table column: {col_exc}",
                field="source",
                hint=_json_hint(name)
                if dicts
                else f"give the column one type (e.g. df[{name!r}] = df[{name!r}].astype(str))",
            )
    return InvalidInput(
        f"the DataFrame cannot be stored as a table: {exc}",
        field="source",
        hint="give each column one type (e.g. df[col] = df[col].astype(str))",
    )


#: Text a number would not give back after spaces (rare: tested one by one).
_SIGNIFICANT_TEXT = r"^\s*(\+|-?0[0-9])"


def read_csv(path: Path) -> pa.Table:
    """Read a CSV file into Arrow; mixed columns become ``string``, and so do columns whose
    text a number would not give back (see module docstring).

    Example:
        >>> # read_csv(Path("train.csv")).schema
    """
    parse = pcsv.ParseOptions(delimiter="\t" if path.name.lower().endswith(".tsv") else ",")
    try:
        return _keep_text(path, parse, pcsv.read_csv(path, parse_options=parse))
    except pa.ArrowInvalid as exc:
        raise InvalidInput(
            f"{path} is not a CSV file Loopline can read: {exc}",
            field="source",
            hint="fix the file, or load it with pandas and register the DataFrame",
        ) from exc


def _keep_text(path: Path, parse: pcsv.ParseOptions, table: pa.Table) -> pa.Table:
    """``table`` with its all-null columns typed ``string`` (Arrow types them ``null``) and
    its number columns read again as text where the text carries what a number would lose
    (:func:`_number_loses_text`)."""
    names = table.column_names
    if duplicate_names(names):  # refused where stored
        return table
    for f in table.schema:
        if pa.types.is_null(f.type):  # no value at all: text, and still no value
            table = table.set_column(names.index(f.name), f.name, table[f.name].cast(pa.string()))
    suspects = [
        f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
    ]
    if not suspects:
        return table
    # A second read, of these columns only and without parsing: Arrow's reader cannot keep
    # both a column's text and its inferred type.
    convert = pcsv.ConvertOptions(
        include_columns=suspects, column_types=dict.fromkeys(suspects, pa.string())
    )
    text = pcsv.read_csv(path, parse_options=parse, convert_options=convert)
    for name in suspects:
        if _number_loses_text(text.column(name), table.column(name)):
            table = table.set_column(names.index(name), name, text.column(name))
    return table


def _number_loses_text(text: pa.ChunkedArray, numbers: pa.ChunkedArray) -> bool:
    """Whether ``numbers``, parsed from ``text``, lose some of it: a leading zero ("00501",
    a zip code; "0.5" is a number), a leading "+" ("+4930...", a phone number), or an
    integer past 2**53 (a long id) that a double rounds.

    Example:
        >>> zips = pa.chunked_array([["00501", "2134"]])
        >>> _number_loses_text(zips, zips.cast(pa.int64()))
        True
        >>> floats = pa.chunked_array([["0.5", "-12", "1e20"]])
        >>> _number_loses_text(floats, floats.cast(pa.float64()))
        False
    """
    # The first bytes of each value, compared with NumPy: Arrow's regular expressions (or
    # even several starts_with) cost as much as reading the file again.
    first, second, third = _leading_bytes(text, 3)

    def digit(b: Any) -> Any:
        return (b >= ord("0")) & (b <= ord("9"))

    zero, minus = ord("0"), ord("-")
    lost = (first == ord("+")) | ((first == zero) & digit(second))
    if bool((lost | ((first == minus) & (second == zero) & digit(third))).any()):
        return True
    spaced = (first == ord(" ")) | (first == ord("\t"))  # Arrow trims spaces around numbers
    if spaced.any():
        padded = text.filter(pa.array(spaced))
        if pc.any(pc.match_substring_regex(padded, _SIGNIFICANT_TEXT)).as_py():
            return True
    if not pa.types.is_floating(numbers.type):
        return False  # int64 holds every integer Arrow typed int64 exactly
    # Past 2**53 a double skips integers: compare the text of integer literals (a long id)
    # with the double; a float's text ("1e20", "2.5e16") is not an int() and is a number.
    big = pc.fill_null(pc.greater_equal(pc.abs(numbers), 2.0**53), False)
    pairs = zip(text.filter(big).to_pylist(), numbers.filter(big).to_pylist(), strict=True)
    return any(_integer_text(t) not in (None, int(x)) for t, x in pairs if math.isfinite(x))


def _integer_text(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _leading_bytes(text: pa.ChunkedArray, n: int) -> list[Any]:
    """The first ``n`` bytes of the values of a ``string`` column: ``n`` NumPy arrays (the
    first bytes, the second bytes, ...), 0 past the end of a value.

    Example:
        >>> [b.tolist() for b in _leading_bytes(pa.chunked_array([["ab", ""]]), 2)]
        [[97, 0], [98, 0]]
    """
    import numpy as np

    columns: list[list[Any]] = [[np.zeros(0, np.uint8)] for _ in range(n)]
    for chunk in text.chunks:
        _, offsets_buf, data_buf = chunk.buffers()
        offsets = np.frombuffer(offsets_buf, np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
        data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        starts, lengths = offsets[:-1], np.diff(offsets)
        last = max(len(data) - 1, 0)
        safe = data if len(data) else np.zeros(1, np.uint8)
        for i in range(n):
            columns[i].append(np.where(lengths > i, safe[np.minimum(starts + i, last)], 0))
    return [np.concatenate(parts).astype(np.uint8) for parts in columns]


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
