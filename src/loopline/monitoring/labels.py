"""Ground truth that arrives later: labels joined to logged predictions by request id.

``ll.monitor.log_labels(request_ids, labels)`` stores one small Parquet batch per call in
the artifact store (content-addressed) with an index row in ``label_batches``; labels may
come hours late and in any order.

**Duplicates: the last write wins.** A request labelled twice keeps the label that arrived
last (a later call; within one call, the later position in the list). A correction is the
common reason to label again, and it comes after the mistake. :class:`LabelReport` counts
the repeats within a call (``duplicates``).

**A label belongs to the model it was sent for.** ``log_labels(..., model="churn")`` stores
the model's name with every label of the batch, and only ``churn``'s live performance (and
its loop floors) reads them: two models that share request ids never overwrite each
other's ground truth. A label sent without ``model`` (and every batch written before the
name was stored) counts for any model that logged that request id.

Request ids the prediction log does not know are not dropped silently: they are stored as
well (their prediction may still be in a model server's buffer) and reported back in
:class:`LabelReport` (a count and the first 20 ids) so that the caller sees them.

Matching does not read the whole log: the request-id index of each prediction file
(:mod:`.rid_index`) rules out the files that cannot hold a labelled id, and the ids are
matched exactly against the ``_request_id`` column of the others only.

Example:
    >>> # report = ll.monitor.log_labels(["r-1", "r-2"], [1, 0])
    >>> # report.matched, report.unmatched
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from loopline.core.context import Context, get_context
from loopline.errors import InvalidInput
from loopline.monitoring.prediction_log import (
    _parquet_bytes,
    batch_files,
    flush_default,
    index_hashes,
    index_ranges,
    local_files,
)
from loopline.monitoring.rid_index import WantedIds, contains
from loopline.monitoring.tables import label_batches
from loopline.monitoring.wire import checked_labels

#: Up to this many candidate files are matched with pyarrow, more with DuckDB.
_FEW_FILES = 8
#: Prediction files whose fingerprints are loaded per query.
_HASH_CHUNK = 200
#: How many unknown request ids a report lists (all are counted).
UNMATCHED_SHOWN = 20


@dataclass(frozen=True)
class LabelReport:
    """What :func:`log_labels` stored: how many labels matched a logged prediction."""

    received: int
    matched: int
    unmatched: int
    unmatched_ids: list[str] = field(default_factory=list)
    duplicates: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (``unmatched_ids`` holds at most 20 ids).

        Example:
            >>> LabelReport(2, 1, 1, ["x"]).to_dict()["unmatched"]
            1
        """
        return {
            "received": self.received,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "unmatched_ids": self.unmatched_ids[:UNMATCHED_SHOWN],
            "duplicates": self.duplicates,
        }


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def candidate_files(
    ids: Sequence[str], model: str | None = None, ctx: Context | None = None
) -> tuple[list[str], int]:
    """The prediction files (of ``model``) that can hold any of ``ids``, by their id range
    and fingerprints (:mod:`.rid_index`), and how many files there are in all.

    Example:
        >>> # digests, total = candidate_files(["r-1"], "flights")
    """
    ctx = ctx or get_context()
    wanted = WantedIds(ids)
    files = index_ranges(ctx, model)
    in_range = [
        (row_id, digest, span)
        for row_id, digest, lo, hi in files
        if (span := wanted.in_range(lo, hi)) is not None
    ]
    found: list[str] = []
    for start in range(0, len(in_range), _HASH_CHUNK):
        part = in_range[start : start + _HASH_CHUNK]
        hashes = index_hashes(ctx, [row_id for row_id, _, _ in part])
        for row_id, digest, (lo, hi) in part:
            index = hashes.get(row_id)
            if index is None or contains(index, wanted.prints[lo:hi]).any():
                found.append(digest)
    return found, len(files)


def known_request_ids(
    ids: Sequence[str], model: str | None = None, ctx: Context | None = None
) -> set[str]:
    """Which of ``ids`` the prediction log holds (of ``model``, or of any model): an exact
    match against the ``_request_id`` column of only the files that can hold them: with
    pyarrow, one file at a time, for a few files (no DuckDB start-up); a DuckDB join that
    scans them in parallel for more.

    Example:
        >>> # known_request_ids(["r-1", "nope"])  -> {"r-1"}
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ctx = ctx or get_context()
    flush_default()
    if not ids:
        return set()
    digests, _ = candidate_files(ids, model, ctx)
    if not digests:
        return set()
    wanted = pa.array(list(dict.fromkeys(ids)), pa.string())
    with local_files(ctx, digests) as paths:
        if len(paths) > _FEW_FILES:
            return _join_many(paths, wanted)
        found = pa.array([False] * len(wanted))
        for path in paths:
            logged = pq.read_table(path, columns=["_request_id"]).column(0)
            found = pc.or_(found, pc.is_in(wanted, value_set=logged.cast(pa.string())))
    return set(wanted.filter(found).to_pylist())


def _join_many(paths: list[str], wanted: pa.Array) -> set[str]:
    """The exact match over many files: DuckDB scans them in parallel."""
    import duckdb

    con = duckdb.connect()
    try:
        con.register("wanted", pa.table({"rid": wanted}))
        rows = con.execute(
            "SELECT DISTINCT p._request_id FROM read_parquet(?, union_by_name=true) p "
            "JOIN wanted w ON p._request_id = w.rid",
            [paths],
        ).fetchall()
    finally:
        con.close()
    return {str(r[0]) for r in rows}


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds (labels often come from a frame)."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, str | bytes) else value


def _predicts_numbers(ctx: Context, model: str) -> bool | None:
    """Whether ``model``'s logged predictions are numbers (None: nothing logged yet)."""
    import pyarrow.parquet as pq

    digests = batch_files(ctx, model, None, None)
    if not digests:
        return None
    with local_files(ctx, digests[-1:]) as paths:
        schema = pq.read_schema(paths[0])
    if "_prediction" not in schema.names:
        return None
    kind = schema.field("_prediction").type
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    )


def _check_numeric(
    ctx: Context, model: str, values: Sequence[Any], numbers: Sequence[float | None]
) -> None:
    if not _predicts_numbers(ctx, model):
        return
    for i, (v, n) in enumerate(zip(values, numbers, strict=True)):
        if v is not None and n is None:
            raise InvalidInput(
                f"label {i} is {v!r}, but model {model!r} predicts numbers",
                field=f"labels[{i}]",
                hint="send numbers (or null) as the labels of a numeric model",
            )


def log_labels(
    request_ids: Sequence[str],
    labels: Sequence[Any],
    *,
    model: str | None = None,
    ctx: Context | None = None,
) -> LabelReport:
    """Store ground-truth ``labels`` for logged predictions, by request id; report how
    many ids matched a logged prediction (of ``model`` if given; then labels of a model
    that predicts numbers must be numbers). Over a server (``LOOPLINE_URI=http(s)://``)
    this goes through ``POST /api/v1/monitor/labels``.

    Example:
        >>> # ll.monitor.log_labels(["r-1", "r-2"], [1, 0]).unmatched
        >>> # 0
    """
    values = [_plain(v) for v in labels]
    # the server's rule, before anything is stored or sent: str() would store None as 'None'
    checked_labels(request_ids, values)
    ids = list(request_ids)
    if len(ids) != len(values):
        raise InvalidInput(
            f"got {len(ids)} request ids and {len(values)} labels",
            field="labels",
            hint="pass one label per request id",
        )
    if not ids:
        return LabelReport(0, 0, 0)
    ctx = ctx or get_context()
    if ctx.is_remote:
        from loopline.monitoring import remote

        answer = remote.log_labels(ctx.settings, ids, values, model)
        return LabelReport(**answer.model_dump())
    numbers = [_number(v) for v in values]
    if model is not None:
        _check_numeric(ctx, model, values, numbers)
    known = known_request_ids(ids, model, ctx)
    unmatched_ids = [r for r in ids if r not in known]
    now = time.time()
    table = pa.table(
        {
            "request_id": pa.array(ids, pa.string()),
            "label": pa.array([None if v is None else str(v) for v in values], pa.string()),
            "label_num": pa.array(numbers, pa.float64()),
            "arrived": pa.array([now] * len(ids), pa.float64()),
            "seq": pa.array(range(len(ids)), pa.int64()),
            "model": pa.array([model] * len(ids), pa.string()),
        }
    )
    digest = ctx.artifacts.put_bytes(_parquet_bytes(table))
    with ctx.engine.begin() as conn:
        conn.execute(
            sa.insert(label_batches).values(
                digest=digest, rows=len(ids), matched=len(ids) - len(unmatched_ids), created=now
            )
        )
    return LabelReport(
        len(ids),
        len(ids) - len(unmatched_ids),
        len(unmatched_ids),
        unmatched_ids[:UNMATCHED_SHOWN],
        duplicates=len(ids) - len(set(ids)),
    )


def label_files() -> list[str]:
    """The digests of every label batch, oldest first.

    Example:
        >>> # label_files()[:1]
    """
    with get_context().engine.connect() as conn:
        q = sa.select(label_batches.c.digest).order_by(label_batches.c.id)
        return [r[0] for r in conn.execute(q)]


def read_labels(model: str | None = None) -> pd.DataFrame:
    """The newest label of every labelled request id (``request_id``, ``label``,
    ``label_num``, ``arrived``, ``model``): among the labels sent for ``model`` and those
    sent for no model in particular when ``model`` is given (what its live performance
    reads), else among all (``model`` says which model each was sent for; None: any).

    Example:
        >>> # read_labels("churn").set_index("request_id").loc["r-1", "label_num"]
    """
    import duckdb

    ctx = get_context()
    digests = label_files()
    cols = ["request_id", "label", "label_num", "arrived", "model"]
    if not digests:
        return pd.DataFrame(columns=cols)
    mine = "WHERE model IS NULL OR model = ?" if model is not None else ""
    with local_files(ctx, digests) as paths:
        con = duckdb.connect()
        try:
            batches = con.read_parquet(paths, filename=True, union_by_name=True)
            # Batches written before the model was stored have no `model` column: such a
            # label is for any model, as it was when it was written.
            stored = "model" if "model" in batches.columns else "CAST(NULL AS VARCHAR) AS model"
            batches.create_view("batches")
            frame: pd.DataFrame = con.execute(
                "SELECT request_id, label, label_num, arrived, model FROM ("
                " SELECT *, row_number() OVER (PARTITION BY request_id"
                "   ORDER BY arrived DESC, file DESC, seq DESC) AS k FROM ("
                "  SELECT request_id, label, label_num, arrived, seq, filename AS file,"
                f"  {stored} FROM batches) {mine}"
                ") WHERE k = 1",
                [] if model is None else [model],
            ).df()
        finally:
            con.close()
    return frame
