"""Batch scoring: a model version over a Parquet or CSV file larger than memory.

The input is read in chunks of ``chunk_rows`` rows (a pyarrow dataset, so only one chunk
is in memory at a time), each chunk is validated against the model's signature and
predicted, and the rows are written out as they come - the input's columns, then
``prediction`` and ``model_version`` (and ``proba_<class>`` columns with
``probabilities=True``). The output format follows OUTPUT's suffix (``.parquet`` or
``.csv``). A chunk that breaks the signature stops the run with the row range and the
column named.

A CSV file is read with every column as text (:mod:`.csv_text`): the columns the model
does not take are copied as they are (an id ``007`` stays ``007``, ``NA`` stays ``NA``),
and the features are parsed as their signature types, so a value that does not parse is
named with its row and its text.

With ``executor="ray"`` the same work runs as Ray Data ``map_batches`` on the cluster at
``LOOPLINE_RAY_ADDRESS`` (a local Ray otherwise), one task per Parquet row group (one for a
CSV file), cut into the same chunks as locally so that an error names the same row of the
input; OUTPUT is a folder of Parquet or CSV parts.

Example:
    >>> # report = score("models:/churn@champion", "big.parquet", "scored.parquet")
    >>> # report.rows, report.model_version
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline.core.syncfs import fsync_path
from loopline.data import formats
from loopline.errors import InvalidInput, NotFound
from loopline.serving.csv_text import csv_format, parse_features

PREDICTION = "prediction"
VERSION = "model_version"
ProgressFn = Callable[[int, int | None], None]


@dataclass(frozen=True)
class ScoreReport:
    """What :func:`score` did."""

    model_uri: str
    model_version: str
    input: str
    output: str
    rows: int
    chunks: int
    seconds: float
    executor: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON.

        Example:
            >>> ScoreReport("m", "1", "i", "o", 3, 1, 0.1, "local").to_dict()["rows"]
            3
        """
        return dict(self.__dict__)


def _format(path: Path, role: str) -> str:
    if formats.is_parquet(path) or (role == "input" and path.is_dir()):
        return "parquet"
    if formats.is_csv(path):
        return "csv"
    raise InvalidInput(
        f"{role} {path} is neither Parquet nor CSV (by its name)",
        field=role,
        hint="use a .parquet or .csv file (an input may also be a folder of Parquet files)",
    )


def _reads_text(model: Any, kind: str) -> bool:
    """Whether a ``kind`` input is read as text and its features parsed by the signature
    (:mod:`.csv_text`): a CSV file, for a model with a signature."""
    return kind == "csv" and model.signature is not None


def _dataset(path: Path, as_text: bool = False) -> Any:
    """The input as a pyarrow dataset; ``as_text``: a CSV file's columns all as text."""
    import pyarrow.dataset as ds

    if not path.exists():
        raise NotFound(f"input {path} does not exist", hint="check the path")
    import pyarrow as pa

    try:
        kind = _format(path, "input")
        return ds.dataset(str(path), format=csv_format(path) if as_text else kind)
    except pa.ArrowInvalid as exc:
        raise InvalidInput(
            f"cannot read {path}: {exc}",
            field="input",
            hint="fix the file (every row needs every column)",
        ) from exc


def _output_names(model: Any, probabilities: bool) -> list[str]:
    """The columns scoring adds, in order (``proba_<class>`` only with ``probabilities``)."""
    names = [PREDICTION]
    if probabilities:
        classes = getattr(getattr(model, "native", None), "classes_", None)
        if classes is not None:
            names += [f"proba_{c}" for c in classes]
    return [*names, VERSION]


def _check_columns(columns: list[str], model: Any, probabilities: bool) -> None:
    """Refuse an input column that scoring would overwrite (its values would be lost)."""
    clash = [c for c in _output_names(model, probabilities) if c in columns]
    if clash:
        raise InvalidInput(
            f"the input has a column {clash[0]!r}, which scoring adds to the output; its "
            "values would be overwritten",
            field=clash[0],
            hint="rename or drop that column in the input (e.g. a previous model's "
            "prediction) and score again",
        )


def _outputs(model: Any, features: Any, version: str, probabilities: bool) -> dict[str, Any]:
    """The columns scoring adds for ``features``: prediction, probabilities, model version."""
    preds = model.predict(features)
    if getattr(preds, "ndim", 1) > 1 and preds.shape[1] == 1:
        preds = preds.ravel()
    out: dict[str, Any] = {PREDICTION: list(preds) if getattr(preds, "ndim", 1) > 1 else preds}
    if probabilities:
        proba = model.predict_proba(features)
        classes = getattr(getattr(model, "native", None), "classes_", range(proba.shape[1]))
        for j, cls in enumerate(classes):
            out[f"proba_{cls}"] = proba[:, j]
    out[VERSION] = [version] * len(features)
    return out


def _score_batch(
    model: Any, batch: Any, first_row: int, version: str, probabilities: bool, as_text: bool
) -> Any:
    """The input batch's own columns, untouched, plus the scoring columns (an Arrow table).

    Only the model's features go through pandas: an id column with a null read through
    pandas became float64, so ids past 2**53 were rounded (two ids could become one).
    ``as_text``: the batch is a CSV file's text, whose features are parsed by the
    signature (:mod:`.csv_text`) and whose other columns are copied as text.
    """
    import pandas as pd
    import pyarrow as pa

    table = pa.Table.from_batches([batch])
    if as_text:
        table, frame = parse_features(table, model.signature)
    else:
        # The model's columns, in its order (an id column or another order was given to the
        # model as it stood); every column for a model fitted on a bare array and logged
        # without an example, which records no names: the file's order is its order.
        names = model.select_inputs(batch.schema.names)
        frame = (batch if names is None else batch.select(names)).to_pandas()
    # Numbered from the chunk's first row, so a bad value is named by its row in the file.
    frame.index = pd.RangeIndex(first_row, first_row + len(frame))
    try:
        outputs = _outputs(model, frame, version, probabilities)
    except (ValueError, TypeError) as exc:
        # Without a signature nothing checked the values first: text where the model
        # reads numbers made it raise, and the user saw only "could not convert string to
        # float". Name the column and its row, as a signature's check would.
        text = None if model.signature is not None else _first_text(frame)
        if text is None:
            raise
        column, row, value = text
        raise InvalidInput(
            f"column {column!r} holds text where the model reads numbers ({value!r} in row "
            f"{row}); the model raised {type(exc).__name__}: {str(exc)[:200]}. It was "
            "logged without an input example, so no signature checked the types first",
            field=str(column),
            hint=f"write numbers in column {column!r}, or log the model with an input "
            "example (log_model(..., input_example=X.head())) to have each value checked",
        ) from exc
    for name, values in outputs.items():
        table = table.append_column(name, pa.array(values))
    return table


def _first_text(frame: Any) -> tuple[Any, int, str] | None:
    """The first column of ``frame`` holding a string that is not a number, its first such
    row (the frame's index) and that string; None when there is none. (A column read as
    text because of one word still holds numbers as strings, which models convert.)

    Example:
        >>> import pandas as pd
        >>> _first_text(pd.DataFrame({"a": [1.0, 2.0], "b": ["1.5", "x"]}, index=[7, 8]))
        ('b', 8, 'x')
    """
    for column in frame.columns:
        values = frame[column]
        if values.dtype.kind in "biufcmMb":  # numbers, times, booleans: no strings there
            continue
        texts = values.map(_is_word)
        if texts.any():
            row = texts.idxmax()
            return column, int(row), str(values[row])
    return None


def _is_word(value: Any) -> bool:
    """Whether ``value`` is a string no float conversion takes."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


class _Writer:
    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind = path, kind
        self._writer: Any = None
        self._tmp = path.with_name(f".{path.name}.part")

    def write(self, table: Any) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(str(self._tmp), table.schema, compression="zstd")
            else:
                import pyarrow.csv as pcsv

                self._writer = pcsv.CSVWriter(str(self._tmp), table.schema)
        self._writer.write_table(
            table.cast(self._writer.schema) if self.kind == "parquet" else table
        )

    def close(self, ok: bool) -> None:
        if self._writer is not None:
            self._writer.close()
        if ok and self._tmp.exists():
            # Durable before it takes the output's name: after a crash the output is the
            # whole scored file or absent, never a name on unwritten pages.
            fsync_path(self._tmp)
            self._tmp.replace(self.path)
            fsync_path(self.path.parent)
        else:
            self._tmp.unlink(missing_ok=True)


def _check_output(src: Path, dst: Path, executor: str) -> None:
    """Refuse an output that would overwrite the input or that cannot be written, before
    any row is scored: scoring a file into itself replaced the input with the scored copy,
    and an existing folder as a local output failed only at the end, leaving the hidden
    ``.part`` file behind."""
    same = dst.exists() and src.exists() and src.samefile(dst)
    inside = src.is_dir() and dst.resolve().is_relative_to(src.resolve())
    if same or inside:
        raise InvalidInput(
            f"output {dst} is the input {src}"
            + (" or inside its folder" if inside and not same else "")
            + ": scoring would overwrite the data it reads",
            field="output",
            hint="write the scored rows to another path, e.g. scored.parquet",
        )
    if executor == "local" and dst.is_dir():
        raise InvalidInput(
            f"output {dst} is a folder; scoring writes one {_format(dst, 'output')} file",
            field="output",
            hint=f"name a file, e.g. {dst / ('scored.' + _format(dst, 'output'))}",
        )


def _check_probabilities(model: Any, probabilities: bool) -> None:
    """``probabilities`` needs a model that gives them: refused before any row is read (it
    was an AttributeError at the first chunk)."""
    if probabilities and not hasattr(model, "predict_proba"):
        flavor = getattr(getattr(model, "manifest", None), "saved", None)
        kind = getattr(flavor, "model_class", "this model")
        raise InvalidInput(
            f"{kind} gives no class probabilities, so there are no proba_<class> columns to add",
            field="probabilities",
            hint="score without --proba (probabilities=False)",
        )


def score(
    model_uri: str,
    input_path: str | Path,
    output_path: str | Path,
    *,
    chunk_rows: int = 65_536,
    executor: str = "local",
    probabilities: bool = False,
    progress: ProgressFn | None = None,
) -> ScoreReport:
    """Score every row of ``input_path`` with ``model_uri``; write ``output_path``.

    ``progress(rows_done, rows_total)`` is called after each chunk (total None if unknown).

    Example:
        >>> # score("models:/churn/3", "events.csv", "scored.parquet", chunk_rows=100_000)
    """
    from loopline.training import registry_reads

    if chunk_rows < 1:
        raise InvalidInput("chunk_rows must be at least 1", field="chunk_rows")
    src, dst = Path(input_path), Path(output_path)
    _check_output(src, dst, executor)
    model = registry_reads.load(model_uri)
    _check_probabilities(model, probabilities)
    version = str(model.version if model.version is not None else model_uri)
    start = time.perf_counter()
    if executor == "ray":
        rows, chunks = _score_ray(model, src, dst, chunk_rows, version, probabilities)
    elif executor == "local":
        rows, chunks = _score_local(model, src, dst, chunk_rows, version, probabilities, progress)
    else:
        raise InvalidInput(
            f"unknown executor {executor!r}", field="executor", hint="use local or ray"
        )
    return ScoreReport(
        model_uri, version, str(src), str(dst), rows, chunks, time.perf_counter() - start, executor
    )


def _next_batch(batches: Any, src: Path, done: int) -> Any:
    """The next record batch (None at the end); a file that cannot be parsed is InvalidInput."""
    import pyarrow as pa

    try:
        return next(batches, None)
    except pa.ArrowInvalid as exc:
        raise InvalidInput(
            f"cannot read {src} after row {done}: {exc}",
            field="input",
            hint="fix the file (every row needs every column)",
        ) from exc


def _score_chunk(
    model: Any, batch: Any, start: int, version: str, probabilities: bool, as_text: bool
) -> Any:
    """One chunk scored (see :func:`_score_batch`); ``start`` is its first row's number in
    the input, so a bad value is named by its row in the input on every executor."""
    try:
        return _score_batch(model, batch, start, version, probabilities, as_text)
    except InvalidInput as exc:
        raise InvalidInput(
            f"rows {start}..{start + batch.num_rows - 1}: {exc.message}",
            field=exc.field,
            hint=exc.hint,
        ) from exc


def _score_local(
    model: Any,
    src: Path,
    dst: Path,
    chunk_rows: int,
    version: str,
    probabilities: bool,
    progress: ProgressFn | None,
) -> tuple[int, int]:
    as_text = _reads_text(model, _format(src, "input"))
    data = _dataset(src, as_text)
    _check_columns(data.schema.names, model, probabilities)
    total = data.count_rows() if _format(src, "input") == "parquet" else None
    writer = _Writer(dst, _format(dst, "output"))
    rows = chunks = 0
    ok = False
    try:
        batches = iter(data.to_batches(batch_size=chunk_rows))
        while (batch := _next_batch(batches, src, rows)) is not None:
            if batch.num_rows == 0:
                continue
            writer.write(_score_chunk(model, batch, rows, version, probabilities, as_text))
            rows += batch.num_rows
            chunks += 1
            if progress is not None:
                progress(rows, total)
        if chunks == 0:
            raise InvalidInput(f"input {src} has no rows", field="input")
        ok = True
    finally:
        writer.close(ok)
    return rows, chunks


def _ray_units(data: Any, src: Path, kind: str) -> list[dict[str, Any]]:
    """Ray's work: one unit per Parquet row group (one for a CSV file), with its first row's
    number in the input, counted in the order the local path reads (from metadata only).

    Ray Data's own readers number nothing, so a worker could only name a bad row by its
    place in its block; planning here keeps every error's row the row in the input.
    """
    if kind != "parquet":
        return [{"path": str(src.resolve()), "row_group": -1, "start": 0}]
    units: list[dict[str, Any]] = []
    start = 0
    for fragment in data.get_fragments():
        for group in fragment.row_groups:
            if group.num_rows:
                path = str(Path(fragment.path).resolve())
                units.append({"path": path, "row_group": group.id, "start": start})
                start += group.num_rows
    return units


def _unit_batches(
    unit: dict[str, Any], kind: str, schema: Any, chunk_rows: int, as_text: bool
) -> Any:
    """The unit's record batches of at most ``chunk_rows`` rows, as the local path cuts them."""
    import pyarrow.dataset as ds

    if kind != "parquet":
        return _dataset(Path(unit["path"]), as_text).to_batches(batch_size=chunk_rows)
    data = ds.dataset(unit["path"], format="parquet", schema=schema)
    fragment = next(iter(data.get_fragments())).subset(row_group_ids=[unit["row_group"]])
    return fragment.to_batches(schema=schema, batch_size=chunk_rows)


def _ray_failure(exc: BaseException) -> InvalidInput | None:
    """The InvalidInput a Ray task raised, out of Ray's wrappers (None if there is none)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, InvalidInput):
            return err
        todo += [err.__cause__, err.__context__, getattr(err, "cause", None)]
    return None


@contextmanager
def _ray_data_console_quiet() -> Iterator[None]:
    """Ray Data's progress and error logs kept off stderr (they stay in its session log).

    Ray Data prints a failed task's whole traceback to stderr before raising it, so a bad
    row gave pages of Ray internals above the one-line error the CLI prints.
    """
    import logging

    consoles = [
        h
        for h in logging.getLogger("ray.data").handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    levels = [h.level for h in consoles]
    for handler in consoles:
        handler.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for handler, level in zip(consoles, levels, strict=True):
            handler.setLevel(level)


def _score_ray(
    model: Any, src: Path, dst: Path, chunk_rows: int, version: str, probabilities: bool
) -> tuple[int, int]:
    from loopline.training.executors import RayExecutor

    RayExecutor()  # connects to LOOPLINE_RAY_ADDRESS or starts a local Ray, once
    import ray

    kind = _format(src, "input")
    out_kind = _format(dst, "output")
    as_text = _reads_text(model, kind)
    data = _dataset(src, as_text)
    _check_columns(data.schema.names, model, probabilities)
    schema = data.schema if kind == "parquet" else None
    units = _ray_units(data, src, kind)
    if not units:
        raise InvalidInput(f"input {src} has no rows", field="input")
    model_ref = ray.put(model)

    def predict(batch: Any) -> Any:
        scorer = ray.get(model_ref)
        for unit in batch.to_dict("records"):
            start = int(unit["start"])
            batches = iter(_unit_batches(unit, kind, schema, chunk_rows, as_text))
            while (chunk := _next_batch(batches, Path(unit["path"]), start)) is not None:
                if chunk.num_rows:
                    yield _score_chunk(scorer, chunk, start, version, probabilities, as_text)
                    start += chunk.num_rows

    scored = ray.data.from_items(units).map_batches(predict, batch_size=1, batch_format="pandas")
    try:
        with _ray_data_console_quiet():
            if out_kind == "parquet":
                scored.write_parquet(str(dst))
            else:
                scored.write_csv(str(dst))
    except Exception as exc:
        # Ray wraps a task's error in its own; a bad row is the same InvalidInput as locally.
        failure = _ray_failure(exc)
        if failure is None:
            raise
        raise InvalidInput(failure.message, field=failure.field, hint=failure.hint) from None
    written = (
        ray.data.read_parquet(str(dst)) if out_kind == "parquet" else ray.data.read_csv(str(dst))
    )
    rows = int(written.count())
    return rows, max(1, -(-rows // chunk_rows))
