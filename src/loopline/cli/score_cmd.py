"""``loopline score``: batch-score a Parquet or CSV file with a model version."""

from __future__ import annotations

from pathlib import Path

import typer

from loopline.cli._common import console, print_json


def score(
    model_uri: str = typer.Argument(..., help="models:/NAME/VERSION or models:/NAME@ALIAS."),
    input_path: Path = typer.Argument(..., help="Parquet or CSV file (or a Parquet folder)."),
    output_path: Path = typer.Argument(..., help="Where to write: .parquet or .csv."),
    chunk_rows: int = typer.Option(65_536, "--chunk-rows", min=1, help="Rows per chunk."),
    executor: str = typer.Option("local", "--executor", help="local, or ray for a cluster."),
    probabilities: bool = typer.Option(
        False, "--proba", help="Add a proba_<class> column per class."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Score a file larger than memory in chunks; the output carries the model version.

    Example: loopline score models:/churn@champion events.parquet scored.parquet --chunk-rows 100000
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from loopline.serving.batch import score as run_score

    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=console,
        disable=json_out,
        transient=False,
    ) as bar:
        task = bar.add_task("score", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        report = run_score(
            model_uri,
            input_path,
            output_path,
            chunk_rows=chunk_rows,
            executor=executor,
            probabilities=probabilities,
            progress=progress,
        )
    if json_out:
        print_json(report.to_dict())
    else:
        console.print(
            f"scored {report.rows:,} rows in {report.chunks} chunk(s) with "
            f"{model_uri} (version {report.model_version}) in {report.seconds:.1f} s"
            f" -> {report.output}",
            highlight=False,
        )
