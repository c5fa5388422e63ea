"""Which logged predictions a label is for: request ids matched against the prediction log.

A label names a request (and a row of it); before it is stored, :mod:`.labels` asks how
many rows each labelled request had, to report unknown ids and rows out of range. The
match never reads the whole log: the request-id index of each prediction file
(:mod:`.rid_index`) rules out the files that cannot hold a wanted id, and the ids are
matched exactly against the ``_request_id`` column (and ``_row``, in files with requests
of several rows) of the others only - with pyarrow for a few files, DuckDB for more.

Example:
    >>> # logged_rows(["r-1", "b-7", "nope"])  -> {"r-1": 1, "b-7": 3}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopline.core.context import Context, get_context
from loopline.monitoring.log_reads import duck, index_hashes, index_ranges, local_files
from loopline.monitoring.prediction_log import flush_default
from loopline.monitoring.rid_index import WantedIds, may_hold

#: Up to this many candidate files are matched with pyarrow, more with DuckDB.
_FEW_FILES = 8


def candidate_files(
    ids: Sequence[str], model: str | None = None, ctx: Context | None = None
) -> tuple[list[str], int]:
    """The prediction files (of ``model``) that can hold any of ``ids``, by their id range
    and fingerprints (:mod:`.rid_index`), and how many files there are in all.

    Example:
        >>> # digests, total = candidate_files(["r-1"], "flights")
    """
    found, total = _candidates(WantedIds(ids), model, ctx or get_context())
    return [digest for digest, _ in found], total


def _candidates(
    wanted: WantedIds, model: str | None, ctx: Context
) -> tuple[list[tuple[str, bool]], int]:
    """:func:`candidate_files`, each with whether its file has a request of several rows."""
    files = index_ranges(ctx, model)
    kept = may_hold(
        wanted,
        [(row_id, lo, hi) for row_id, _, lo, hi, _ in files],
        lambda row_ids: index_hashes(ctx, row_ids),
    )
    by_id = {row_id: (digest, several) for row_id, digest, _, _, several in files}
    found: dict[str, bool] = {}
    for row_id in kept:
        digest, several = by_id[row_id]
        found[digest] = found.get(digest, False) or several
    return list(found.items()), len(files)


def logged_rows(
    ids: Sequence[str], model: str | None = None, ctx: Context | None = None
) -> dict[str, int]:
    """How many rows each of ``ids`` that the prediction log holds (of ``model``, or of
    any model) had: an exact match against the ``_request_id`` column of only the files
    that can hold them (and their ``_row`` column, in a file with requests of several
    rows): with pyarrow, one file at a time, for a few files (no DuckDB start-up); a
    DuckDB join that scans them in parallel for more.

    Example:
        >>> # logged_rows(["r-1", "b-7", "nope"])  -> {"r-1": 1, "b-7": 3}
    """
    ctx = ctx or get_context()
    flush_default()
    if not ids:
        return {}
    return _logged_rows(WantedIds(ids), model, ctx)


def _logged_rows(wanted_ids: WantedIds, model: str | None, ctx: Context) -> dict[str, int]:
    """:func:`logged_rows` of the ids sorted and fingerprinted (the log flushed)."""
    found, _ = _candidates(wanted_ids, model, ctx)
    if not found:
        return {}
    wanted = wanted_ids.as_arrow()  # each id once
    several = {digest for digest, many in found if many}
    digests = [digest for digest, _ in found]
    with local_files(ctx, digests) as paths:
        if len(paths) > _FEW_FILES:
            return _join_many(
                [p for p, d in zip(paths, digests, strict=True) if d not in several],
                [p for p, d in zip(paths, digests, strict=True) if d in several],
                wanted,
            )
        return _match_few(paths, [d in several for d in digests], wanted_ids)


def _match_few(paths: list[str], several: list[bool], wanted_ids: WantedIds) -> dict[str, int]:
    """The exact match over a few files with pyarrow: the ``_row`` column is read only in
    a file with requests of several rows (single-row traffic reads the ids alone)."""
    wanted = wanted_ids.as_arrow()
    single: list[pa.ChunkedArray] = []
    rows: dict[str, int] = {}
    for path, many in zip(paths, several, strict=True):
        if not many:
            single.append(_read(path, ["_request_id"]).column(0).cast(pa.string()))
            continue
        logged = _read(path, ["_request_id", "_row"])
        rid = logged.column(0).cast(pa.string())
        hits = pa.table({"rid": rid, "row": logged.column(1).cast(pa.int64())}).filter(
            pc.is_in(rid, value_set=wanted)
        )
        top = hits.group_by("rid").aggregate([("row", "max")])
        for r, n in zip(
            top.column("rid").to_pylist(), top.column("row_max").to_pylist(), strict=True
        ):
            rows[r] = max(rows.get(r, 0), n + 1)
    if not single:
        return rows
    # The ids of single-row requests: most of them, in one pass (in C) rather than one
    # call each. The logged ids are looked up among the wanted ones (a hash table of
    # these, made once) for their positions in the sorted ids, whose Python texts are
    # then picked (none is made again from Arrow's)
    logged_ids = pa.chunked_array([chunk for col in single for chunk in col.chunks], pa.string())
    at = pc.index_in(logged_ids, value_set=wanted).drop_null().to_numpy()
    seen = np.zeros(len(wanted_ids.sorted), dtype=np.bool_)
    seen[at] = True
    return dict.fromkeys(wanted_ids.sorted[seen].tolist(), 1) | rows


def _read(path: str, columns: list[str]) -> pa.Table:
    """``columns`` of one Parquet file: straight from its reader, not through
    ``pq.read_table``'s dataset machinery (~0.3 ms more a file of 10,000 requests)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        return f.read(columns=columns)


def known_request_ids(
    ids: Sequence[str], model: str | None = None, ctx: Context | None = None
) -> set[str]:
    """Which of ``ids`` the prediction log holds (of ``model``, or of any model).

    Example:
        >>> # known_request_ids(["r-1", "nope"])  -> {"r-1"}
    """
    return set(logged_rows(ids, model, ctx))


def _join_many(single: list[str], several: list[str], wanted: pa.Array) -> dict[str, int]:
    """The exact match over many files: DuckDB scans them in parallel (the ``_row``
    column of the files with requests of several rows only). On the process's shared
    DuckDB database (:func:`~loopline.monitoring.log_reads.duck`): opening one of its
    own cost ~14 ms per call."""
    rows: dict[str, int] = {}
    with duck() as con:
        con.register("wanted", pa.table({"rid": wanted}))
        if several:
            for rid, n in con.execute(
                "SELECT p._request_id, max(p._row) + 1 FROM read_parquet(?, union_by_name=true) p "
                "JOIN wanted w ON p._request_id = w.rid GROUP BY p._request_id",
                [several],
            ).fetchall():
                rows[str(rid)] = int(n)
        if single:
            for (rid,) in con.execute(
                "SELECT DISTINCT p._request_id FROM read_parquet(?, union_by_name=true) p "
                "JOIN wanted w ON p._request_id = w.rid",
                [single],
            ).fetchall():
                rows.setdefault(str(rid), 1)
    return rows
