"""Batch scoring: a model version over a Parquet or CSV file larger than memory.

The input is read in chunks of ``chunk_rows`` rows (a pyarrow dataset, so only one chunk
is in memory at a time), each chunk is validated against the model's signature and
predicted, and the rows are written out as they come - the input's columns, then
``prediction`` and ``model_version`` (and ``proba_<class>`` columns with
``probabilities=True``). The output format follows OUTPUT's suffix (``.parquet`` or
``.csv``). A chunk that breaks the signature stops the run with the row range and the
column named.

With ``executor="ray"`` the same work runs as Ray Data ``map_batches`` on the cluster at
``LOOPLINE_RAY_ADDRESS`` (a local Ray otherwise) and OUTPUT is a folder of Parquet or CSV
parts.

Example:
    >>> # report = score("models:/churn@champion", "big.parquet", "scored.parquet")
    >>> # report.rows, report.model_version
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline.data import formats
from loopline.errors import InvalidInput, NotFound

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


def _dataset(path: Path) -> Any:
    import pyarrow.dataset as ds

    if not path.exists():
        raise NotFound(f"input {path} does not exist", hint="check the path")
    import pyarrow as pa

    try:
        return ds.dataset(str(path), format=_format(path, "input"))
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


def _features(model: Any, frame: Any) -> Any:
    names = model.signature.names if model.signature is not None else None
    return frame[names] if names is not None and all(n in frame for n in names) else frame


def _predict_frame(model: Any, frame: Any, version: str, probabilities: bool) -> Any:
    _check_columns(list(frame.columns), model, probabilities)
    return frame.assign(**_outputs(model, _features(model, frame), version, probabilities))


def _score_batch(model: Any, batch: Any, first_row: int, version: str, probabilities: bool) -> Any:
    """The input batch's own columns, untouched, plus the scoring columns (an Arrow table).

    Only the model's features go through pandas: an id column with a null read through
    pandas became float64, so ids past 2**53 were rounded (two ids could become one).
    """
    import pandas as pd
    import pyarrow as pa

    names = model.signature.names if model.signature is not None else None
    columns = batch.schema.names
    if names is not None and all(n in columns for n in names):
        frame = batch.select(names).to_pandas()
    else:  # the signature check names what is missing
        frame = batch.to_pandas()
    # Numbered from the chunk's first row, so a bad value is named by its row in the file.
    frame.index = pd.RangeIndex(first_row, first_row + len(frame))
    table = pa.Table.from_batches([batch])
    for name, values in _outputs(model, frame, version, probabilities).items():
        table = table.append_column(name, pa.array(values))
    return table


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
            self._tmp.replace(self.path)
        else:
            self._tmp.unlink(missing_ok=True)


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
    from loopline.training import registry

    if chunk_rows < 1:
        raise InvalidInput("chunk_rows must be at least 1", field="chunk_rows")
    src, dst = Path(input_path), Path(output_path)
    model = registry.load(model_uri)
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


def _score_local(
    model: Any,
    src: Path,
    dst: Path,
    chunk_rows: int,
    version: str,
    probabilities: bool,
    progress: ProgressFn | None,
) -> tuple[int, int]:
    data = _dataset(src)
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
            try:
                scored = _score_batch(model, batch, rows, version, probabilities)
            except InvalidInput as exc:
                raise InvalidInput(
                    f"rows {rows}..{rows + batch.num_rows - 1}: {exc.message}",
                    field=exc.field,
                    hint=exc.hint,
                ) from exc
            writer.write(scored)
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


def _score_ray(
    model: Any, src: Path, dst: Path, chunk_rows: int, version: str, probabilities: bool
) -> tuple[int, int]:
    from loopline.training.executors import RayExecutor

    RayExecutor()  # connects to LOOPLINE_RAY_ADDRESS or starts a local Ray, once
    import ray

    kind = _format(src, "input")
    out_kind = _format(dst, "output")
    _check_columns(_dataset(src).schema.names, model, probabilities)
    source = ray.data.read_parquet(str(src)) if kind == "parquet" else ray.data.read_csv(str(src))
    model_ref = ray.put(model)

    def predict(frame: Any) -> Any:
        return _predict_frame(ray.get(model_ref), frame, version, probabilities)

    scored = source.map_batches(predict, batch_size=chunk_rows, batch_format="pandas")
    if out_kind == "parquet":
        scored.write_parquet(str(dst))
    else:
        scored.write_csv(str(dst))
    written = (
        ray.data.read_parquet(str(dst)) if out_kind == "parquet" else ray.data.read_csv(str(dst))
    )
    rows = int(written.count())
    return rows, max(1, -(-rows // chunk_rows))
