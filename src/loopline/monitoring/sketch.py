"""Windowed drift from fixed-bin histogram sketches: counts in, drift out, memory fixed.

A :class:`DriftSketch` fixes each column's bins once, from the reference:

- a numeric column gets the reference's quantile edges (``bins`` of them, 32 by default,
  fewer when values repeat), with an open bin below the first edge and above the last; a
  numeric column with at most 5 distinct reference values is kept value by value, as
  Evidently tests such columns as categorical;
- a categorical column gets the reference's levels (the ``max_levels`` most frequent, 1,000
  by default) plus ``"other"``, which collects levels never seen in the reference.

:meth:`DriftSketch.update` adds a batch's counts (nulls and infinities are counted apart and
left out, as in :func:`~loopline.monitoring.drift.drift`, and so are the rows of a batch
whose column no longer has the reference's type), so memory does not grow with traffic;
windows are stored with :meth:`~DriftSketch.to_json` and combined with
:meth:`DriftSketch.merge`, and :meth:`DriftSketch.drift` works on the counts alone.

Tests on the counts. The bins decide; the raw values are gone:

- categorical (and few-valued numeric) columns: chi-square, or the z-test with two levels,
  when the reference has at most 1,000 values, else the Jensen-Shannon distance. These are
  Evidently's tests on the same counts, except that levels unseen in the reference are
  pooled in ``"other"`` instead of each counting apart.
- numeric columns: ``ks_binned`` (at most 1,000 reference values): the largest CDF gap at
  the bin edges (a lower bound of the exact KS statistic) with SciPy's asymptotic p-value;
  else ``wasserstein_binned``: the Wasserstein distance with each bin's values spread evenly
  over it (the open end bins closed at the smallest and largest values seen), divided by the
  reference std. Both **approximate** Evidently's KS and Wasserstein tests on the raw values.
- every column also gets the PSI on its bins.

Missing values, broken and skipped columns are decided as in
:func:`~loopline.monitoring.drift.drift`: the share of missing values (nulls, infinities and
rows of batches without the column) of both sides and whether it rose; a window whose
column is all null, or held text where the reference held numbers, is *broken* and
triggers; a window of no rows is skipped.

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> sketch = DriftSketch.from_reference(pd.DataFrame({"x": rng.normal(size=5000)}))
    >>> window = sketch.window().update(pd.DataFrame({"x": rng.normal(1, 1, size=5000)}))
    >>> stored = window.to_json()
    >>> DriftSketch.from_json(stored).drift().drifted_columns
    ['x']
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import orjson

from loopline.errors import InvalidInput
from loopline.monitoring import stattests as st
from loopline.monitoring.columns import (
    CATEGORICAL,
    NUMERIC,
    infer_kind,
    numeric_values,
    open_table,
    sort_key,
    value_counts,
)
from loopline.monitoring.drift import (
    FEW_VALUES,
    SMALL_REFERENCE,
    category_plot,
    match_columns,
    with_missing,
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

FORMAT = 1
OTHER = "other"


def _level(value: Any) -> Any:
    """A level as JSON keeps it (text for anything but text, numbers and booleans)."""
    return value if isinstance(value, str | bool | int | float) else str(value)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _bound(x: float | None, empty: float) -> float:
    return empty if x is None else float(x)


@dataclass
class _Column:
    """One column's bins and counts (the last bin of a level column is "other")."""

    kind: str
    edges: list[float] | None  # numeric: interior edges; None for level columns
    levels: list[Any] | None  # level columns: the reference levels
    reference: np.ndarray
    current: np.ndarray
    ref_std: float = 0.0
    ref_min: float = float("inf")
    ref_max: float = float("-inf")
    cur_min: float = float("inf")
    cur_max: float = float("-inf")
    ref_null: int = 0
    cur_null: int = 0
    cur_absent: int = 0
    cur_wrong: int = 0  # rows of batches whose column was not numeric (a numeric reference)
    cur_wrong_type: str | None = None
    _index: dict[Any, int] | None = field(default=None, repr=False)
    _level_array: np.ndarray | None = field(default=None, repr=False)

    def index(self) -> dict[Any, int]:
        if self._index is None:
            self._index = {lv: i for i, lv in enumerate(self.levels or [])}
        return self._index

    def add(self, column: Any) -> None:
        """Add a batch's values of this column to the current counts."""
        if self.edges is not None:
            x = numeric_values(column)
            finite = st.finite_sorted(x)  # sorting the batch beats a search per value
            self.cur_null += int(x.size - finite.size)
            if finite.size:
                below = np.searchsorted(finite, np.asarray(self.edges), side="left")
                self.current += np.diff(below, prepend=0, append=finite.size)
                self.cur_min = min(self.cur_min, float(finite[0]))
                self.cur_max = max(self.cur_max, float(finite[-1]))
            return
        if self.kind == NUMERIC:  # a few-valued numeric column, value by value
            x = numeric_values(column)
            finite = x[np.isfinite(x)]
            self.cur_null += int(x.size - finite.size)
            values, counts = np.unique(finite, return_counts=True)
            if self._level_array is None:
                self._level_array = np.asarray(self.levels, dtype=np.float64)
            pos = np.minimum(np.searchsorted(self._level_array, values), len(self._level_array) - 1)
            known = self._level_array[pos] == values
            np.add.at(self.current, pos[known], counts[known])
            self.current[-1] += int(counts[~known].sum())
            if finite.size:
                self.cur_min = min(self.cur_min, float(finite.min()))
                self.cur_max = max(self.cur_max, float(finite.max()))
            return
        index = self.index()
        found = value_counts(column)
        self.cur_null += len(column) - sum(found.values())
        for value, count in found.items():
            self.current[index.get(_level(value), len(index))] += count

    def reference_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "edges": self.edges,
            "levels": self.levels,
            "reference": self.reference.tolist(),
            "ref_std": self.ref_std,
            "ref_min": _finite(self.ref_min),
            "ref_max": _finite(self.ref_max),
            "ref_null": self.ref_null,
        }


class DriftSketch:
    """Per-column fixed-bin histograms of a reference and of a window of current data.

    Build one with :meth:`from_reference`; see the module docstring for bins and tests.

    Example:
        >>> import pandas as pd
        >>> s = DriftSketch.from_reference(pd.DataFrame({"c": ["a", "b"] * 50}))
        >>> s.update(pd.DataFrame({"c": ["a"] * 100})).drift().columns["c"].test
        'z'
    """

    def __init__(
        self,
        columns: dict[str, _Column],
        skipped: dict[str, str],
        n_reference: int,
        n_current: int = 0,
    ) -> None:
        self._columns = columns
        self._skipped = skipped
        self.n_reference = n_reference
        self.n_current = n_current
        self.fingerprint = self._fingerprint()

    @classmethod
    def from_reference(
        cls,
        reference: Any,
        columns: Iterable[str] | None = None,
        *,
        bins: int = 32,
        max_levels: int = 1000,
    ) -> DriftSketch:
        """Fix each column's bins from ``reference`` (a DataFrame, Arrow table, Parquet/CSV
        path or dataset): ``bins`` quantile bins for numeric columns (20 to 50 is sensible),
        up to ``max_levels`` levels plus "other" for categorical ones.

        Example:
            >>> import pandas as pd
            >>> s = DriftSketch.from_reference(pd.DataFrame({"x": range(100)}), bins=4)
            >>> s.edges("x")
            [25.0, 50.0, 75.0]
        """
        if not (isinstance(bins, int) and 2 <= bins <= 10_000):
            raise InvalidInput(
                f"The 'bins' parameter of from_reference must be an int in [2, 10000]. "
                f"Got {bins!r} instead.",
                field="bins",
            )
        table = open_table(reference, "reference")
        names, _, _ = match_columns(table.names, table.names, columns)
        built: dict[str, _Column] = {}
        skipped: dict[str, str] = {}
        for name in names:
            col = table.column(name)
            kind = infer_kind(col, table.declared_type(name))
            if not kind.tested:
                skipped[name] = kind.reason or "skipped"
                continue
            if kind.kind == NUMERIC:
                made = _numeric_column(col, bins)
            else:
                made = _level_column(col, max_levels, kind.counts)
            if isinstance(made, str):
                skipped[name] = made
            else:
                built[name] = made
        return cls(built, skipped, table.num_rows)

    # -- counting --------------------------------------------------------------------------

    def update(self, batch: Any) -> DriftSketch:
        """Add a batch of current data (a DataFrame, Arrow table or file) to the counts;
        return ``self``. Columns absent from the batch are counted as absent, extra columns
        are ignored.

        Example:
            >>> import pandas as pd
            >>> s = DriftSketch.from_reference(pd.DataFrame({"x": [1.0, 2.0]}))
            >>> s.update(pd.DataFrame({"x": [1.0]})).n_current
            1
        """
        table = open_table(batch, "batch")
        present = set(table.names)
        rows = table.num_rows
        for name, col in self._columns.items():
            if name not in present:
                col.cur_absent += rows
                continue
            column = table.column(name)
            try:
                col.add(column)
            except InvalidInput:  # text where the reference held numbers
                if column.null_count == len(column):
                    col.cur_null += len(column)  # all null, of a type with no numbers
                else:
                    col.cur_wrong += len(column)
                    col.cur_wrong_type = col.cur_wrong_type or str(column.type)
        self.n_current += rows
        return self

    def window(self) -> DriftSketch:
        """A sketch with the same reference and empty current counts (a new window).

        Example:
            >>> import pandas as pd
            >>> s = DriftSketch.from_reference(pd.DataFrame({"x": [1.0, 2.0]}))
            >>> s.update(pd.DataFrame({"x": [1.0]})).window().n_current
            0
        """
        cols = {}
        for name, col in self._columns.items():
            fresh = copy.copy(col)
            fresh.current = np.zeros_like(col.current)
            fresh.cur_min, fresh.cur_max = float("inf"), float("-inf")
            fresh.cur_null = fresh.cur_absent = fresh.cur_wrong = 0
            fresh.cur_wrong_type = None
            cols[name] = fresh
        return DriftSketch(cols, dict(self._skipped), self.n_reference)

    @classmethod
    def merge(cls, sketches: Sequence[DriftSketch]) -> DriftSketch:
        """One sketch whose current counts are the sum of ``sketches``' (windows of the same
        reference, e.g. ten stored 1-minute windows make a 10-minute one).

        Example:
            >>> import pandas as pd
            >>> s = DriftSketch.from_reference(pd.DataFrame({"x": [1.0, 2.0]}))
            >>> a = s.window().update(pd.DataFrame({"x": [1.0]}))
            >>> DriftSketch.merge([a, a]).n_current
            2
        """
        if not sketches:
            raise InvalidInput("merge needs at least one sketch", field="sketches")
        first = sketches[0]
        if any(s.fingerprint != first.fingerprint for s in sketches):
            raise InvalidInput(
                "the sketches were built from different references",
                field="sketches",
                hint="merge only windows made with .window() of one reference sketch",
            )
        out = first.window()
        for s in sketches:
            for name, col in out._columns.items():
                other = s._columns[name]
                col.current += other.current
                col.cur_min = min(col.cur_min, other.cur_min)
                col.cur_max = max(col.cur_max, other.cur_max)
                col.cur_null += other.cur_null
                col.cur_absent += other.cur_absent
                col.cur_wrong += other.cur_wrong
                col.cur_wrong_type = col.cur_wrong_type or other.cur_wrong_type
            out.n_current += s.n_current
        return out

    # -- inspection and storage ------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        """Names of the sketched columns (skipped ones are not).

        Example:
            >>> import pandas as pd
            >>> DriftSketch.from_reference(pd.DataFrame({"x": [1.0, 2.0]})).columns
            ['x']
        """
        return list(self._columns)

    def edges(self, name: str) -> list[float] | None:
        """The interior bin edges of numeric column ``name`` (None for a level column).

        Example:
            >>> import pandas as pd
            >>> DriftSketch.from_reference(pd.DataFrame({"c": ["a", "a"]})).edges("c") is None
            True
        """
        return self._column(name).edges

    def counts(self, name: str) -> tuple[list[int], list[int]]:
        """The reference and current counts of column ``name``, bin by bin.

        Example:
            >>> import pandas as pd
            >>> DriftSketch.from_reference(pd.DataFrame({"c": ["a", "a"]})).counts("c")
            ([2, 0], [0, 0])
        """
        col = self._column(name)
        return col.reference.tolist(), col.current.tolist()

    def _column(self, name: str) -> _Column:
        if name not in self._columns:
            why = self._skipped.get(name, "not in the reference")
            raise InvalidInput(f"column {name!r} is not sketched ({why})", field="name")
        return self._columns[name]

    def _fingerprint(self) -> str:
        ref = {
            "columns": {n: c.reference_dict() for n, c in self._columns.items()},
            "skipped": self._skipped,
            "n_reference": self.n_reference,
        }
        return hashlib.sha256(orjson.dumps(ref, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def to_json(self) -> str:
        """The sketch (reference bins and current counts) as JSON text.

        Example:
            >>> import pandas as pd
            >>> s = DriftSketch.from_reference(pd.DataFrame({"x": [1.0, 2.0]}))
            >>> DriftSketch.from_json(s.to_json()).fingerprint == s.fingerprint
            True
        """
        cols = {}
        for name, c in self._columns.items():
            d = c.reference_dict()
            d.update(
                current=c.current.tolist(),
                cur_min=_finite(c.cur_min),
                cur_max=_finite(c.cur_max),
                cur_null=c.cur_null,
                cur_absent=c.cur_absent,
                cur_wrong=c.cur_wrong,
                cur_wrong_type=c.cur_wrong_type,
            )
            cols[name] = d
        return orjson.dumps(
            {
                "format": FORMAT,
                "fingerprint": self.fingerprint,
                "n_reference": self.n_reference,
                "n_current": self.n_current,
                "skipped": self._skipped,
                "columns": cols,
            }
        ).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> DriftSketch:
        """Load a sketch written by :meth:`to_json`; raises :class:`InvalidInput` if it is not one.

        Example:
            >>> import pandas as pd
            >>> s = DriftSketch.from_reference(pd.DataFrame({"c": ["a", "b", "a", "b"]}))
            >>> DriftSketch.from_json(s.to_json()).columns
            ['c']
        """
        try:
            data = orjson.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            cols = {}
            for name, d in data["columns"].items():
                cols[name] = _Column(
                    kind=d["kind"],
                    edges=d["edges"],
                    levels=d["levels"],
                    reference=np.asarray(d["reference"], dtype=np.int64),
                    current=np.asarray(d["current"], dtype=np.int64),
                    ref_std=float(d["ref_std"]),
                    ref_min=_bound(d["ref_min"], float("inf")),
                    ref_max=_bound(d["ref_max"], float("-inf")),
                    cur_min=_bound(d["cur_min"], float("inf")),
                    cur_max=_bound(d["cur_max"], float("-inf")),
                    ref_null=int(d["ref_null"]),
                    cur_null=int(d["cur_null"]),
                    cur_absent=int(d["cur_absent"]),
                    # absent from sketches stored before type changes were counted
                    cur_wrong=int(d.get("cur_wrong", 0)),
                    cur_wrong_type=d.get("cur_wrong_type"),
                )
            sketch = cls(
                cols, dict(data["skipped"]), int(data["n_reference"]), int(data["n_current"])
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(
                f"not a Loopline drift sketch: {exc}",
                field="sketch",
                hint="load text written by DriftSketch.to_json",
            ) from exc
        if sketch.fingerprint != data["fingerprint"]:
            raise InvalidInput(
                "the sketch's reference part does not match its fingerprint", field="sketch"
            )
        return sketch

    # -- drift -----------------------------------------------------------------------------

    def drift(self, *, drift_share: float = DRIFT_SHARE) -> DriftReport:
        """Drift of the current counts against the reference counts (see the module
        docstring for the tests).

        Example:
            >>> import pandas as pd
            >>> s = DriftSketch.from_reference(pd.DataFrame({"c": ["a", "b"] * 50}))
            >>> s.update(pd.DataFrame({"c": ["a", "b"] * 50})).drift().drifted
            False
        """
        out: dict[str, ColumnDrift] = {}
        missing = []
        for name, col in self._columns.items():
            n_ref, n_cur = int(col.reference.sum()), int(col.current.sum())
            if self.n_current == 0:
                out[name] = _no_verdict(name, col.kind, NO_ROWS, n_ref)
            elif col.cur_absent == self.n_current:
                missing.append(name)
            elif col.cur_wrong:
                rows = "" if col.cur_wrong == self.n_current else f" in {col.cur_wrong:,} rows"
                status = f"broken: current column is {col.cur_wrong_type}{rows}"
                status += ", reference is numeric"
                out[name] = _no_verdict(name, col.kind, status, n_ref)
            else:
                out[name] = with_missing(
                    name,
                    col.kind,
                    (n_ref + col.ref_null, self.n_current),
                    (n_ref, n_cur),
                    partial(_sketch_column_drift, name, col, n_ref, n_cur),
                )
        for name, status in self._skipped.items():
            out[name] = ColumnDrift(name, "", "none", None, None, None, False, status)
        return DriftReport(
            columns=out,
            n_reference=self.n_reference,
            n_current=self.n_current,
            drift_share=drift_share,
            missing_columns=missing,
            reference_label="reference sketch",
            current_label=f"window of {self.n_current:,} rows",
            method="sketch",
        )


def _no_verdict(name: str, kind: str, status: str, n_ref: int) -> ColumnDrift:
    return ColumnDrift(name, kind, "none", None, None, None, False, status, None, n_ref, 0)


def _numeric_column(col: Any, bins: int) -> _Column | str:
    r = st.finite_sorted(numeric_values(col))
    nulls = len(col) - int(r.size)
    if r.size == 0:
        return "skipped: all null in reference"
    levels = np.unique(r) if st.unique_count(r) <= FEW_VALUES else None
    if levels is not None:
        counts = np.searchsorted(r, levels, side="right") - np.searchsorted(r, levels, side="left")
        ref = np.concatenate([counts, [0]]).astype(np.int64)
        edges, kept = None, levels.tolist()
    else:
        idx = (np.arange(1, bins, dtype=np.int64) * r.size) // bins
        cut = np.unique(r[idx])
        pos = np.searchsorted(r, cut, side="left")
        ref = np.diff(np.concatenate([[0], pos, [r.size]])).astype(np.int64)
        edges, kept = cut.tolist(), None
    return _Column(
        NUMERIC,
        edges,
        kept,
        ref,
        np.zeros_like(ref),
        ref_std=st.population_std(r),
        ref_min=float(r[0]),
        ref_max=float(r[-1]),
        ref_null=nulls,
    )


def _level_column(col: Any, max_levels: int, found: dict[Any, int] | None) -> _Column | str:
    found = value_counts(col) if found is None else found
    total = sum(found.values())
    if total == 0:
        return "skipped: all null in reference"
    ranked = sorted(found.items(), key=lambda kv: -kv[1])
    kept = ranked[:max_levels]
    levels = [_level(v) for v, _ in kept]
    ref = np.array([c for _, c in kept] + [sum(c for _, c in ranked[max_levels:])], dtype=np.int64)
    return _Column(CATEGORICAL, None, levels, ref, np.zeros_like(ref), ref_null=len(col) - total)


def _sketch_column_drift(name: str, col: _Column, n_ref: int, n_cur: int) -> ColumnDrift:
    ref, cur = col.reference, col.current
    psi = st.psi(ref, cur)
    p_value: float | None = None
    if col.edges is None:
        seen = (ref > 0) | (cur > 0)
        keys = [*(col.levels or []), OTHER]
        seen_idx = np.flatnonzero(seen).tolist()
        r, c = ref[seen], cur[seen]
        if n_ref <= SMALL_REFERENCE:
            if len(seen_idx) > 2:
                test = "chisquare"
                statistic, p_value = st.chisquare(r, c)
            else:
                test = "z"
                # The first level in value order; "other" (the last bin) only if alone.
                levels = [i for i in seen_idx if i != len(keys) - 1] or seen_idx
                first = min(levels, key=lambda i: sort_key(keys[i]))
                statistic, p_value = st.z_proportions(
                    int(ref[first]), n_ref, int(cur[first]), n_cur
                )
        else:
            test, statistic = "jensenshannon", st.jensenshannon(r, c)
        status = CONSTANT if len(seen_idx) == 1 else OK
        hist = category_plot(keys, ref, cur)
    else:
        lo = min(col.ref_min, col.cur_min)
        hi = max(col.ref_max, col.cur_max)
        edges = np.concatenate([[lo], np.asarray(col.edges, dtype=np.float64), [hi]])
        if n_ref <= SMALL_REFERENCE:
            test = "ks_binned"
            statistic, p_value = st.binned_ks(ref, cur)
        else:
            test = "wasserstein_binned"
            statistic = st.binned_wasserstein(ref, cur, edges) / max(col.ref_std, st.MIN_STD)
        status = OK
        hist = Histogram((ref / n_ref).tolist(), (cur / n_cur).tolist(), edges=edges.tolist())
    spec = st.TESTS[test]
    drifted = spec.is_drift(statistic=statistic, p_value=p_value, threshold=spec.default_threshold)
    return ColumnDrift(
        name, col.kind, test, statistic, p_value, spec.default_threshold, drifted,
        status, psi, n_ref, n_cur, hist,
    )  # fmt: skip
