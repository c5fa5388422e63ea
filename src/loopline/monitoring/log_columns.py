"""The prediction log's rows, gathered column by column for one Parquet file.

The writer thread turns each batch of logged requests into one Arrow table per model and
hour. Gathering the values of each column in a list and building the table from those
lists costs a third of building a dict per row and handing the rows to
``pa.Table.from_pylist``; and ``from_pylist`` takes its columns from the first row's keys
alone, so a column that only later requests sent was dropped. :class:`LogColumns` keeps
every column any request sent, first seen first, with None in the rows of the requests
that did not send it.

A model server's request body stays as the server parsed it (:class:`RawInputs`) until it
is added here: rows sent as lists (``dataframe_split``, ``inputs``/``instances`` as lists)
go in a column at a time; rows sent as objects go in a value at a time.

Example:
    >>> cols = LogColumns()
    >>> cols.add(RawInputs("split", (["a"], [[1.0], [2.0]]), None), "r1", 0.0, "1", 2.0, [0, 1])
    >>> cols.add([{"a": 3.0, "b": "x"}], "r2", 0.0, "1", 2.0, [1])
    >>> t = cols.table()
    >>> t.column_names[:3], t.column("b").to_pylist()
    (['a', 'b', '_request_id'], [None, None, 'x'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

#: Columns every prediction file has besides the model's inputs.
META_COLUMNS = ("_request_id", "_ts", "_version", "_latency_ms", "_row", "_prediction")
_SCORE = "_score"


class RawInputs:
    """A request body as the model server parsed it, turned into rows on the writer thread.

    ``names`` and ``types`` are the signature's columns and their types (None without a
    signature): a value is logged as the column's type, as the model took it.
    """

    __slots__ = ("names", "rows", "shape", "types")

    def __init__(
        self,
        shape: str,
        rows: Any,
        names: list[str] | None,
        types: Sequence[str] | None = None,
    ) -> None:
        self.shape, self.rows, self.names, self.types = shape, rows, names, types

    def records(self) -> list[dict[str, Any]]:
        """One new dict per row: ``records`` as sent, ``lists`` by the signature's names,
        ``split`` by its ``columns``; with ``types``, an int in a ``float`` column is the
        float and an integral float in an ``int`` column the int.

        Example:
            >>> RawInputs("split", (["a"], [[1], [2]]), None).records()
            [{'a': 1}, {'a': 2}]
            >>> rows = [{"a": 2**63, "b": 3.0}]
            >>> RawInputs("records", rows, ["a", "b"], ["float", "int"]).records()
            [{'a': 9.223372036854776e+18, 'b': 3}]
        """
        if self.shape == "split":
            columns, data = self.rows
            recs = [dict(zip(columns, row, strict=False)) for row in data]
        elif self.shape == "lists":
            if not self.names:
                return [{"_input": list(row)} for row in self.rows]
            recs = [dict(zip(self.names, row, strict=False)) for row in self.rows]
        else:
            # Copies: the rows are the request's own, which a shadow version may still read.
            recs = [dict(row) for row in self.rows]
        if self.names and self.types:
            _as_column_types(recs, self.names, self.types)
        return recs

    def as_lists(self) -> tuple[list[str], list[Any]] | None:
        """``(names, rows)`` when the rows came as lists of values named by ``names`` (a
        ``split`` body's ``columns``, or the signature's for ``inputs`` as lists), each
        row as long as its names; else None (:meth:`records` then gives them). The values
        are as sent, not yet typed (see :func:`typed`).

        Example:
            >>> RawInputs("split", (["a", "b"], [[1, "x"], [2, "y"]]), None).as_lists()
            (['a', 'b'], [[1, 'x'], [2, 'y']])
            >>> RawInputs("split", (["a", "b"], [[1]]), None).as_lists() is None
            True
        """
        if self.shape == "split":
            names, data = self.rows
        elif self.shape == "lists" and self.names:
            names, data = self.names, self.rows
        else:
            return None
        width = len(names)
        for row in data:
            if len(row) != width:
                return None  # short or long: as dicts, paired the way records() pairs them
        return names, data


def typed(values: Sequence[Any], kind: str | None) -> Sequence[Any]:
    """``values`` of one column as its signature ``kind`` has them (see
    :func:`_as_column_types`); the same sequence when nothing changes.

    Example:
        >>> typed([1, 2.5], "float"), typed([2.0, 3.5], "int"), typed([1], None)
        ([1.0, 2.5], [2, 3.5], [1])
    """
    if kind == "float":
        if int in set(map(type, values)):
            return [float(v) if type(v) is int else v for v in values]
    elif kind == "int" and float in set(map(type, values)):
        return [int(v) if type(v) is float and v.is_integer() else v for v in values]
    return values


def _as_column_types(recs: list[dict[str, Any]], names: list[str], types: Sequence[str]) -> None:
    """Give each value its column's type, as the signature gave it to the model: an int in a
    ``float`` column became a float (2**63 has no int64, and a column of 1 and 1.5 would
    have two types), an integral float in an ``int`` column an int."""
    floats = [n for n, t in zip(names, types, strict=False) if t == "float"]
    ints = [n for n, t in zip(names, types, strict=False) if t == "int"]
    for rec in recs:
        for n in floats:
            v = rec.get(n)
            if type(v) is int:
                rec[n] = float(v)
        for n in ints:
            v = rec.get(n)
            if type(v) is float and v.is_integer():
                rec[n] = int(v)


def split_output(out: Any) -> tuple[Any, float | None]:
    """A model's output for one row as ``(prediction, score)``: a dict's ``prediction``
    (or ``label``) and its ``score`` (or ``probability``), anything else as it is.

    Example:
        >>> split_output({"label": 1, "probability": 0.9}), split_output(3)
        ((1, 0.9), (3, None))
    """
    if isinstance(out, dict):
        score = out.get("score", out.get("probability"))
        value = out.get("prediction", out.get("label", score))
        return value, None if score is None else float(score)
    return out, None


class _Run:
    """Consecutive requests whose rows came as lists under the same names and signature:
    their rows, turned into columns in one pass when the run ends."""

    __slots__ = ("data", "names", "sig_names", "sig_types", "start")

    def __init__(self, start: int, names: list[str], inputs: RawInputs, data: list[Any]) -> None:
        self.start, self.names, self.data = start, names, list(data)
        self.sig_names, self.sig_types = inputs.names, inputs.types

    def takes(self, names: list[str], inputs: RawInputs) -> bool:
        # The signature's lists are the same objects for every request of one server
        # (decoded once per model and version): `is` settles it but for the first time.
        return (
            names == self.names
            and (inputs.names is self.sig_names or inputs.names == self.sig_names)
            and (inputs.types is self.sig_types or inputs.types == self.sig_types)
        )


class LogColumns:
    """Logged requests gathered column by column; :meth:`table` makes the Arrow table.

    Example:
        >>> cols = LogColumns()
        >>> cols.add([{"x": 1.0}], "r", 0.0, "1", 2.0, [0])
        >>> cols.table().column("_prediction").to_pylist()
        [0]
    """

    __slots__ = ("inputs", "meta", "rows", "run", "scores")

    def __init__(self) -> None:
        # An input column may be shorter than `rows`: the rows it lacks are None, filled
        # in when the column grows or the table is made.
        self.inputs: dict[str, list[Any]] = {}
        self.meta: tuple[list[Any], ...] = tuple([] for _ in META_COLUMNS)
        self.scores: list[float | None] = []
        self.rows = 0
        self.run: _Run | None = None

    def add(
        self,
        inputs: RawInputs | list[Any] | Any,
        request_id: str,
        ts: float,
        version: str,
        latency_ms: float,
        outputs: Any,
    ) -> None:
        """One request: its input rows (:class:`RawInputs`, a list of rows, or one row; a
        row that is not a dict is the column ``_input``) and its outputs, one per row.

        Example:
            >>> cols = LogColumns()
            >>> cols.add(7, "r", 0.0, "1", 2.0, 1)
            >>> cols.table().column("_input").to_pylist()
            [7]
        """
        if isinstance(inputs, RawInputs):
            count = self._add_raw(inputs)
        else:
            self._end_run()
            given = inputs if isinstance(inputs, list) else [inputs]
            count = self._add_rows([r if isinstance(r, dict) else {"_input": r} for r in given])
        outs = outputs if isinstance(outputs, list) else [outputs]
        rids, tss, versions, latencies, indexes, predictions = self.meta
        for i in range(count):
            value, score = split_output(outs[i] if i < len(outs) else None)
            predictions.append(value)
            self.scores.append(score)
        if count == 1:  # most requests: appends cost less than lists of one (~1 us a request)
            rids.append(request_id)
            tss.append(ts)
            versions.append(version)
            latencies.append(latency_ms)
            indexes.append(0)
        else:
            rids.extend([request_id] * count)
            tss.extend([ts] * count)
            versions.extend([version] * count)
            latencies.extend([latency_ms] * count)
            indexes.extend(range(count))
        self.rows += count

    def _add_raw(self, inputs: RawInputs) -> int:
        """A server's request: its rows as lists join the run (or start one), else go in
        as dicts."""
        lists = inputs.as_lists()
        if lists is not None:
            names, data = lists
            run = self.run
            if run is not None and run.takes(names, inputs):
                run.data.extend(data)
                return len(data)
            if len(set(names)) == len(names):  # a name twice: as dicts, the last value wins
                self._end_run()
                self.run = _Run(self.rows, names, inputs, data)
                return len(data)
        self._end_run()
        return self._add_rows(inputs.records())

    def _column(self, name: str, length: int) -> list[Any]:
        """The column ``name``, made if new, filled with None up to ``length`` rows."""
        found = self.inputs.get(name)
        if found is None:
            found = self.inputs[name] = []
        if len(found) < length:
            found.extend([None] * (length - len(found)))
        return found

    def _end_run(self) -> None:
        run, self.run = self.run, None
        if run is None or not run.data:
            return
        kinds: dict[str, str] = {}
        if run.sig_names and run.sig_types:
            kinds = dict(zip(run.sig_names, run.sig_types, strict=False))
        values = zip(*run.data, strict=True)
        for name, column in zip(run.names, values, strict=True):
            self._column(name, run.start).extend(typed(column, kinds.get(name)))

    def _add_rows(self, rows: list[dict[str, Any]]) -> int:
        for i, row in enumerate(rows, self.rows):
            for name, value in row.items():
                self._column(name, i).append(value)
        return len(rows)

    def table(self) -> pa.Table:
        """The Arrow table: the input columns first seen first, then :data:`META_COLUMNS`
        and ``_score`` when an output had one. An input column named as one of those
        gives way to it (the request's own fields win). Raises what Arrow raises when a
        column's values have no one type.

        Example:
            >>> LogColumns().table().num_rows
            0
        """
        self._end_run()
        if not self.rows:
            return pa.table({})
        scored = any(score is not None for score in self.scores)
        reserved = {*META_COLUMNS, _SCORE} if scored else set(META_COLUMNS)
        columns = {n: self._column(n, self.rows) for n in self.inputs if n not in reserved}
        columns.update(zip(META_COLUMNS, self.meta, strict=True))
        if scored:
            columns[_SCORE] = self.scores
        return pa.Table.from_pydict(columns)
