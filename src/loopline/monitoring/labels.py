"""Ground truth that arrives later: labels joined to logged predictions by request id.

``ll.monitor.log_labels(request_ids, labels)`` stores one small Parquet batch per call in
the artifact store (content-addressed) with an index row in ``label_batches``; labels may
come hours late and in any order, and a request labelled twice keeps the label that
arrived last. Request ids the prediction log does not know are not dropped silently: they
are stored as well (their prediction may still be in a model server's buffer) and
reported back in :class:`LabelReport` so that the caller sees them.

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

from loopline.core.context import get_context
from loopline.errors import InvalidInput
from loopline.monitoring.prediction_log import (
    _parquet_bytes,
    batch_files,
    flush_default,
    local_files,
)
from loopline.monitoring.tables import label_batches


@dataclass(frozen=True)
class LabelReport:
    """What :func:`log_labels` stored: how many labels matched a logged prediction."""

    received: int
    matched: int
    unmatched: int
    unmatched_ids: list[str] = field(default_factory=list)

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
            "unmatched_ids": self.unmatched_ids[:20],
        }


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def known_request_ids(ids: Sequence[str], model: str | None = None) -> set[str]:
    """Which of ``ids`` the prediction log holds (of ``model``, or of any model).

    Example:
        >>> # known_request_ids(["r-1", "nope"])  -> {"r-1"}
    """
    import duckdb

    ctx = get_context()
    flush_default()
    digests = batch_files(ctx, model, None, None)
    if not digests or not ids:
        return set()
    with local_files(ctx, digests) as paths:
        con = duckdb.connect()
        try:
            wanted = pa.table({"rid": pa.array(list(ids), pa.string())})
            con.register("wanted", wanted)
            rows = con.execute(
                "SELECT DISTINCT p._request_id FROM read_parquet(?, union_by_name=true) p "
                "JOIN wanted w ON p._request_id = w.rid",
                [paths],
            ).fetchall()
        finally:
            con.close()
    return {str(r[0]) for r in rows}


def log_labels(
    request_ids: Sequence[str], labels: Sequence[Any], *, model: str | None = None
) -> LabelReport:
    """Store ground-truth ``labels`` for logged predictions, by request id; report how
    many ids matched a logged prediction (of ``model`` if given).

    Example:
        >>> # ll.monitor.log_labels(["r-1", "r-2"], [1, 0]).unmatched
        >>> # 0
    """
    ids = [str(r) for r in request_ids]
    values = list(labels)
    if len(ids) != len(values):
        raise InvalidInput(
            f"got {len(ids)} request ids and {len(values)} labels",
            field="labels",
            hint="pass one label per request id",
        )
    if not ids:
        return LabelReport(0, 0, 0)
    known = known_request_ids(ids, model)
    unmatched_ids = [r for r in ids if r not in known]
    now = time.time()
    table = pa.table(
        {
            "request_id": pa.array(ids, pa.string()),
            "label": pa.array([None if v is None else str(v) for v in values], pa.string()),
            "label_num": pa.array([_number(v) for v in values], pa.float64()),
            "arrived": pa.array([now] * len(ids), pa.float64()),
            "seq": pa.array(range(len(ids)), pa.int64()),
        }
    )
    ctx = get_context()
    digest = ctx.artifacts.put_bytes(_parquet_bytes(table))
    with ctx.engine.begin() as conn:
        conn.execute(
            sa.insert(label_batches).values(
                digest=digest, rows=len(ids), matched=len(ids) - len(unmatched_ids), created=now
            )
        )
    return LabelReport(len(ids), len(ids) - len(unmatched_ids), len(unmatched_ids), unmatched_ids)


def label_files() -> list[str]:
    """The digests of every label batch, oldest first.

    Example:
        >>> # label_files()[:1]
    """
    with get_context().engine.connect() as conn:
        q = sa.select(label_batches.c.digest).order_by(label_batches.c.id)
        return [r[0] for r in conn.execute(q)]


def read_labels() -> pd.DataFrame:
    """The newest label of every labelled request id (``request_id``, ``label``,
    ``label_num``, ``arrived``).

    Example:
        >>> # read_labels().set_index("request_id").loc["r-1", "label_num"]
    """
    import duckdb

    ctx = get_context()
    digests = label_files()
    cols = ["request_id", "label", "label_num", "arrived"]
    if not digests:
        return pd.DataFrame(columns=cols)
    with local_files(ctx, digests) as paths:
        con = duckdb.connect()
        try:
            frame: pd.DataFrame = con.execute(
                "SELECT request_id, label, label_num, arrived FROM ("
                " SELECT *, row_number() OVER (PARTITION BY request_id"
                "   ORDER BY arrived DESC, file DESC, seq DESC) AS k"
                " FROM (SELECT *, filename AS file FROM read_parquet(?, filename=true))"
                ") WHERE k = 1",
                [paths],
            ).df()
        finally:
            con.close()
    return frame
