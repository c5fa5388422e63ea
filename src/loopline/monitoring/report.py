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
    ``"constant"`` (the same single value on both sides: tested, no drift), or
    ``"skipped: ..."`` with the reason (all null, text, unsupported or mismatched type);
    a skipped column has no verdict and does not count in :attr:`DriftReport.share_drifted`.

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

    @property
    def tested(self) -> bool:
        """Whether the column was tested (not skipped).

        Example:
            >>> ColumnDrift("t", "text", "none", None, None, None, False, "skipped: text").tested
            False
        """
        return not self.status.startswith("skipped")

    def to_dict(self, *, detailed: bool = False) -> dict[str, Any]:
        """``{"test", "statistic", "p_value", "threshold", "drifted"}``; with ``detailed``
        also kind, status, psi, the row counts and the histogram.

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
    :meth:`trigger` fire (the model cannot be fed as trained).

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
        """Skipped columns and why.

        Example:
            >>> DriftReport({}, n_reference=0, n_current=0).skipped_columns
            {}
        """
        return {n: c.status for n, c in self.columns.items() if not c.tested}

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

    def trigger(self, share: float | None = None, columns: Iterable[str] | None = None) -> bool:
        """Whether the loop should act: by default, any drifted column among ``columns``
        (the model's features; None means every column); with ``share``, whether the drifted
        share of those columns is at least ``share``. A feature missing from the current
        data always triggers; one that is not in either table is an error.

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
        if any(n in self.missing_columns for n in names):
            return True
        tested = [n for n in names if self.columns[n].tested]
        drifted = [n for n in tested if self.columns[n].drifted]
        if share is None:
            return bool(drifted)
        return bool(tested) and len(drifted) / len(tested) >= share

    def to_dict(self, *, detailed: bool = False) -> dict[str, Any]:
        """The report as plain data: ``{"drifted", "share_drifted", "columns"}`` with the
        tested columns (the ``--json`` shape); with ``detailed``, every column (skipped ones
        too, with their status), the histograms, the column mismatch, row counts and labels.

        Example:
            >>> DriftReport({}, n_reference=0, n_current=0).to_dict()
            {'drifted': False, 'share_drifted': 0.0, 'columns': {}}
        """
        out: dict[str, Any] = {
            "drifted": self.drifted,
            "share_drifted": self.share_drifted,
            "columns": {
                n: c.to_dict(detailed=detailed)
                for n, c in self.columns.items()
                if detailed or c.tested
            },
        }
        if detailed:
            out.update(
                drift_share=self.drift_share,
                drifted_columns=self.drifted_columns,
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
            '{"drifted":false,"share_drifted":0.0,"columns":{}}'
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
