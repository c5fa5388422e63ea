"""Ground truth that arrives later: labels joined to logged predictions by request id.

``ll.monitor.log_labels(request_ids, labels)`` stores one small Parquet batch per call in
the artifact store (content-addressed) with an index row in ``label_batches``; labels may
come hours late and in any order.

**A label is for one row.** A request may carry several rows (a batch: one prediction
each). ``rows=[...]`` names the row each label is for, by its index in the request (the
``_row`` column of the log, from 0). A label that names no row (``rows`` not given, or
None in the list) is for the request as a whole: it is compared with the prediction of a
request of one row, and with none of a request of several rows - which of its
predictions would it be the truth of? - unless it was sent with ``rows="all"`` (the same
label for every row of the request). Such labels and labels for a row the request does not
have are stored, and counted where they can be seen: in :class:`LabelReport` when the
prediction is already logged, and in each window of live performance (``no_row_labels``,
``out_of_range_labels``) when it comes later.

**Duplicates: the last write wins.** A row labelled twice keeps the label that arrived
last (a later call; within one call, the later position in the list); a label for the
whole request and one for its row: the newer, the row's on a tie. A correction is the
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

Matching does not read the whole log (:mod:`.labelled_requests`): the request-id index of
each prediction file (:mod:`.rid_index`) rules out the files that cannot hold a labelled
id, and the ids are matched exactly against the ``_request_id`` column of the others only.
Label files are indexed the same way (``label_batches``: the model and the ids' range and
fingerprints): :func:`~.label_reads.read_labels` opens only the label files of the model
that can hold an asked id.

Example:
    >>> # report = ll.monitor.log_labels(["r-1", "r-2"], [1, 0])
    >>> # report.matched, report.unmatched
    >>> # ll.monitor.log_labels(["b-7", "b-7", "b-7"], [1, 0, 1], rows=[0, 1, 2])
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from loopline.core.context import Context, get_context
from loopline.core.db import reading
from loopline.errors import InvalidInput
from loopline.monitoring.labelled_requests import _logged_rows
from loopline.monitoring.limits import SHOWN_IDS, first_distinct
from loopline.monitoring.log_files import _parquet_bytes
from loopline.monitoring.log_reads import local_files
from loopline.monitoring.prediction_log import flush_default
from loopline.monitoring.rid_index import WantedIds
from loopline.monitoring.tables import label_batches, prediction_batches
from loopline.monitoring.wire import ALL_ROWS, check_names, checked_labels

#: How many unknown request ids a report lists (all are counted).
UNMATCHED_SHOWN = SHOWN_IDS


@dataclass(frozen=True)
class LabelReport:
    """What :func:`log_labels` stored: how many labels matched a logged prediction.

    ``received`` = ``matched`` + ``unmatched`` (request id not logged, yet) + ``no_row``
    (a label that names no row, for a request of several rows) + ``out_of_range`` (a row
    past the request's last: ``(request id, row, rows it has)``). The counts are of labels;
    ``unmatched_ids`` and ``no_row_ids`` name the first 20 distinct request ids of their
    kind, each once in the order first seen (a request labelled row by row is one id), and
    ``out_of_range_rows`` the first 20 labels. All are stored; :attr:`warnings` says what
    to do.
    """

    received: int
    matched: int
    unmatched: int
    unmatched_ids: list[str] = field(default_factory=list)
    duplicates: int = 0
    no_row: int = 0
    no_row_ids: list[str] = field(default_factory=list)
    out_of_range: int = 0
    out_of_range_rows: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """The labels that will not be compared with a prediction, in words.

        Example:
            >>> LabelReport(1, 0, 0, no_row=1, no_row_ids=["b-1"]).warnings[0][:32]
            '1 label names no row of a reques'
        """
        out = []
        if self.no_row:
            out.append(
                f"{_labels(self.no_row)} no row of a request of several rows "
                f"({_first(self.no_row_ids)}): stored, but compared with no prediction; "
                "pass rows= (the row of each label, from 0), or rows='all' when a label "
                "is the truth of every row of its request"
            )
        if self.out_of_range:
            shown = ", ".join(
                f"{rid!r} row {row}: its rows are 0-{n - 1}"
                for rid, row, n in self.out_of_range_rows[:3]
            )
            out.append(
                f"{_labels(self.out_of_range)} a row that its request does not have "
                f"({shown}{'; ...' if self.out_of_range > 3 else ''}): stored, but "
                "compared with no prediction; rows count from 0 within each request"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (the id lists hold at most 20 entries each).

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
            "no_row": self.no_row,
            "no_row_ids": self.no_row_ids[:UNMATCHED_SHOWN],
            "out_of_range": self.out_of_range,
            "out_of_range_rows": [
                {"request_id": rid, "row": row, "rows": n}
                for rid, row, n in self.out_of_range_rows[:UNMATCHED_SHOWN]
            ],
            "warnings": self.warnings,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelReport:
        """The report from :meth:`to_dict` (a server's answer); ``warnings`` is derived.

        Example:
            >>> LabelReport.from_dict(LabelReport(1, 1, 0).to_dict()).matched
            1
        """
        return cls(
            received=data["received"],
            matched=data["matched"],
            unmatched=data["unmatched"],
            unmatched_ids=list(data.get("unmatched_ids", [])),
            duplicates=data.get("duplicates", 0),
            no_row=data.get("no_row", 0),
            no_row_ids=list(data.get("no_row_ids", [])),
            out_of_range=data.get("out_of_range", 0),
            out_of_range_rows=[
                (o["request_id"], o["row"], o["rows"]) for o in data.get("out_of_range_rows", [])
            ],
        )


def _labels(n: int) -> str:
    return "1 label names" if n == 1 else f"{n} labels name"


def _first(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(r) for r in ids[:3])
    return f"first: {shown}" if len(ids) > 1 else shown


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


#: Types whose values :func:`_plain` hands back as they are.
_PLAIN = frozenset({int, float, str, bool, type(None)})


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds (labels often come from a frame)."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, str | bytes) else value


def _predicts_numbers(ctx: Context, model: str) -> bool | None:
    """Whether ``model``'s logged predictions are numbers (None: nothing logged yet)."""
    import pyarrow.parquet as pq

    t = prediction_batches
    newest = sa.select(t.c.digest).where(t.c.model == model).order_by(t.c.id.desc()).limit(1)
    with reading(ctx.engine) as conn:
        digest = conn.execute(newest).scalar()
    if digest is None:
        return None
    with local_files(ctx, [str(digest)]) as paths:
        schema = pq.read_schema(paths[0])
    if "_prediction" not in schema.names:
        return None
    kind = schema.field("_prediction").type
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    )


def _check_numeric(
    ctx: Context, model: str, values: list[Any], numbers: list[float | None]
) -> None:
    # Every label is a number or null (counted in C): nothing to look for one by one
    if numbers.count(None) == values.count(None) or not _predicts_numbers(ctx, model):
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
    rows: Sequence[int | None] | str | None = None,
    ctx: Context | None = None,
) -> LabelReport:
    """Store ground-truth ``labels`` for logged predictions, by request id; report how
    many matched a logged prediction (of ``model`` if given; then labels of a model that
    predicts numbers must be numbers). Over a server (``LOOPLINE_URI=http(s)://``) this
    goes through ``POST /api/v1/monitor/labels``.

    ``rows``: the row of its request each label is for (from 0; None: the request as a
    whole, which labels a request of one row only); ``"all"``: each label is for every row
    of its request; not given: every label is for its request as a whole.

    Example:
        >>> # ll.monitor.log_labels(["r-1", "r-2"], [1, 0]).unmatched
        >>> # 0
        >>> # ll.monitor.log_labels(["b-7"] * 3, [1, 0, 1], rows=[0, 1, 2]).matched
        >>> # 3
    """
    ids = _listed(request_ids, "request_ids", "pass a list with one request id per label")
    values = _listed(labels, "labels", "pass a list with one label per id")
    kinds = set(map(type, values))
    # Labels of Python's own types are kept as they are (told in one pass in C), rather
    # than a call of _plain each (~2 ms of 10,000 labels)
    if not kinds <= _PLAIN:
        values = [_plain(v) for v in values]
        kinds = set(map(type, values))
    wanted_rows = _rows(rows)
    if model is not None:
        check_names(model=model)
    # the server's rule, before anything is stored or sent: str() would store None as 'None'
    checked_labels(ids, values, wanted_rows)
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

        answer = remote.log_labels(ctx.settings, ids, values, model, wanted_rows)
        return LabelReport.from_dict(answer.model_dump())
    numbers = _numbers(values, kinds)
    # Predictions may still be queued: they are matched, and say what the model predicts
    flush_default()
    if model is not None:
        _check_numeric(ctx, model, values, numbers)
    every = wanted_rows == ALL_ROWS
    per_label = None if wanted_rows is None or isinstance(wanted_rows, str) else wanted_rows
    wanted = WantedIds(ids)  # sorted and fingerprinted once: to match, then to index the file
    report = _report(ids, per_label, every, _logged_rows(wanted, model, ctx))
    now = time.time()
    n = len(ids)
    texts = list(map(str, values)) if type(None) not in kinds else [_text(v) for v in values]
    table = pa.table(
        {
            "request_id": pa.array(ids, pa.string()),
            "label": pa.array(texts, pa.string()),
            "label_num": pa.array(numbers, pa.float64()),
            "arrived": pa.repeat(pa.scalar(now, pa.float64()), n),
            "seq": pa.array(np.arange(n, dtype=np.int64)),
            "model": pa.repeat(pa.scalar(model, pa.string()), n),
            "row": pa.nulls(n, pa.int64())
            if per_label is None
            else pa.array(per_label, pa.int64()),
            "all_rows": pa.repeat(pa.scalar(every, pa.bool_()), n),
        }
    )
    digest = ctx.artifacts.put_bytes(_parquet_bytes(table, distinct=["request_id"]))
    with ctx.engine.begin() as conn:
        conn.execute(
            sa.insert(label_batches).values(
                digest=digest,
                rows=n,
                matched=report.matched,
                created=now,
                model=model,
                **wanted.index_columns(),
            )
        )
    return report


def _numbers(values: list[Any], kinds: set[type]) -> list[float | None]:
    """Each label as the number it is (None: a text or null); in one pass in C when all are
    numbers (``float()`` of each, as :func:`_number` does one by one)."""
    if kinds <= {int, float, bool}:
        return list(map(float, values))
    return [_number(v) for v in values]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _listed(values: Any, field: str, hint: str) -> list[Any]:
    """``values`` (a list, a tuple, a NumPy array, a pandas Series, ...) as a list, or
    InvalidInput naming ``field``: a text is one value, not a list of its characters
    (``"r-1"`` was three request ids), and bytes, a mapping or a set are no list either
    (a set has no order to pair its items with the other list's).

    Example:
        >>> _listed(("r-1", "r-2"), "request_ids", "")
        ['r-1', 'r-2']
        >>> try:
        ...     _listed("r-1", "request_ids", "pass a list")
        ... except InvalidInput as exc:
        ...     print(exc.field, exc.message)
        request_ids request_ids is the text 'r-1', not a list
    """
    if isinstance(values, str):
        raise InvalidInput(
            f"{field} is the text {values!r:.80}, not a list",
            field=field,
            hint=f"{hint}: [{values!r:.80}] for one",
        )
    if isinstance(values, bytes | Mapping | Set | pd.DataFrame) or not isinstance(values, Iterable):
        raise InvalidInput(
            f"{field} is {type(values).__name__} {values!r:.80}, not a list",
            field=field,
            hint=hint,
        )
    return list(values)


def _rows(rows: Sequence[Any] | str | None) -> list[Any] | str | None:
    """``rows`` as a list (NumPy integers as ints, a pandas NA as None), or as given."""
    if rows is None or isinstance(rows, str):
        return rows
    listed = _listed(
        rows, "rows", "pass a list with one row (from 0) or None per request id, or 'all'"
    )
    return [None if v is None or v is pd.NA else _plain(v) for v in listed]


def _report(
    ids: list[str], rows: list[int | None] | None, every: bool, logged: dict[str, int]
) -> LabelReport:
    """Where each label goes (``rows`` None: every label is for its request as a whole):
    to a logged row, to no row (and why), or not known yet."""
    unmatched = [rid for rid in ids if rid not in logged]
    no_row: list[str] = []
    out_of_range: list[tuple[str, int, int]] = []
    if rows is None:  # the usual bulk call: kept to a pass or two over the ids
        if not every and max(logged.values(), default=1) > 1:  # in C, not a step each
            no_row = [rid for rid in ids if logged.get(rid, 1) > 1]
        duplicates = len(ids) - len(set(ids))
    else:
        for rid, row in zip(ids, rows, strict=True):
            n = logged.get(rid)
            if n is None:
                continue
            if row is None:
                if n > 1:
                    no_row.append(rid)
            elif row >= n:
                out_of_range.append((rid, row, n))
        duplicates = len(ids) - len(set(zip(ids, rows, strict=True)))
    return LabelReport(
        len(ids),
        len(ids) - len(unmatched) - len(no_row) - len(out_of_range),
        len(unmatched),
        first_distinct(unmatched, UNMATCHED_SHOWN),
        duplicates=duplicates,
        no_row=len(no_row),
        no_row_ids=first_distinct(no_row, UNMATCHED_SHOWN),
        out_of_range=len(out_of_range),
        out_of_range_rows=out_of_range[:UNMATCHED_SHOWN],
    )
