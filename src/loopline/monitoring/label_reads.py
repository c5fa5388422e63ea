"""Reading labels back: the newest label of each labelled row, from the label files that
can hold the asked requests.

Each ``log_labels`` call stored one Parquet batch with an index row in ``label_batches``
(the model, the ids' range and fingerprints); :func:`label_files` picks the batches that
can hold an asked id and :func:`read_labels` lets DuckDB pick the newest label of each
row among them (the last write wins: see :mod:`.labels`).

Example:
    >>> # read_labels("churn", request_ids=["r-1", "r-2"])
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from loopline.core.context import Context, get_context
from loopline.core.db import reading
from loopline.monitoring.log_reads import duck, index_hashes, local_files
from loopline.monitoring.rid_index import WantedIds, may_hold
from loopline.monitoring.tables import label_batches


def label_files(
    model: str | None = None,
    request_ids: Sequence[str] | None = None,
    ctx: Context | None = None,
) -> list[str]:
    """The digests of the label batches, oldest first: every one, or (``model`` given)
    those sent for ``model`` or for any model, and (``request_ids`` given) of those only
    the ones whose request-id range and fingerprints (:mod:`.rid_index`) say they can hold
    one of these ids. A batch written before ``label_batches`` had these columns (NULL) is
    always listed.

    Example:
        >>> # label_files("churn", ["r-1", "r-2"])[:1]
    """
    ctx = ctx or get_context()
    t = label_batches
    q = sa.select(t.c.id, t.c.digest, t.c.rid_min, t.c.rid_max).order_by(t.c.id)
    if model is not None:
        q = q.where(sa.or_(t.c.model.is_(None), t.c.model == model))
    with reading(ctx.engine) as conn:
        files = [(int(r[0]), str(r[1]), r[2], r[3]) for r in conn.execute(q)]
    if request_ids is None:
        return [digest for _, digest, _, _ in files]
    kept = set(
        may_hold(
            WantedIds(request_ids),
            [(row_id, lo, hi) for row_id, _, lo, hi in files],
            lambda row_ids: index_hashes(ctx, row_ids, label_batches),
        )
    )
    return [digest for row_id, digest, _, _ in files if row_id in kept]


def _no_labels() -> pd.DataFrame:
    """No label: the columns of :func:`read_labels` with the types it gives them (text as
    DuckDB hands it to pandas: ``str``, which is ``object`` before pandas 3)."""
    return pd.DataFrame(
        {
            "request_id": pd.Series(dtype=str),
            "label": pd.Series(dtype=str),
            "label_num": pd.Series(dtype="float64"),
            "arrived": pd.Series(dtype="float64"),
            "model": pd.Series(dtype=str),
            "row": pd.Series(dtype="Int64"),
            "all_rows": pd.Series(dtype=bool),
        }
    )


def read_labels(
    model: str | None = None, *, request_ids: Sequence[str] | pd.Series | None = None
) -> pd.DataFrame:
    """The newest label of every labelled row and request (``request_id``, ``label``,
    ``label_num``, ``arrived``, ``model``, ``row``, ``all_rows``): among the labels sent
    for ``model`` and those sent for no model in particular when ``model`` is given (what
    its live performance reads), else among all (``model`` says which model each was sent
    for; None: any). ``row`` is the row a label is for (``<NA>``: the request as a whole;
    then ``all_rows`` says whether it was sent for every row of the request).
    ``request_ids``: only the labels of these requests (those of the predictions read).

    Only the label files that can hold them are opened: those sent for ``model`` (or for
    any model), and of those, with ``request_ids``, the ones whose request-id index says
    they can hold one (:func:`label_files`).

    Example:
        >>> # read_labels("churn").set_index("request_id").loc["r-1", "label_num"]
        >>> # read_labels("churn", request_ids=["r-1", "r-2"])
    """
    ctx = get_context()
    where, params = [], []
    if model is not None:
        where.append("(model IS NULL OR model = ?)")
        params.append(model)
    wanted = None
    asked = None
    if request_ids is not None:
        asked = pd.Series(request_ids).astype(str)
        if len(asked) == 0:
            return _no_labels()
        wanted = pa.array(asked, pa.string())
        # Before the newest of each is picked: the labels of other requests (most of them,
        # under a page of recent windows) are never sorted; and by the ids' range DuckDB
        # skips the files (row groups) of other ids by their statistics, unread.
        bounds = pc.min_max(wanted)
        where.append("request_id BETWEEN ? AND ? AND request_id IN (SELECT rid FROM wanted)")
        params += [bounds["min"].as_py(), bounds["max"].as_py()]
    mine = f"WHERE {' AND '.join(where)}" if where else ""
    digests = label_files(model, None if asked is None else asked.tolist(), ctx)
    if not digests:
        return _no_labels()
    with local_files(ctx, digests) as paths, duck() as con:
        batches = con.read_parquet(paths, filename=True, union_by_name=True)
        # Batches written before the model (the row) was stored have no such column:
        # such a label is for any model (for its request as a whole), as when written.
        have = set(batches.columns)
        stored = {
            "model": "model" if "model" in have else "CAST(NULL AS VARCHAR) AS model",
            "row": "row" if "row" in have else "CAST(NULL AS BIGINT) AS row",
            "all_rows": (
                "coalesce(all_rows, false) AS all_rows"
                if "all_rows" in have
                else "false AS all_rows"
            ),
        }
        batches.create_view("batches")
        if wanted is not None:
            con.register("wanted", pa.table({"rid": wanted}))
        frame: pd.DataFrame = con.execute(
            "SELECT request_id, label, label_num, arrived, model, row, all_rows FROM ("
            " SELECT *, row_number() OVER (PARTITION BY request_id, row"
            "   ORDER BY arrived DESC, file DESC, seq DESC) AS k FROM ("
            "  SELECT request_id, label, label_num, arrived, seq, filename AS file,"
            f"  {', '.join(stored.values())} FROM batches) {mine}"
            ") WHERE k = 1",
            params,
        ).df()
    frame["row"] = frame["row"].astype("Int64")
    frame["all_rows"] = frame["all_rows"].astype(bool)
    return frame
