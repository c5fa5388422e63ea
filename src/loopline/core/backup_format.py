"""The on-disk format of a Loopline backup: manifest, one Parquet file per table, artifacts.

A backup is a folder (local or on S3)::

    manifest.json                 written last: its presence marks a complete backup
    tables/<table>.parquet        one file per table, rows in primary-key order
    artifacts/index.tsv           "<digest>\\t<size>" per artifact object, sorted
    artifacts/objects/ab/cdef...  the objects, by content address (as in the store)
    online/views.parquet          the online feature store's views and rows (format 2;
    online/rows.parquet           see :mod:`loopline.core.backup_online`)

Format versions: 1 had no online rows (a restore of one says which feature views to
materialize again); 2 adds them, as the manifest's ``online`` object (``null`` when the
backup was made without an online store). Both restore.

**Why Parquet and not JSON lines.** Parquet columns are typed, so every SQL type maps to
one Arrow type and back without a home-made encoding: ``float64`` keeps NaN and ±inf
(JSON has neither), timestamps keep their time zone (stored as UTC instants, microseconds
like PostgreSQL), ``int64`` holds every ``BIGINT``, and binary stays binary (no base64).
Files are compressed (zstd), readable by pandas or DuckDB for a partial recovery by hand,
and pyarrow is already a dependency. JSON columns are kept as their stored JSON *text*, so
the distinction between SQL NULL and JSON ``null`` and the exact text both survive.

Each column is described in the manifest by a *kind* (``int``, ``float``, ``str``, ``json``,
``datetime_tz``, ...) derived from the reflected SQL type, so the same backup loads into
SQLite or PostgreSQL. A type without a kind fails the backup loudly, naming the column.

Example:
    >>> import sqlalchemy as sa
    >>> column_kind(sa.DateTime(timezone=True))
    'datetime_tz'
    >>> arrow_type("float")
    DataType(double)
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import sqlalchemy as sa

from loopline.core.backup_online import OnlineEntry
from loopline.errors import IntegrityError, InvalidInput, LooplineError

FORMAT = "loopline-backup"
FORMAT_VERSION = 2
#: Every format version this code restores.
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
ARTIFACT_INDEX = "artifacts/index.tsv"
ARTIFACT_OBJECTS = "artifacts/objects"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_]{1,120}$")

_ARROW: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int": pa.int64(),
    "float": pa.float64(),
    "decimal": pa.string(),  # exact: the decimal's text, parsed back into a Decimal
    "datetime_tz": pa.timestamp("us", tz="UTC"),
    "datetime": pa.timestamp("us"),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "interval": pa.duration("us"),
    "bytes": pa.large_binary(),
    "json": pa.large_string(),
    "uuid": pa.string(),
    "str": pa.large_string(),
}


def column_kind(sql_type: sa.types.TypeEngine[Any]) -> str:
    """The backup kind of a (reflected) SQL type; :class:`LooplineError` when unsupported.

    Example:
        >>> import sqlalchemy as sa
        >>> column_kind(sa.BigInteger()), column_kind(sa.Text()), column_kind(sa.JSON())
        ('int', 'str', 'json')
    """
    # Order matters: Boolean before Integer, Float before Numeric (Float is a Numeric).
    checks: list[tuple[type[Any], str]] = [
        (sa.Boolean, "bool"),
        (sa.Integer, "int"),
        (sa.Float, "float"),
        (sa.Numeric, "decimal"),
        (sa.Date, "date"),
        (sa.Time, "time"),
        (sa.Interval, "interval"),
        (sa.LargeBinary, "bytes"),
        (sa.JSON, "json"),
        (sa.Uuid, "uuid"),
        (sa.String, "str"),
    ]
    if isinstance(sql_type, sa.DateTime):
        return "datetime_tz" if sql_type.timezone else "datetime"
    for klass, kind in checks:
        if isinstance(sql_type, klass):
            return kind
    raise LooplineError(
        f"backup cannot encode columns of SQL type {sql_type!r}",
        hint="this is a bug in Loopline's backup: report the table and column",
    )


def arrow_type(kind: str) -> pa.DataType:
    """The Arrow type a column of ``kind`` is stored as.

    Example:
        >>> arrow_type("datetime_tz")
        TimestampType(timestamp[us, tz=UTC])
    """
    return _ARROW[kind]


def arrow_schema(columns: Sequence[ColumnSpec]) -> pa.Schema:
    """The Parquet schema of a table file.

    Example:
        >>> arrow_schema([ColumnSpec("id", "int")]).names
        ['id']
    """
    return pa.schema([pa.field(c.name, arrow_type(c.kind), nullable=True) for c in columns])


def _encode_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "decimal":
        return str(value)
    if kind == "uuid":
        return str(value)
    if kind == "datetime_tz" and isinstance(value, dt.datetime) and value.tzinfo is None:
        # SQLite keeps no offset: SQLAlchemy stores the UTC wall time there.
        return value.replace(tzinfo=dt.UTC)
    if kind == "json" and not isinstance(value, str):
        return orjson.dumps(value).decode()
    return value


def _decode_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "decimal":
        return decimal.Decimal(value)
    if kind == "uuid":
        return uuid.UUID(value)
    return value


def encode_batch(table: str, columns: Sequence[ColumnSpec], rows: Sequence[Any]) -> pa.RecordBatch:
    """Rows (tuples in column order) as an Arrow record batch of the table's schema.

    Raises :class:`IntegrityError` naming the table and column when a stored value does not
    fit its declared type (SQLite lets a column hold anything).

    Example:
        >>> encode_batch("t", [ColumnSpec("x", "float")], [(float("nan"),)]).num_rows
        1
    """
    arrays = []
    for i, col in enumerate(columns):
        values = [_encode_value(col.kind, row[i]) for row in rows]
        try:
            arrays.append(pa.array(values, type=arrow_type(col.kind)))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise IntegrityError(
                f"table {table}, column {col.name}: a stored value does not fit its "
                f"declared type ({col.kind}): {exc}",
                hint="fix the row in the source database, then back up again",
            ) from exc
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema(columns))


def decode_batch(columns: Sequence[ColumnSpec], batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """An Arrow record batch back as row dicts of Python values ready to bind.

    Example:
        >>> cols = [ColumnSpec("n", "decimal")]
        >>> decode_batch(cols, encode_batch("t", cols, [(decimal.Decimal("1.5"),)]))
        [{'n': Decimal('1.5')}]
    """
    names = [c.name for c in columns]
    data = {c.name: batch.column(c.name).to_pylist() for c in columns}
    kinds = {c.name: c.kind for c in columns}
    needs_decode = [n for n in names if kinds[n] in ("decimal", "uuid")]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*data.values(), strict=True)]
    for row in rows:
        for name in needs_decode:
            row[name] = _decode_value(kinds[name], row[name])
    return rows


def check_table_name(name: str) -> str:
    """Return ``name`` if it is safe as a file name in the backup, else raise.

    Example:
        >>> check_table_name("runs")
        'runs'
    """
    if not _SAFE_NAME.match(name):
        raise InvalidInput(
            f"table name {name!r} cannot be a backup file name",
            field="table",
            hint="table names must be letters, digits and underscores",
        )
    return name


@dataclass(frozen=True)
class ColumnSpec:
    """A column of a backed-up table: its name and backup kind."""

    name: str
    kind: str


@dataclass
class TableEntry:
    """One table in the manifest: its file, row count, checksum and columns."""

    name: str
    file: str
    rows: int
    bytes: int
    blake3: str
    columns: list[ColumnSpec]


@dataclass
class Manifest:
    """What ``manifest.json`` holds; written last, so its presence marks a complete backup."""

    loopline_version: str
    alembic_revision: str
    created: str
    source_dialect: str
    tables: list[TableEntry] = field(default_factory=list)
    artifact_count: int = 0
    artifact_bytes: int = 0
    artifact_index_blake3: str = ""
    #: The online feature store's rows; ``None`` in format 1 or when not backed up.
    online: OnlineEntry | None = None
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        """The manifest as indented JSON bytes."""
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    def total_rows(self) -> int:
        """Rows over every table."""
        return sum(t.rows for t in self.tables)

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        """Parse ``manifest.json`` read from ``where``; :class:`IntegrityError` when invalid."""
        try:
            raw = orjson.loads(data)
            if not isinstance(raw, dict):
                # valid JSON all the same ([], "x", 5, null): .get would be an AttributeError
                raise ValueError(f"it holds a JSON {type(raw).__name__}, not an object")
            if raw.get("format") != FORMAT:
                raise ValueError(f"format is {raw.get('format')!r}, not {FORMAT!r}")
            version = raw.get("format_version")
            if type(version) is not int or version not in READABLE_VERSIONS:
                raise ValueError(
                    f"format_version {version!r} is not one of {list(READABLE_VERSIONS)} "
                    "(made by a newer Loopline?)"
                )
            online = raw.get("online") if version >= 2 else None
            tables = [
                TableEntry(
                    name=check_table_name(t["name"]),
                    file=t["file"],
                    rows=int(t["rows"]),
                    bytes=int(t["bytes"]),
                    blake3=str(t["blake3"]),
                    columns=[ColumnSpec(c["name"], c["kind"]) for c in t["columns"]],
                )
                for t in raw["tables"]
            ]
            for t in tables:
                if t.file != f"tables/{t.name}.parquet":
                    raise ValueError(f"table {t.name} names an unexpected file {t.file!r}")
                unknown = [c.kind for c in t.columns if c.kind not in _ARROW]
                if unknown:
                    raise ValueError(f"table {t.name} has unknown column kinds {unknown}")
            return cls(
                loopline_version=str(raw["loopline_version"]),
                alembic_revision=str(raw["alembic_revision"]),
                created=str(raw["created"]),
                source_dialect=str(raw["source_dialect"]),
                tables=tables,
                artifact_count=int(raw["artifact_count"]),
                artifact_bytes=int(raw["artifact_bytes"]),
                artifact_index_blake3=str(raw["artifact_index_blake3"]),
                online=None if online is None else OnlineEntry.from_dict(online),
                format_version=version,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidInput) as exc:
            raise IntegrityError(
                f"{where} is not a valid Loopline backup manifest: {exc}",
                hint="restore from another backup; this one is damaged",
            ) from exc
