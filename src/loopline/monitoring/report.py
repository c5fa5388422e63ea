"""The result of a drift computation: one verdict per column, one for the dataset.

Example:
    >>> c = ColumnDrift("x", "numeric", "ks", 0.4, 0.001, 0.05, True)
    >>> r = DriftReport({"x": c}, n_reference=100, n_current=100)
    >>> r.drifted, r.drifted_columns, r.trigger()
    (True, ['x'], True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from loopline.errors import InvalidInput

#: Evidently's default: the dataset drifts when at least half of its columns drift.
DRIFT_SHARE = 0.5

OK, CONSTANT = "ok", "constant"
#: Status prefixes of a column without a verdict. ``skipped``: left out on purpose (text such
#: as IDs, an unsupported type, no values in the reference, no current rows); it triggers
#: nothing. ``broken``: the current data can no longer be compared with the reference (all
#: null where the reference has values, another type); it triggers, as a missing column does.
SKIPPED, BROKEN = "skipped", "broken"
#: Why a column missing from the current table triggers.
MISSING = "missing from the current data"
#: The status of every column when the current table has no rows: not enough data to judge.
NO_ROWS = "skipped: no current rows"


@dataclass(frozen=True)
class Histogram:
    """Reference and current shares on the same bins, for the report's plots.

    Numeric columns have ``edges`` (one more than the bins); categorical ones ``labels``.

    Example:
        >>> Histogram([0.5, 0.5], [0.2, 0.8], labels=["a", "b"]).bins
        2
    """

    reference: list[float]
    current: list[float]
    edges: list[float] | None = None
    labels: list[str] | None = None

    @property
    def bins(self) -> int:
        """Number of bins.

        Example:
            >>> Histogram([1.0], [1.0], edges=[0.0, 1.0]).bins
            1
        """
        return len(self.reference)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON.

        Example:
            >>> Histogram([1.0], [1.0], labels=["a"]).to_dict()["labels"]
            ['a']
        """
        return {
            "reference": self.reference,
            "current": self.current,
            "edges": self.edges,
            "labels": self.labels,
        }


@dataclass(frozen=True)
class ColumnDrift:
    """The drift verdict of one column.

    ``test`` names the test that decides (see :data:`loopline.monitoring.stattests.TESTS`);
    ``statistic`` is its statistic (KS D, chi-square, z, or the distance); ``p_value`` is
    None for distances; ``drifted`` compares the p-value (or, for a distance, the
    statistic) with ``threshold``. ``psi`` is the population stability index on the same
    bins, reported for every tested column whatever the test. ``status`` is ``"ok"``,
    ``"constant"`` (the same single value on both sides: tested, no drift), ``"skipped:
    ..."`` with the reason (text, unsupported type, all null in the reference, no current
    rows), or ``"broken: ..."`` with the reason (the current side is all null, or its type no
    longer matches the reference). A skipped or broken column has no verdict and does not
    count in :attr:`DriftReport.share_drifted`; a broken one makes :meth:`DriftReport.trigger`
    fire.

    ``missing_reference`` and ``missing_current`` are the shares of rows whose value is
    missing (null, NaN or infinite) on each side; ``missing_drifted`` says that the current
    share rose significantly above the reference's (see
    :func:`loopline.monitoring.drift.missing_rose`). It is not part of ``drifted``, which
    stays Evidently's verdict on the values, but it triggers.

    Example:
        >>> ColumnDrift("x", "numeric", "wasserstein", 0.02, None, 0.1, False).tested
        True
    """

    name: str
    kind: str
    test: str
    statistic: float | None
    p_value: float | None
    threshold: float | None
    drifted: bool
    status: str = OK
    psi: float | None = None
    n_reference: int = 0
    n_current: int = 0
    histogram: Histogram | None = field(default=None, repr=False)
    missing_reference: float | None = None
    missing_current: float | None = None
    missing_drifted: bool = False

    @property
    def tested(self) -> bool:
        """Whether the column was tested (neither skipped nor broken).

        Example:
            >>> ColumnDrift("t", "text", "none", None, None, None, False, "skipped: text").tested
            False
        """
        return not self.status.startswith((SKIPPED, BROKEN))

    @property
    def broken(self) -> bool:
        """Whether the current data broke the column (all null, another type): it triggers.

        Example:
            >>> s = "broken: all null in current"
            >>> ColumnDrift("x", "numeric", "none", None, None, None, False, s).broken
            True
        """
        return self.status.startswith(BROKEN)

    @property
    def reason(self) -> str | None:
        """Why the column makes :meth:`DriftReport.trigger` fire, or None if it does not.

        Example:
            >>> ColumnDrift("x", "numeric", "ks", 0.5, 0.01, 0.05, True).reason
            'ks p=0.01 <= 0.05'
        """
        if self.broken:
            return self.status.removeprefix(BROKEN + ": ")
        if not self.tested:
            return None
        why = []
        if self.drifted:
            why.append(_verdict_text(self))
        if self.missing_drifted:
            why.append(
                f"missing values rose from {_pct(self.missing_reference)} "
                f"to {_pct(self.missing_current)}"
            )
        return "; ".join(why) or None

    def to_dict(self, *, detailed: bool = False) -> dict[str, Any]:
        """``{"test", "statistic", "p_value", "threshold", "drifted", "missing_reference",
        "missing_current", "missing_drifted"}``; with ``detailed`` also kind, status, psi, the
        row counts and the histogram.

        Non-finite numbers (a chi-square with a level never seen in the reference is
        infinite) are written as ``null``.

        Example:
            >>> ColumnDrift("x", "numeric", "ks", 0.5, 0.01, 0.05, True).to_dict()["p_value"]
            0.01
        """
        out: dict[str, Any] = {
            "test": self.test,
            "statistic": _finite(self.statistic),
            "p_value": _finite(self.p_value),
            "threshold": self.threshold,
            "drifted": self.drifted,
            "missing_reference": self.missing_reference,
            "missing_current": self.missing_current,
            "missing_drifted": self.missing_drifted,
        }
        if detailed:
            out.update(
                kind=self.kind,
                status=self.status,
                psi=_finite(self.psi),
                n_reference=self.n_reference,
                n_current=self.n_current,
                histogram=self.histogram.to_dict() if self.histogram else None,
            )
        return out


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{x:.1%}"


def _verdict_text(c: ColumnDrift) -> str:
    """The deciding number against its threshold, e.g. ``wasserstein 0.31 >= 0.1``."""
    from loopline.monitoring.stattests import TESTS

    if c.p_value is not None:
        op = "<=" if TESTS[c.test].inclusive else "<"
        return f"{c.test} p={c.p_value:.3g} {op} {c.threshold:g}"
    stat = "inf" if c.statistic is None or math.isinf(c.statistic) else f"{c.statistic:.3g}"
    return f"{c.test} {stat} >= {c.threshold:g}"


@dataclass(frozen=True)
class DriftReport:
    """Drift of a current table against a reference, column by column.

    **The verdicts.** :attr:`drifted` is Evidently's dataset verdict, kept for
    comparability: the share of drifted columns among the tested ones is at least
    ``drift_share`` (0.5). That default is a poor trigger for a retraining loop: a table of
    25 columns of which 5 drift (20 %) is "not drifted", even when those 5 are the model's
    most important features; and a table whose drifting columns are IDs or timestamps the
    model never sees can be "drifted". So Loopline also reports :attr:`drifted_columns` and
    :meth:`trigger`, which the loop uses: by default it fires when **any drifted column is
    one of the model's features** (``columns=``), because one drifted feature is enough to
    move the model's inputs away from what it was trained on, and columns the model does not
    read should not trigger anything. ``trigger(share=...)`` gives back a share rule,
    computed over the features only.

    **Columns that do not match.** A column of the reference missing from the current table
    is listed in :attr:`missing_columns`, one only in the current table in
    :attr:`extra_columns`; the verdicts cover the shared columns. A missing feature makes
    :meth:`trigger` fire (the model cannot be fed as trained), and so does a *broken* one
    (:attr:`broken_columns`): all null in the current data while the reference has values,
    or of a type that no longer matches the reference's. Columns skipped on purpose
    (:attr:`skipped_columns`: text such as IDs, unsupported types, a reference without
    values) trigger nothing, and neither does an empty current table: no rows is not
    enough data to judge, as a loop window below ``min_rows``.

    **Missing values.** Each tested column reports the share of missing values on both
    sides; a significant rise (:func:`loopline.monitoring.drift.missing_rose`) makes
    :meth:`trigger` fire, as drift of the values does, without changing Evidently's
    :attr:`drifted`. :meth:`trigger_reasons` says why each triggering column triggers.

    Example:
        >>> r = DriftReport({}, n_reference=0, n_current=0, missing_columns=["age"])
        >>> r.trigger(columns=["age"])
        True
    """

    columns: dict[str, ColumnDrift]
    n_reference: int
    n_current: int
    drift_share: float = DRIFT_SHARE
    missing_columns: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    reference_label: str = "reference"
    current_label: str = "current"
    method: str = "rows"

    @property
    def tested_columns(self) -> list[str]:
        """Names of the columns that were tested (not skipped).

        Example:
            >>> DriftReport({}, n_reference=0, n_current=0).tested_columns
            []
        """
        return [n for n, c in self.columns.items() if c.tested]

    @property
    def skipped_columns(self) -> dict[str, str]:
        """Columns skipped on purpose and why (they trigger nothing).

        Example:
            >>> DriftReport({}, n_reference=0, n_current=0).skipped_columns
            {}
        """
        return {n: c.status for n, c in self.columns.items() if not c.tested and not c.broken}

    @property
    def broken_columns(self) -> dict[str, str]:
        """Columns the current data broke (all null, another type) and why: they trigger.

        Example:
            >>> c = ColumnDrift("x", "numeric", "none", None, None, None, False,
            ...                 "broken: all null in current")
            >>> DriftReport({"x": c}, n_reference=9, n_current=9).broken_columns
            {'x': 'broken: all null in current'}
        """
        return {n: c.status for n, c in self.columns.items() if c.broken}

    @property
    def not_tested(self) -> dict[str, str]:
        """Every column of the check without a verdict and why: skipped, broken or missing.

        Example:
            >>> DriftReport({}, n_reference=0, n_current=0, missing_columns=["a"]).not_tested
            {'a': 'missing from the current data'}
        """
        out = {n: c.status for n, c in self.columns.items() if not c.tested}
        out.update(dict.fromkeys(self.missing_columns, MISSING))
        return out

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the drifted columns, in table order.

        Example:
            >>> DriftReport({}, n_reference=0, n_current=0).drifted_columns
            []
        """
        return [n for n, c in self.columns.items() if c.tested and c.drifted]

    @property
    def share_drifted(self) -> float:
        """Drifted columns over tested columns (0.0 when nothing was tested).

        Example:
            >>> DriftReport({}, n_reference=0, n_current=0).share_drifted
            0.0
        """
        tested = len(self.tested_columns)
        return len(self.drifted_columns) / tested if tested else 0.0

    @property
    def drifted(self) -> bool:
        """Evidently's dataset verdict: ``share_drifted >= drift_share``.

        Example:
            >>> DriftReport({}, n_reference=0, n_current=0).drifted
            False
        """
        return bool(self.tested_columns) and self.share_drifted >= self.drift_share

    def _names(self, columns: Iterable[str] | None) -> list[str]:
        if isinstance(columns, str):
            columns = [columns]
        names = list(self.columns) if columns is None else list(columns)
        unknown = [n for n in names if n not in self.columns and n not in self.missing_columns]
        if unknown:
            raise InvalidInput(
                f"columns not in the reference data: {', '.join(unknown)}",
                field="columns",
                hint="pass the model's feature names as they appear in the reference table",
            )
        return names

    def trigger_reasons(self, columns: Iterable[str] | None = None) -> dict[str, str]:
        """The columns among ``columns`` (None: every column both tables have) that make
        :meth:`trigger` fire, each with why: missing, broken, its values drifted, or its
        share of missing values rose.

        Example:
            >>> c = ColumnDrift("x", "numeric", "wasserstein", 0.31, None, 0.1, True)
            >>> r = DriftReport({"x": c}, n_reference=9, n_current=9, missing_columns=["y"])
            >>> r.trigger_reasons(["x", "y"])
            {'x': 'wasserstein 0.31 >= 0.1', 'y': 'missing from the current data'}
        """
        out: dict[str, str] = {}
        for n in self._names(columns):
            why = MISSING if n in self.missing_columns else self.columns[n].reason
            if why is not None:
                out[n] = why
        return out

    def trigger(self, share: float | None = None, columns: Iterable[str] | None = None) -> bool:
        """Whether the loop should act: by default, any column among ``columns`` (the
        model's features; None means every column both tables have) that drifted or whose
        share of missing values rose; with ``share``, whether the share of those columns
        among the tested ones is at least ``share``. A feature missing from the current data,
        or broken in it (all null, another type), always triggers; one that is not in either
        table is an error.

        Example:
            >>> c = ColumnDrift("x", "numeric", "ks", 0.5, 0.01, 0.05, True)
            >>> r = DriftReport({"x": c}, n_reference=10, n_current=10)
            >>> r.trigger(columns=["x"]), r.trigger(share=0.5)
            (True, True)
        """
        if share is not None and not (isinstance(share, int | float) and 0 < share <= 1):
            raise InvalidInput(
                "The 'share' parameter of trigger must be a number in (0, 1]. "
                f"Got {share!r} instead.",
                field="share",
            )
        names = self._names(columns)
        reasons = self.trigger_reasons(names)
        if share is None:
            return bool(reasons)
        if any(n in self.missing_columns or self.columns[n].broken for n in reasons):
            return True
        tested = [n for n in names if n in self.columns and self.columns[n].tested]
        return bool(tested) and sum(n in reasons for n in tested) / len(tested) >= share

    def to_dict(self, *, detailed: bool = False) -> dict[str, Any]:
        """The report as plain data (the ``--json`` shape): ``{"drifted", "share_drifted",
        "columns", "not_tested"}`` with the tested columns in ``columns`` and every column
        without a verdict in ``not_tested``, with why (skipped, broken or missing); with
        ``detailed``, every column in ``columns`` (with its status), the histograms, the
        column mismatch, row counts and labels.

        Example:
            >>> DriftReport({}, n_reference=0, n_current=0).to_dict()
            {'drifted': False, 'share_drifted': 0.0, 'columns': {}, 'not_tested': {}}
        """
        out: dict[str, Any] = {
            "drifted": self.drifted,
            "share_drifted": self.share_drifted,
            "columns": {
                n: c.to_dict(detailed=detailed)
                for n, c in self.columns.items()
                if detailed or c.tested
            },
            "not_tested": self.not_tested,
        }
        if detailed:
            out.update(
                drift_share=self.drift_share,
                drifted_columns=self.drifted_columns,
                broken_columns=self.broken_columns,
                missing_columns=self.missing_columns,
                extra_columns=self.extra_columns,
                n_reference=self.n_reference,
                n_current=self.n_current,
                reference=self.reference_label,
                current=self.current_label,
                method=self.method,
            )
        return out

    def to_json(self, *, detailed: bool = False) -> str:
        """:meth:`to_dict` as JSON text.

        Example:
            >>> DriftReport({}, n_reference=0, n_current=0).to_json()
            '{"drifted":false,"share_drifted":0.0,"columns":{},"not_tested":{}}'
        """
        return orjson.dumps(self.to_dict(detailed=detailed)).decode()

    def to_html(self, path: str | Path) -> Path:
        """Write a self-contained HTML page (no scripts, nothing fetched): the verdicts, a
        table of columns and, per column, reference and current distributions as inline SVG.

        Example:
            >>> # report.to_html("drift.html")
        """
        from loopline.monitoring.html import render

        out = Path(path)
        page = render(self)
        try:
            out.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(
                f"cannot write the HTML report to {out}: {why_unwritable(out, exc)}",
                field="path",
                hint="name a file in a folder that exists and that you can write",
            ) from exc
        return out


def why_unwritable(out: Path, exc: OSError | None = None) -> str | None:
    """Why ``out`` cannot be written, in words (None when nothing is known against it before
    trying); ``exc`` is the error a write raised. The OS says 'no such file' for a missing
    folder and for a path under /proc alike.

    Example:
        >>> why_unwritable(Path("/no/such/folder/x.html"))
        'the folder /no/such/folder does not exist'
    """
    if out.is_dir():
        return "it is a folder"
    if out.parent.exists() and not out.parent.is_dir():
        return f"{out.parent} is a file, not a folder"
    if not out.parent.is_dir():
        return f"the folder {out.parent} does not exist"
    if exc is None:
        return None
    return exc.strerror or str(exc)
