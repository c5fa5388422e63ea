"""Data drift of a current table against a reference, with Evidently's default tests.

The test of each column is chosen as Evidently 0.7.23's ``DataDriftPreset`` chooses it
(``_get_default_stattest`` in ``src/evidently/legacy/calculations/stattests/registry.py``
of github.com/evidentlyai/evidently), where *rows* is the reference's count of non-null,
finite values and *values* the number of distinct values of reference and current together:

===========  =============  =====================================  ==========================
kind         rows           values                                 test (threshold)
===========  =============  =====================================  ==========================
numeric      <= 1000        > 5                                    ``ks`` (p <= 0.05)
numeric      <= 1000        3 to 5 / at most 2                     ``chisquare`` / ``z`` (p < 0.05)
numeric      > 1000         > 5                                    ``wasserstein`` (>= 0.1)
numeric      > 1000         <= 5                                   ``jensenshannon`` (>= 0.1)
categorical  <= 1000        > 2 / at most 2                        ``chisquare`` / ``z`` (p < 0.05)
categorical  > 1000         any                                    ``jensenshannon`` (>= 0.1)
===========  =============  =====================================  ==========================

So a numeric column with few distinct values is tested as a categorical one. Column kinds
are inferred as in :mod:`loopline.monitoring.columns`. The bins of the Jensen-Shannon
distance and of the PSI are Evidently's (``get_binned_data`` in ``stattests/utils.py``):
Sturges bins over the range of both samples for a numeric column with more than 20 distinct
reference values, otherwise one bin per value. The dataset drifts when at least half of the
tested columns drift (``get_dataset_drift`` in ``legacy/calculations/data_drift.py``).

Infinite values count as missing and missing values are dropped before the test, as in
Evidently. The share of missing values of each side is reported per column, and a
significant rise of it (:func:`missing_rose`) triggers, as drift of the values does: a
feature that goes 60 % null has drifted even when its remaining values have not.

Where Evidently raises or coerces, Loopline gives the column a status saying why it has no
verdict. *Skipped* (triggers nothing): text (IDs, free text), an unsupported type, no values
in the reference, no rows in the current table (not enough data, as a loop window below
``min_rows``), or a current side all null where the reference is mostly null too (no
significant change). *Broken* (triggers, as a missing column does): the current side is all
null where the reference has values, or its type no longer matches the reference's (text in
a numeric column).

Each column is read, tested and released in turn, on a few threads (NumPy's sort and
Arrow's kernels release the GIL).

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(size=2000)})
    >>> cur = pd.DataFrame({"x": rng.normal(0.5, 1, size=2000)})
    >>> r = drift(ref, cur)
    >>> r.columns["x"].test, r.drifted
    ('wasserstein', True)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from loopline.errors import InvalidInput
from loopline.monitoring import stattests as st
from loopline.monitoring.columns import (
    CATEGORICAL,
    NUMERIC,
    Table,
    infer_kind,
    numeric_values,
    open_table,
    sort_key,
    value_counts,
)
from loopline.monitoring.report import (
    CONSTANT,
    DRIFT_SHARE,
    NO_ROWS,
    OK,
    ColumnDrift,
    DriftReport,
    Histogram,
)

if TYPE_CHECKING:
    pass

#: Reference rows up to which p-value tests are used (Evidently's switch).
SMALL_REFERENCE = 1000
#: Numeric columns with at most this many distinct values (both samples) count as categorical.
FEW_VALUES = 5
#: Numeric columns with more distinct reference values than this are binned for JS and PSI.
BIN_ABOVE_UNIQUE = 20
#: Levels drawn in a categorical plot before the rest is pooled into "other".
PLOT_LEVELS = 20

NUMERIC_TESTS = ("ks", "wasserstein", "jensenshannon", "psi")
CATEGORICAL_TESTS = ("chisquare", "z", "jensenshannon", "psi")


def drift(
    reference: Any,
    current: Any,
    columns: Iterable[str] | None = None,
    *,
    stattest: str | None = None,
    threshold: float | None = None,
    drift_share: float = DRIFT_SHARE,
    progress: Callable[[int, int], None] | None = None,
) -> DriftReport:
    """Drift of ``current`` against ``reference``, per column and for the dataset.

    ``reference`` and ``current`` are each a pandas DataFrame, a pyarrow Table, the path of
    a Parquet or CSV file, a dataset version or ``"NAME@VERSION"``. ``columns`` limits the
    check to those columns (default: every column of the reference). ``stattest`` replaces
    Evidently's default test by ``"psi"``, ``"jensenshannon"``, ``"ks"``, ``"wasserstein"``,
    ``"chisquare"`` or ``"z"`` for the columns it applies to (KS and Wasserstein to numeric
    ones, chi-square and z to categorical ones; the others keep the default); ``threshold``
    replaces that test's default threshold. ``progress(done, total)`` is called as columns
    finish. See :class:`DriftReport` for the verdicts and
    why the loop uses :meth:`DriftReport.trigger` rather than :attr:`DriftReport.drifted`.

    Raises :class:`~loopline.errors.NotFound` for a file or dataset that does not exist and
    :class:`~loopline.errors.InvalidInput` for an unreadable table or a bad parameter.

    Example:
        >>> import pandas as pd
        >>> ref = pd.DataFrame({"plan": ["a", "b"] * 50, "age": range(100)})
        >>> cur = pd.DataFrame({"plan": ["a"] * 90 + ["b"] * 10, "age": range(100)})
        >>> r = drift(ref, cur)
        >>> r.drifted_columns, r.columns["plan"].test, r.columns["age"].test
        (['plan'], 'z', 'ks')
    """
    if stattest is not None and stattest not in NUMERIC_TESTS + CATEGORICAL_TESTS:
        raise InvalidInput(
            f"The 'stattest' parameter of drift must be one of ks, wasserstein, chisquare, z, "
            f"jensenshannon, psi, or None. Got {stattest!r} instead.",
            field="stattest",
        )
    if threshold is not None and not (
        isinstance(threshold, int | float)
        and not isinstance(threshold, bool)  # True was read as 1.0: every p-value below it
        and 0 < threshold < float("inf")
    ):
        raise InvalidInput(
            "The 'threshold' parameter of drift must be a positive finite number. "
            f"Got {threshold!r} instead.",
            field="threshold",
        )
    if isinstance(drift_share, bool) or not (
        isinstance(drift_share, int | float) and 0 < drift_share <= 1
    ):
        raise InvalidInput(
            f"The 'drift_share' parameter of drift must be in (0, 1]. Got {drift_share!r} instead.",
            field="drift_share",
        )
    ref = open_table(reference, "reference")
    cur = open_table(current, "current")
    names, missing, extra = match_columns(ref.names, cur.names, columns)

    def one(name: str) -> ColumnDrift:
        return column_drift(name, ref, cur, stattest=stattest, threshold=threshold)

    workers = max(1, min(len(names), os.cpu_count() or 1, 8))
    results: list[ColumnDrift] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drift") as pool:
        for result in pool.map(one, names):
            results.append(result)
            if progress is not None:
                progress(len(results), len(names))
    return DriftReport(
        columns={c.name: c for c in results},
        n_reference=ref.num_rows,
        n_current=cur.num_rows,
        drift_share=float(drift_share),
        missing_columns=missing,
        extra_columns=extra,
        reference_label=ref.label,
        current_label=cur.label,
    )


def match_columns(
    ref_names: list[str], cur_names: list[str], columns: Iterable[str] | None
) -> tuple[list[str], list[str], list[str]]:
    """(columns to test, reference columns missing from current, current-only columns).

    Example:
        >>> match_columns(["a", "b", "c"], ["c", "a", "d"], None)
        (['a', 'c'], ['b'], ['d'])
    """
    if isinstance(columns, str):
        columns = [c for c in columns.split(",") if c]
    wanted = list(ref_names) if columns is None else list(dict.fromkeys(columns))
    if columns is not None and not wanted:
        raise InvalidInput("no columns to check", field="columns", hint="name at least one column")
    unknown = [c for c in wanted if c not in ref_names]
    if unknown:
        raise InvalidInput(
            f"columns not in the reference data: {', '.join(unknown)}",
            field="columns",
            hint=f"the reference has: {', '.join(ref_names[:30])}",
        )
    cur_set = set(cur_names)
    names = [c for c in wanted if c in cur_set]
    missing = [c for c in wanted if c not in cur_set]
    extra = [c for c in cur_names if c not in set(ref_names)] if columns is None else []
    return names, missing, extra


def _skipped(name: str, kind: str, status: str, n_ref: int = 0, n_cur: int = 0) -> ColumnDrift:
    return ColumnDrift(name, kind, "none", None, None, None, False, status, None, n_ref, n_cur)


def column_drift(
    name: str,
    ref: Table,
    cur: Table,
    *,
    stattest: str | None = None,
    threshold: float | None = None,
) -> ColumnDrift:
    """Drift of one column shared by ``ref`` and ``cur``.

    Example:
        >>> import pandas as pd
        >>> t = open_table(pd.DataFrame({"x": [1.0] * 5}), "reference")
        >>> column_drift("x", t, t).status
        'constant'
    """
    try:
        ref_col = ref.column(name)
        kind = infer_kind(ref_col, ref.declared_type(name))
    except InvalidInput as exc:  # a pandas column of mixed Python types
        return _skipped(name, "unsupported", f"skipped: {exc.message}")
    if not kind.tested:
        return _skipped(name, kind.kind, kind.reason or "skipped")
    if cur.num_rows == 0:
        return _skipped(name, kind.kind, NO_ROWS)
    try:
        cur_col = cur.column(name)
    except InvalidInput as exc:  # the reference's type held one kind of value, this does not
        return _skipped(name, kind.kind, f"broken: {exc.message}")
    rows = (len(ref_col), len(cur_col))
    if kind.kind == NUMERIC:
        r = st.finite_sorted(numeric_values(ref_col))
        try:
            c = st.finite_sorted(numeric_values(cur_col))
        except InvalidInput:
            if cur_col.null_count < len(cur_col):
                return _skipped(
                    name,
                    kind.kind,
                    f"broken: current column is {cur_col.type}, reference is numeric",
                )
            c = np.empty(0)  # all null, of a type with no numbers (an empty CSV column)
        del ref_col, cur_col
        return with_missing(
            name, kind.kind, rows, (r.size, c.size),
            lambda: numeric_drift(name, r, c, stattest=stattest, threshold=threshold),
        )  # fmt: skip
    rc = kind.counts if kind.counts is not None else value_counts(ref_col)
    cc = value_counts(cur_col)
    return with_missing(
        name, kind.kind, rows, (sum(rc.values()), sum(cc.values())),
        lambda: categorical_drift(name, rc, cc, stattest=stattest, threshold=threshold),
    )  # fmt: skip


def with_missing(
    name: str,
    kind: str,
    rows: tuple[int, int],
    present: tuple[int, int],
    test: Callable[[], ColumnDrift],
) -> ColumnDrift:
    """The column's verdict (``test()``, run when both sides have values) with the share of
    missing values of each side and whether it rose; a status when a side has no values.
    ``rows`` counts the rows of each side, ``present`` their values (not null, finite).

    Example:
        >>> with_missing("x", "numeric", (100, 50), (100, 0), lambda: None).status
        'broken: all null in current'
    """
    (n_ref, n_cur), (v_ref, v_cur) = rows, present
    if v_ref == 0:
        return _skipped(name, kind, "skipped: all null in reference", 0, v_cur)
    rose = missing_rose(n_ref - v_ref, n_ref, n_cur - v_cur, n_cur)
    miss_ref, miss_cur = (n_ref - v_ref) / n_ref, (n_cur - v_cur) / n_cur
    if v_cur == 0:
        # All null now: broken, unless the reference is so often null that a window without
        # a value is no significant change (a sparse feature in a small window).
        status = (
            "broken: all null in current"
            if rose
            else "skipped: all null in current, no significant change from the reference "
            f"({miss_ref:.1%} missing)"
        )
        result = _skipped(name, kind, status, v_ref, 0)
    else:
        result = test()
    return replace(
        result, missing_reference=miss_ref, missing_current=miss_cur, missing_drifted=rose
    )


def missing_rose(ref_missing: int, ref_rows: int, cur_missing: int, cur_rows: int) -> bool:
    """Whether the share of missing values rose significantly from reference to current.

    "Missing or not" gets the default test of a categorical column of two levels: the
    two-proportion z-test (p < 0.05) when the reference has at most 1,000 rows, else the
    Jensen-Shannon distance (>= 0.1). So from a reference without missing values, about 3 %
    missing in a large window triggers, as does a 5 % share that becomes 15 %, but not one
    that becomes 10 % (JS 0.068). Only a rise counts, as in Evidently's share-of-missing-values
    check (which fails above the reference's share): fewer missing values is better data,
    and whatever it changes in the values is for the value test to find.

    Example:
        >>> missing_rose(0, 2000, 1200, 2000), missing_rose(100, 2000, 200, 2000)
        (True, False)
    """
    if ref_rows == 0 or cur_rows == 0 or cur_missing * ref_rows <= ref_missing * cur_rows:
        return False
    if ref_rows <= SMALL_REFERENCE:
        spec = st.TESTS["z"]
        _, p = st.z_proportions(ref_missing, ref_rows, cur_missing, cur_rows)
        return spec.is_drift(statistic=0.0, p_value=p, threshold=spec.default_threshold)
    spec = st.TESTS["jensenshannon"]
    d = st.jensenshannon(
        np.array([ref_missing, ref_rows - ref_missing]),
        np.array([cur_missing, cur_rows - cur_missing]),
    )
    return spec.is_drift(statistic=d, p_value=None, threshold=spec.default_threshold)


def _levels(x_sorted: st.Floats) -> st.Floats:
    keep = np.empty(x_sorted.size, dtype=bool)
    keep[:1] = True
    np.not_equal(x_sorted[1:], x_sorted[:-1], out=keep[1:])
    return x_sorted[keep]


def _count_at(x_sorted: st.Floats, keys: st.Floats) -> np.ndarray:
    return np.searchsorted(x_sorted, keys, side="right") - np.searchsorted(
        x_sorted, keys, side="left"
    )


def _decide(
    name: str,
    kind: str,
    test: str,
    statistic: float,
    p_value: float | None,
    threshold: float | None,
    *,
    status: str,
    psi: float,
    n: tuple[int, int],
    histogram: Histogram,
) -> ColumnDrift:
    spec = st.TESTS[test]
    limit = spec.default_threshold if threshold is None else float(threshold)
    drifted = spec.is_drift(statistic=statistic, p_value=p_value, threshold=limit)
    return ColumnDrift(
        name, kind, test, statistic, p_value, limit, drifted, status, psi, n[0], n[1], histogram
    )


def numeric_drift(
    name: str,
    r: st.Floats,
    c: st.Floats,
    *,
    stattest: str | None = None,
    threshold: float | None = None,
) -> ColumnDrift:
    """Drift of a numeric column from its two sorted, finite, non-empty samples.

    Example:
        >>> import numpy as np
        >>> numeric_drift("x", np.arange(10.0), np.arange(10.0)).drifted
        False
    """
    n_r, n_c = int(r.size), int(c.size)
    u_r = st.unique_count(r)
    keys: st.Floats | None = None
    if u_r <= BIN_ABOVE_UNIQUE:
        keys = np.union1d(_levels(r), _levels(c))
        n_values = int(keys.size)
    else:
        n_values = u_r + 1  # more than FEW_VALUES: the exact count is not needed
    # Evidently's bins for Jensen-Shannon and PSI.
    if keys is None:
        edges = st.sturges_edges(float(min(r[0], c[0])), float(max(r[-1], c[-1])), n_r + n_c)
        ref_bins, cur_bins = st.histogram_sorted(r, edges), st.histogram_sorted(c, edges)
        hist = Histogram(_shares(ref_bins), _shares(cur_bins), edges=edges.tolist())
    else:
        ref_bins, cur_bins = _count_at(r, keys), _count_at(c, keys)
        hist = _numeric_plot(r, c, keys, ref_bins, cur_bins)
    psi = st.psi(ref_bins, cur_bins)
    few = n_values <= FEW_VALUES
    if stattest in NUMERIC_TESTS:
        test = stattest
    elif n_r <= SMALL_REFERENCE:
        test = ("chisquare" if n_values > 2 else "z") if few else "ks"
    else:
        test = "jensenshannon" if few else "wasserstein"
    p_value: float | None = None
    if test == "ks":
        statistic, p_value = st.ks(r, c)
    elif test == "wasserstein":
        statistic = st.wasserstein_normed(r, c)
    elif test == "jensenshannon":
        statistic = st.jensenshannon(ref_bins, cur_bins)
    elif test == "psi":
        statistic = psi
    elif test == "chisquare":
        statistic, p_value = st.chisquare(ref_bins, cur_bins)
    else:  # z: the first (smallest) value against the rest
        assert keys is not None
        statistic, p_value = st.z_proportions(int(ref_bins[0]), n_r, int(cur_bins[0]), n_c)
    status = CONSTANT if n_values == 1 else OK
    return _decide(
        name, NUMERIC, test, statistic, p_value, threshold,
        status=status, psi=psi, n=(n_r, n_c), histogram=hist,
    )  # fmt: skip


def _shares(counts: np.ndarray) -> list[float]:
    total = float(counts.sum())
    return (counts / total).tolist() if total else [0.0] * len(counts)


def _numeric_plot(
    r: st.Floats, c: st.Floats, keys: st.Floats, ref_bins: np.ndarray, cur_bins: np.ndarray
) -> Histogram:
    if keys.size <= 2 * PLOT_LEVELS:
        labels = [f"{k:g}" for k in keys.tolist()]
        return Histogram(_shares(ref_bins), _shares(cur_bins), labels=labels)
    edges = np.linspace(float(min(r[0], c[0])), float(max(r[-1], c[-1])), 31)
    return Histogram(
        _shares(st.histogram_sorted(r, edges)),
        _shares(st.histogram_sorted(c, edges)),
        edges=edges.tolist(),
    )


def categorical_drift(
    name: str,
    rc: dict[Any, int],
    cc: dict[Any, int],
    *,
    stattest: str | None = None,
    threshold: float | None = None,
) -> ColumnDrift:
    """Drift of a categorical column from its reference and current value counts.

    Example:
        >>> categorical_drift("c", {"a": 50, "b": 50}, {"a": 50, "b": 50}).test
        'z'
    """
    keys = list(rc) + [k for k in cc if k not in rc]
    ref = np.array([rc.get(k, 0) for k in keys], dtype=np.int64)
    cur = np.array([cc.get(k, 0) for k in keys], dtype=np.int64)
    n_r, n_c, n_values = int(ref.sum()), int(cur.sum()), len(keys)
    psi = st.psi(ref, cur)
    if stattest in CATEGORICAL_TESTS:
        test = stattest
    elif n_r <= SMALL_REFERENCE:
        test = "chisquare" if n_values > 2 else "z"
    else:
        test = "jensenshannon"
    p_value: float | None = None
    if test == "chisquare":
        statistic, p_value = st.chisquare(ref, cur)
    elif test == "z":
        first = min(keys, key=sort_key)
        statistic, p_value = st.z_proportions(rc.get(first, 0), n_r, cc.get(first, 0), n_c)
    elif test == "jensenshannon":
        statistic = st.jensenshannon(ref, cur)
    else:
        statistic = psi
    return _decide(
        name, CATEGORICAL, test, statistic, p_value, threshold,
        status=CONSTANT if n_values == 1 else OK, psi=psi, n=(n_r, n_c),
        histogram=category_plot(keys, ref, cur),
    )  # fmt: skip


def category_plot(keys: list[Any], ref: np.ndarray, cur: np.ndarray) -> Histogram:
    """Shares of the most frequent levels (both sides together) and of the rest as "other".

    Example:
        >>> import numpy as np
        >>> category_plot(["a", "b"], np.array([1, 3]), np.array([1, 1])).labels
        ['b', 'a']
    """
    rs = ref / max(int(ref.sum()), 1)
    cs = cur / max(int(cur.sum()), 1)
    order = np.argsort(-(rs + cs), kind="stable")
    top, rest = order[:PLOT_LEVELS], order[PLOT_LEVELS:]
    labels = [str(keys[i]) for i in top]
    r_list, c_list = rs[top].tolist(), cs[top].tolist()
    if rest.size:
        labels.append(f"other ({rest.size} levels)")
        r_list.append(float(rs[rest].sum()))
        c_list.append(float(cs[rest].sum()))
    return Histogram(r_list, c_list, labels=labels)
