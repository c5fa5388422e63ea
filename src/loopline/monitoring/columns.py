"""Tables in, typed columns out: what a drift computation reads and how it types a column.

A table is a pandas DataFrame, a pyarrow Table, the path of a Parquet or CSV file, a
dataset version (:class:`~loopline.data.datasets.DatasetVersion`) or its ``NAME@VERSION``.
Parquet files (and table datasets, which are Parquet) are read one column at a time, so
that a drift computation holds a couple of columns in memory, not two whole tables.

Column kinds follow Evidently 0.7.23's inference (``infer_column_type`` in
``src/evidently/core/datasets.py`` of github.com/evidentlyai/evidently), decided on the
**reference** (Evidently looks at the current data; the reference is the baseline that a
sketch is also built from, so Loopline types a column once, from it):

- float (and decimal) -> numeric;
- integer -> categorical when it has at most 10 distinct values, else numeric (Loopline also
  counts unsigned and nullable integers, which Evidently leaves out as "unknown");
- bool, dictionary/category -> categorical;
- string -> text when more than half of its non-null values are distinct, else categorical
  (Evidently tests text columns with a text model; Loopline skips them and says so);
- date/time and anything else -> skipped, with the type in the column's status.

Example:
    >>> import pandas as pd
    >>> t = open_table(pd.DataFrame({"x": [0.5, 1.5], "c": ["a", "b"]}), "reference")
    >>> t.names, t.num_rows
    (['x', 'c'], 2)
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loopline.core.columns import duplicate_names
from loopline.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    import pyarrow as pa

    from loopline.monitoring.stattests import Floats

#: Integer columns with at most this many distinct values are categorical (Evidently's limit).
INTEGER_CARDINALITY_LIMIT = 10

NUMERIC, CATEGORICAL, TEXT = "numeric", "categorical", "text"


class Table(ABC):
    """A table whose columns are read on demand as Arrow arrays."""

    label: str

    @property
    @abstractmethod
    def names(self) -> list[str]:
        """Column names, in order.

        Example:
            >>> import pyarrow as pa
            >>> open_table(pa.table({"a": [1], "b": [2]}), "current").names
            ['a', 'b']
        """

    @property
    @abstractmethod
    def num_rows(self) -> int:
        """Number of rows.

        Example:
            >>> import pyarrow as pa
            >>> open_table(pa.table({"a": [1, 2]}), "current").num_rows
            2
        """

    @abstractmethod
    def column(self, name: str) -> pa.ChunkedArray:
        """One column as an Arrow chunked array.

        Example:
            >>> import pyarrow as pa
            >>> open_table(pa.table({"a": [1, 2]}), "current").column("a").to_pylist()
            [1, 2]
        """

    def declared_type(self, name: str) -> pa.DataType | None:
        """The column's type as stored, when it differs from how it is read (a Parquet
        string column is read dictionary-encoded); None to use the array's own type.

        Example:
            >>> import pyarrow as pa
            >>> open_table(pa.table({"a": [1]}), "current").declared_type("a") is None
            True
        """
        return None


class _ArrowTable(Table):
    """A table held in memory as a pyarrow Table."""

    def __init__(self, table: pa.Table, label: str) -> None:
        self._table = table
        self.label = label

    @property
    def names(self) -> list[str]:
        return list(self._table.column_names)

    @property
    def num_rows(self) -> int:
        return int(self._table.num_rows)

    def column(self, name: str) -> pa.ChunkedArray:
        return self._table.column(name)


class _PandasTable(Table):
    """A pandas DataFrame, each column converted to Arrow when it is read."""

    def __init__(self, frame: Any, label: str) -> None:
        names = [str(c) for c in frame.columns]
        dupes = duplicate_names(names)
        if dupes:
            raise InvalidInput(
                f"the {label} table has duplicate column names: {', '.join(dupes)}",
                field=label,
                hint="rename the columns so that each name is used once",
            )
        self._frame = frame
        self._by_name = dict(zip(names, frame.columns, strict=True))
        self.label = label

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    @property
    def num_rows(self) -> int:
        return len(self._frame)

    def column(self, name: str) -> pa.ChunkedArray:
        import pyarrow as pa

        series = self._frame[self._by_name[name]]
        try:
            return pa.chunked_array([pa.Array.from_pandas(series)])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise InvalidInput(
                f"column {name!r} of the {self.label} table mixes types ({exc})",
                field=name,
                hint="give the column one type, e.g. df[col] = df[col].astype(str)",
            ) from exc


class _ParquetTable(Table):
    """A Parquet file, read one column at a time."""

    def __init__(self, path: Path, label: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(
                f"{path} is not a readable Parquet file: {exc}",
                field=label,
                hint="check the file (was it fully written?)",
            ) from exc
        self._path = path
        self.label = label

    @property
    def names(self) -> list[str]:
        return list(self._file.schema_arrow.names)

    @property
    def num_rows(self) -> int:
        return int(self._file.metadata.num_rows)

    def column(self, name: str) -> pa.ChunkedArray:
        import pyarrow.parquet as pq

        # A fresh reader per call: columns are read from several threads at once. Text is
        # read dictionary-encoded: counting levels is then a bincount of small integers.
        text = _is_text_type(self._file.schema_arrow.field(name).type)
        reader = pq.ParquetFile(self._path, read_dictionary=[name] if text else None)
        return reader.read(columns=[name]).column(0)

    def declared_type(self, name: str) -> pa.DataType | None:
        return self._file.schema_arrow.field(name).type


def _is_instance(obj: object, module: str, cls: str) -> bool:
    mod = sys.modules.get(module)  # an object cannot be a DataFrame if pandas is not loaded
    return mod is not None and isinstance(obj, getattr(mod, cls))


def open_table(source: object, label: str) -> Table:
    """Open ``source`` (DataFrame, Arrow table, file path, dataset version or ``NAME@VERSION``).

    Raises :class:`InvalidInput` for an unreadable or unsupported source and
    :class:`NotFound` for a file or dataset that does not exist.

    Example:
        >>> import pyarrow as pa
        >>> open_table(pa.table({"x": [1.0]}), "current").num_rows
        1
    """
    if _is_instance(source, "pandas", "DataFrame"):
        return _PandasTable(source, label)
    if _is_instance(source, "pyarrow", "Table"):
        return _ArrowTable(source, label)
    if _is_instance(source, "loopline.data.dataset_version", "DatasetVersion"):
        return _dataset_table(source, label)
    if isinstance(source, os.PathLike | str):
        return _path_or_ref(source, label)
    raise InvalidInput(
        f"cannot compute drift on a {type(source).__name__} ({label})",
        field=label,
        hint="pass a pandas DataFrame, a pyarrow Table, a Parquet/CSV path or NAME@VERSION",
    )


def _path_or_ref(source: str | os.PathLike[str], label: str) -> Table:
    from loopline.data import formats

    path = Path(source).expanduser()
    if path.is_file():
        if formats.is_parquet(path):
            return _ParquetTable(path, str(path))
        if formats.is_csv(path):
            from loopline.data import tabular

            return _ArrowTable(tabular.read_csv(path), str(path))
        raise InvalidInput(
            f"{path} is neither a Parquet nor a CSV file ({label})",
            field=label,
            hint="pass a .parquet or .csv file, or a dataset as NAME@VERSION",
        )
    if path.is_dir():
        raise InvalidInput(
            f"{path} is a folder, not a table ({label})",
            field=label,
            hint="pass a Parquet or CSV file, or a table dataset as NAME@VERSION",
        )
    text = os.fspath(source)
    looks_like_file = (
        any(sep in text for sep in ("/", os.sep))
        or formats.is_csv(path)
        or formats.is_parquet(path)
    )
    if looks_like_file and "@" not in text:
        raise NotFound(
            f"there is no file {path} ({label})",
            hint="check the path (relative paths start from the current folder)",
        )
    from loopline.data import datasets

    try:
        name, number = datasets.parse_ref(text)
    except InvalidInput as exc:
        raise NotFound(
            f"{text!r} is neither an existing file nor a dataset NAME@VERSION ({label})",
            hint="check the path, or list datasets with `loopline data ls`",
        ) from exc
    version = datasets.get(name, number if number is not None else "latest")
    return _dataset_table(version, label)


def _dataset_table(version: Any, label: str) -> Table:
    if version.kind == "table":
        return _ParquetTable(Path(version.path), version.ref)
    return _ArrowTable(version.to_arrow(), version.ref)


def _is_text_type(t: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


@dataclass(frozen=True)
class Kind:
    """How a column is tested: ``numeric``, ``categorical``, or skipped (``reason`` says why);
    ``counts`` holds the value counts when they had to be computed to decide.

    Example:
        >>> Kind("numeric").tested
        True
    """

    kind: str
    reason: str | None = None
    counts: dict[Any, int] | None = field(default=None, compare=False, repr=False)

    @property
    def tested(self) -> bool:
        """True for numeric and categorical columns.

        Example:
            >>> Kind("text", "skipped: text").tested
            False
        """
        return self.reason is None and self.kind in (NUMERIC, CATEGORICAL)


def infer_kind(column: pa.ChunkedArray, declared: pa.DataType | None = None) -> Kind:
    """The kind of a reference column (see the module docstring for the rules); ``declared``
    is its stored type when that differs from the array's (see :meth:`Table.declared_type`).

    Example:
        >>> import pyarrow as pa
        >>> infer_kind(pa.chunked_array([[1, 2, 3]])).kind
        'categorical'
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type if declared is None else declared
    if _is_text_type(t):
        counts = value_counts(column)
        distinct, valid = len(counts), len(column) - column.null_count
        if distinct > valid * 0.5:
            return Kind(TEXT, f"skipped: text ({distinct:,} distinct values in {valid:,})")
        return Kind(CATEGORICAL, counts=counts)
    if pa.types.is_dictionary(t) or pa.types.is_boolean(t):
        return Kind(CATEGORICAL)
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return Kind(NUMERIC)
    if pa.types.is_integer(t):
        distinct = pc.count_distinct(column).as_py()
        return Kind(CATEGORICAL if distinct <= INTEGER_CARDINALITY_LIMIT else NUMERIC)
    if pa.types.is_null(t):
        return Kind(NUMERIC)  # all null: reported as empty
    return Kind("unsupported", f"skipped: unsupported type {t}")


def numeric_values(column: pa.ChunkedArray) -> Floats:
    """A column as float64, nulls as NaN (raises :class:`InvalidInput` if not numeric).

    Example:
        >>> import pyarrow as pa
        >>> numeric_values(pa.chunked_array([[1, None]])).tolist()
        [1.0, nan]
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type
    if pa.types.is_dictionary(t):
        column = column.cast(t.value_type)
        t = column.type
    if not (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or pa.types.is_null(t)
    ):
        raise InvalidInput(f"type {t} is not numeric", field="column")
    if t != pa.float64():
        # Unsafe: integers past 2**53 (ids, nanosecond times) and wide decimals round to the
        # nearest float64, which is all a distribution needs (a safe cast raised ArrowInvalid).
        column = pc.cast(column, pa.float64(), safe=False)
    if column.null_count:
        column = pc.fill_null(column, np.nan)
    if column.num_chunks == 1:
        return np.asarray(column.chunk(0).to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.asarray(column.to_numpy(), dtype=np.float64)


def value_counts(column: pa.ChunkedArray) -> dict[Any, int]:
    """Count of each non-null, non-NaN value of a column.

    Example:
        >>> import pyarrow as pa
        >>> value_counts(pa.chunked_array([["a", "b", "a", None]]))
        {'a': 2, 'b': 1}
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    pairs: list[tuple[Any, int]] = []
    if pa.types.is_dictionary(column.type):
        for chunk in column.chunks:
            if chunk.null_count:
                chunk = pc.drop_null(chunk)
            if len(chunk) == 0:
                continue
            idx = np.asarray(chunk.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            counts = np.bincount(idx, minlength=len(chunk.dictionary))
            used = np.flatnonzero(counts)
            values = chunk.dictionary.take(pa.array(used)).to_pylist()
            pairs.extend(zip(values, counts[used].tolist(), strict=True))
    else:
        vc = pc.value_counts(column)
        pairs = list(
            zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)
        )
    out: dict[Any, int] = {}
    for v, c in pairs:
        if v is None or (isinstance(v, float) and v != v):
            continue
        out[v] = out.get(v, 0) + int(c)
    return out


def sort_key(value: Any) -> tuple[int, Any]:
    """An order for levels of mixed types: numbers (and bools) first, then text.

    Example:
        >>> sorted(["b", 2, "a", 1], key=sort_key)
        [1, 2, 'a', 'b']
    """
    if isinstance(value, bool | int | float):
        return (0, value)
    return (1, str(value))
