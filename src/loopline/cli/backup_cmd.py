"""``loopline backup`` and ``loopline restore``: metadata, artifacts and online feature rows,
to and from a folder.

Both act on the store named by ``LOOPLINE_URI``, ``LOOPLINE_ARTIFACTS`` and
``LOOPLINE_ONLINE_STORE`` (the database directly, never a server URL), and accept a local
folder or an ``s3://`` URL (opened with the ``LOOPLINE_S3_*`` settings).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING

import typer

from loopline.cli._common import console, err_console, esc, print_json
from loopline.config import Settings, load_settings
from loopline.core.sizes import fmt_bytes
from loopline.errors import ConfigError

if TYPE_CHECKING:  # pyarrow: imported when a command runs, not at start-up
    from loopline.core.backup_online import OnlinePart

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
def _online(settings: Settings) -> Iterator[OnlinePart]:
    """The online feature store of the settings, with the check against the registry."""
    from loopline.core.backup_online import OnlinePart
    from loopline.data.feature_registry import check_online
    from loopline.data.online import open_online_store

    store = open_online_store(
        settings.online_store,
        home=settings.home,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )
    try:
        yield OnlinePart(store, check_online)
    finally:
        store.close()


def _warn_rematerialize(views: Mapping[str, str], why: str) -> None:
    """Name the feature views whose online rows must be materialized again, and how."""
    if not views:
        return
    err_console.print(f"[yellow]warning[/]: {esc(why)}", highlight=False)
    for view, reason in sorted(views.items()):
        err_console.print(
            f"  {esc(view)}: {esc(reason)} - run `loopline features materialize {esc(view)}`",
            highlight=False,
        )


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
    """Back up the metadata database, every artifact and the online feature rows to DEST.

    One consistent snapshot of every table (Parquet, one file per table), the rows of
    the online feature store (LOOPLINE_ONLINE_STORE) checked against it, and the
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
        with _progress_bar("backup", not json_out) as progress, _online(settings) as online:
            report = run_backup(
                engine,
                store,
                dest,
                online=online,
                storage_options=settings.s3_storage_options(),
                progress=progress,
            )
    finally:
        engine.dispose()
    if json_out:
        print_json(asdict(report))
    else:
        console.print(
            f"[green]backup complete[/]: {report.dest} — {report.tables} tables, "
            f"{report.rows} rows, {report.artifact_count} artifacts "
            f"({fmt_bytes(report.artifact_bytes)}), {report.online_views} online feature "
            f"views ({report.online_rows} rows), schema {report.alembic_revision}, "
            f"{report.seconds:.1f} s"
        )
    _warn_rematerialize(
        report.online_mismatched,
        "online rows that do not match their feature view's last recorded materialization "
        "(backed up as they are; a restore will ask to materialize them again):",
    )


def restore(
    src: str = typer.Argument(..., help="A folder or s3://bucket/prefix written by backup."),
    force: bool = typer.Option(
        False, "--force", help="Replace every row of a target that already holds data."
    ),
    json_out: bool = _JSON,
) -> None:
    """Restore a backup into an empty store: its database, artifacts and online features.

    The store is the one LOOPLINE_URI, LOOPLINE_ARTIFACTS and LOOPLINE_ONLINE_STORE name.

    Refuses an incomplete or corrupted backup (naming the file), a backup from a newer
    Loopline, and a target that holds data unless --force. Verifies the audit log after,
    and names the feature views whose online rows must be materialized again (all the
    materialized ones for a backup made before online rows were backed up).

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
        with _progress_bar("restore", not json_out) as progress, _online(settings) as online:
            report = run_restore(
                engine,
                store,
                src,
                online=online,
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
            f"{report.artifacts_present} already present), {report.online_views} online "
            f"feature views ({report.online_rows} rows), schema {report.alembic_revision}"
            f" -> {report.schema_after}, {report.seconds:.1f} s"
        )
    _warn_rematerialize(
        report.online_rematerialize,
        "feature views whose online rows are not those of their last materialization"
        + (
            ":"
            if report.online_in_backup
            else " (the backup holds no online rows: it was made by an older Loopline or "
            "without an online store):"
        ),
    )
    if report.audit_problems:
        for problem in report.audit_problems:
            err_console.print(f"[red]audit: {esc(problem)}[/]")
        err_console.print("the audit log of the backup is broken (restored as it was)")
    elif not json_out:
        console.print(f"audit log intact: {report.audit_checked} events verified")
