"""``loopline backup`` and ``loopline restore``: metadata and artifacts, to and from a folder.

Both act on the store named by ``LOOPLINE_URI`` and ``LOOPLINE_ARTIFACTS`` (the database
directly, never a server URL), and accept a local folder or an ``s3://`` URL (opened with
the ``LOOPLINE_S3_*`` settings).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict

import typer

from loopline.cli._common import console, err_console, esc, print_json
from loopline.config import Settings, load_settings
from loopline.core.sizes import fmt_bytes
from loopline.errors import ConfigError

_JSON = typer.Option(False, "--json", help="Print the result as JSON.")


def _settings() -> Settings:
    settings = load_settings()
    if settings.metadata_uri.startswith(("http://", "https://")):
        raise ConfigError(
            "backup and restore need direct database access but LOOPLINE_URI is a server URL",
            hint="run them where LOOPLINE_URI is the database (sqlite:/// or postgresql://)",
        )
    return settings


@contextmanager
def _progress_bar(verb: str, show: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A Rich bar per phase (tables: rows, artifacts: objects) on stderr."""
    if not show:
        yield lambda phase, done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]{verb}[/] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = int(bar.add_task(phase, total=total))
            bar.update(tasks[phase], completed=done, total=total)  # type: ignore[arg-type]

        yield update


def backup(
    dest: str = typer.Argument(..., help="A new folder, or s3://bucket/prefix."),
    json_out: bool = _JSON,
) -> None:
    """Back up the metadata database and every artifact to DEST.

    One consistent snapshot of every table (Parquet, one file per table) plus the
    artifacts by content address, each hash verified; manifest.json is written last, so
    an interrupted backup is never mistaken for a complete one.

    Example: loopline backup backups/2024-06-01
    """
    from loopline.core.artifacts import open_artifact_store
    from loopline.core.backup import backup as run_backup
    from loopline.core.db import create_engine_for

    settings = _settings()
    engine = create_engine_for(settings.metadata_uri)
    store = open_artifact_store(settings.artifacts_uri, settings.s3_storage_options())
    try:
        with _progress_bar("backup", not json_out) as progress:
            report = run_backup(
                engine,
                store,
                dest,
                storage_options=settings.s3_storage_options(),
                progress=progress,
            )
    finally:
        engine.dispose()
    if json_out:
        print_json(asdict(report))
        return
    console.print(
        f"[green]backup complete[/]: {report.dest} — {report.tables} tables, {report.rows} rows, "
        f"{report.artifact_count} artifacts ({fmt_bytes(report.artifact_bytes)}), "
        f"schema {report.alembic_revision}, {report.seconds:.1f} s"
    )


def restore(
    src: str = typer.Argument(..., help="A folder or s3://bucket/prefix written by backup."),
    force: bool = typer.Option(
        False, "--force", help="Replace every row of a target that already holds data."
    ),
    json_out: bool = _JSON,
) -> None:
    """Restore a backup into the (empty) store of LOOPLINE_URI and LOOPLINE_ARTIFACTS.

    Refuses an incomplete or corrupted backup (naming the file), a backup from a newer
    Loopline, and a target that holds data unless --force. Verifies the audit log after.

    Example: LOOPLINE_URI=postgresql://loopline@db/loopline loopline restore backups/2024-06-01
    """
    from loopline.core.artifacts import open_artifact_store
    from loopline.core.backup_restore import existing_data
    from loopline.core.backup_restore import restore as run_restore
    from loopline.core.db import create_engine_for

    settings = _settings()
    engine = create_engine_for(settings.metadata_uri)
    store = open_artifact_store(settings.artifacts_uri, settings.s3_storage_options())
    try:
        if force:
            held = existing_data(engine)
            if held:
                listing = ", ".join(f"{name} ({n})" for name, n in sorted(held.items()))
                err_console.print(
                    f"[yellow]--force: replacing every row of {engine.url.database}[/]: {listing}",
                    highlight=False,
                )
        with _progress_bar("restore", not json_out) as progress:
            report = run_restore(
                engine,
                store,
                src,
                force=force,
                storage_options=settings.s3_storage_options(),
                progress=progress,
            )
    finally:
        engine.dispose()
    if json_out:
        print_json(asdict(report))
    else:
        console.print(
            f"[green]restore complete[/]: {report.tables} tables, {report.rows} rows, "
            f"{report.artifact_count} artifacts ({fmt_bytes(report.artifact_bytes)}, "
            f"{report.artifacts_present} already present), schema {report.alembic_revision}"
            f" -> {report.schema_after}, {report.seconds:.1f} s"
        )
    if report.audit_problems:
        for problem in report.audit_problems:
            err_console.print(f"[red]audit: {esc(problem)}[/]")
        err_console.print("the audit log of the backup is broken (restored as it was)")
    elif not json_out:
        console.print(f"audit log intact: {report.audit_checked} events verified")
