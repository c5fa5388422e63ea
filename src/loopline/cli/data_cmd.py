"""``loopline data``: versioned datasets and data contracts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

# Rich and the consoles load on first use (`_common.console`): `data add --json` needs
# neither.
from loopline.cli import _common
from loopline.cli._common import esc, print_json
from loopline.cli.data_add_summary import summary_lines
from loopline.core.calendar import utc_text
from loopline.core.columns import json_number
from loopline.core.sizes import fmt_bytes
from loopline.errors import ERROR_TABLE, ContractViolation, InvalidInput

app = typer.Typer(
    help="Versioned datasets and data contracts.\n\nExample: loopline data add churn churn.csv",
    no_args_is_help=True,
)

_JSON = typer.Option(False, "--json", help="Print the result as JSON.")


def _num(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _load_frame(ref: str) -> tuple[Any, str]:
    """A DataFrame from a CSV/Parquet path or a ``NAME@VERSION``; and a label for it."""
    from loopline.data import datasets, formats, tabular

    path = Path(ref)
    if path.is_file():
        if formats.is_csv(path):
            return tabular.read_csv(path).to_pandas(), str(path)
        if formats.is_parquet(path):
            return tabular.read_parquet(path).to_pandas(), str(path)
        raise InvalidInput(
            f"{path} is neither a CSV nor a Parquet file",
            field="data",
            hint="pass a .csv or .parquet file, or a dataset as NAME@VERSION",
        )
    if path.is_dir():
        raise InvalidInput(
            f"{path} is a folder; contracts apply to tables",
            field="data",
            hint="pass a CSV or Parquet file, or a table dataset as NAME@VERSION",
        )
    name, number = datasets.parse_ref(ref)
    version = datasets.get(name, number if number is not None else "latest")
    return version.to_pandas(), version.ref


@app.command("add")
def add_cmd(
    name: str = typer.Argument(..., help="Dataset name, e.g. churn."),
    path: Path = typer.Argument(..., help="A CSV, Parquet or other file, or a folder."),
    description: str = typer.Option(
        None, "--description", "-d", help="What this version of the data is."
    ),
    json_out: bool = _JSON,
) -> None:
    """Register PATH as the next version of dataset NAME (same content: same version).

    Each version keeps its own description. The newest version's content added again
    with another --description gets that description (audited); without one, nothing
    changes.

    Example: loopline data add images data/images/ --description "March photos"
    """
    from loopline.data import datasets

    show_bar = path.is_dir() and not json_out
    if show_bar:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        with Progress(
            TextColumn("[bold]adding[/] {task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=_common.err_console,
            transient=True,
        ) as bar:
            task = bar.add_task(name, total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            version = datasets.register(name, path, description=description, progress=progress)
    else:
        version = datasets.register(name, path, description=description)
    answer = version.to_dict(with_files=False)
    if json_out:
        print_json(answer)
        return
    for line in summary_lines(answer):
        _common.console.print(line, soft_wrap=True)


@app.command("ls")
def ls_cmd(json_out: bool = _JSON) -> None:
    """List every dataset with its newest version.

    Example: loopline data ls --json
    """
    from loopline.cli._tables import list_table
    from loopline.data import datasets

    rows = datasets.list_datasets()
    if json_out:
        print_json([r.__dict__ for r in rows])
        return
    # Fold, never cut: a name cut to 'custome…' in a narrow terminal was no name to use.
    table = list_table(
        "datasets",
        ("name", "latest", "versions", "kind", "rows", "size", "updated", "description"),
        words=("latest", "versions", "kind", "rows", "size", "updated"),
    )
    for r in rows:
        table.add_row(
            esc(r.name),
            str(r.latest_version or ""),
            str(r.versions),
            r.latest_kind or "",
            "" if r.latest_row_count is None else str(r.latest_row_count),
            fmt_bytes(r.latest_byte_size),
            utc_text(r.latest_created),
            esc(r.description or ""),
        )
    _common.console.print(table)


@app.command("show")
def show_cmd(
    ref: str = typer.Argument(..., help="NAME@VERSION, or NAME for the newest version."),
    all_files: bool = typer.Option(False, "--files", help="List every file, not only 20."),
    json_out: bool = _JSON,
) -> None:
    """Show one version: hash, schema, statistics and files.

    Example: loopline data show churn@3
    """
    from rich.table import Table

    from loopline.data import datasets

    name, number = datasets.parse_ref(ref)
    v = datasets.get(name, number if number is not None else "latest")
    if json_out:
        print_json(v.to_dict())
        return
    _common.console.print(f"[bold]{esc(v.ref)}[/] {v.kind}  hash {v.hash}")
    _common.console.print(
        f"created {utc_text(v.created)} by {esc(v.actor)}; "
        f"{len(v.files)} file(s), {fmt_bytes(v.byte_size)}"
        + (f", {v.row_count} rows" if v.row_count is not None else "")
    )
    if v.description:
        _common.console.print(esc(v.description))
    if v.schema:
        _common.console.print(_columns_table(v.schema, v.stats))
    shown = v.files if all_files else v.files[:20]
    files = Table(title="files")
    for col in ("path", "size", "digest"):
        files.add_column(col)
    for f in shown:
        files.add_row(esc(f.path), fmt_bytes(f.size), f.digest[:16])
    _common.console.print(files)
    if len(shown) < len(v.files):
        _common.console.print(f"... and {len(v.files) - len(shown)} more (--files lists them all)")


def _columns_table(schema: dict[str, str], stats: dict[str, dict[str, Any]]) -> Any:
    """The per-column statistics of ``data show``, as a Rich table.

    A ``±inf`` column (the statistic ``infinite``: how many ``inf`` and ``-inf`` values
    each float column holds; ``mean`` and ``std`` are those of the finite values) appears
    when some column holds infinities: most versions have none, and a column of zeros
    would only squeeze the others.
    """
    from rich.table import Table

    keys = ["count", "nulls"]
    if any(s.get("infinite") for s in stats.values()):
        keys.append("infinite")
    keys += ["min", "max", "mean", "std", "distinct"]
    table = Table(title="columns")
    for key in ("column", "type", *keys):
        table.add_column("±inf" if key == "infinite" else key)
    for col, typ in schema.items():
        s = stats.get(col, {})
        table.add_row(esc(col), esc(typ), *(esc(_num(s.get(k))) for k in keys))
    return table


@app.command("diff")
def diff_cmd(
    a: str = typer.Argument(..., help="The older version, NAME@VERSION."),
    b: str = typer.Argument(..., help="The newer version, NAME@VERSION."),
    json_out: bool = _JSON,
) -> None:
    """Show what changed between two versions: files, rows, columns, statistics.

    Example: loopline data diff churn@2 churn@3
    """
    from loopline.data import datasets

    d = datasets.diff(a, b)
    if json_out:
        print_json(d.to_dict())
        return
    if d.same_content:
        _common.console.print(f"{esc(d.a)} and {esc(d.b)} have the same content")
        return
    _common.console.print(f"[bold]{esc(d.a)} -> {esc(d.b)}[/]")
    if d.kind_before != d.kind_after:
        _common.console.print(
            f"kind: {d.kind_before} -> {d.kind_after} "
            "(rows and columns are compared between two tables only)"
        )
    for label, paths in (("+", d.files_added), ("-", d.files_removed), ("~", d.files_changed)):
        for p in paths[:50]:
            _common.console.print(f"  {label} {esc(p)}", highlight=False)
    if d.rows_before is not None:
        _common.console.print(
            f"rows: {d.rows_before} -> {d.rows_after} "
            f"(+{d.rows_added if d.rows_added is not None else '?'} "
            f"-{d.rows_removed if d.rows_removed is not None else '?'})"
        )
    for c in d.columns_added:
        _common.console.print(f"  column added: {esc(c)}")
    for c in d.columns_removed:
        _common.console.print(f"  column removed: {esc(c)}")
    for c, (before, after) in d.columns_type_changed.items():
        _common.console.print(f"  column {esc(c)}: type {esc(before)} -> {esc(after)}")
    for s in d.stat_changes:
        _common.console.print(
            f"  {esc(s.column)}: {s.statistic} {esc(_num(s.before))} -> {esc(_num(s.after))}"
        )


@app.command("checkout")
def checkout_cmd(
    ref: str = typer.Argument(..., help="NAME@VERSION, or NAME for the newest version."),
    dest: Path = typer.Argument(..., help="Folder to write the files into."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Make DEST exactly the version: overwrite files that differ from it and "
        "remove files it does not have.",
    ),
    json_out: bool = _JSON,
) -> None:
    """Write a version's files into a folder, each verified against its digest.

    A missing or empty folder gets every file; a folder that already holds exactly this
    version is left as it is. A folder holding files that differ from the version, or
    files it does not have, is refused (exit 2) naming them, so local edits are never
    overwritten and versions never mixed: use --force to replace and remove them.

    Example: loopline data checkout images@2 work/images
    """
    from loopline.data import datasets

    name, number = datasets.parse_ref(ref)
    version = number if number is not None else "latest"
    v = datasets.get(name, version)
    out = datasets.checkout(name, v.version, dest, force=force)
    if json_out:
        print_json({"ref": v.ref, "hash": v.hash, "dest": str(out), "files": len(v.files)})
    else:
        _common.console.print(
            f"{esc(v.ref)}: {len(v.files)} file(s), {fmt_bytes(v.byte_size)} -> {esc(out)}"
        )


@app.command("validate")
def validate_cmd(
    data: str = typer.Argument(..., help="A CSV/Parquet path, or a dataset as NAME@VERSION."),
    contract: Path = typer.Option(..., "--contract", "-c", help="The contract YAML file."),
    json_out: bool = _JSON,
) -> None:
    """Check data against a contract; list every violation (exit 3 if any).

    Example: loopline data validate batch.csv --contract churn.contract.yaml
    """
    from loopline.data.contract_validation import Contract

    spec = Contract.from_yaml(contract)
    frame, label = _load_frame(data)
    report = spec.validate(frame)
    if json_out:
        print_json({"data": label, **report.to_dict()})
        if not report.ok:
            raise typer.Exit(ERROR_TABLE[ContractViolation].exit_code)
        return
    if report.ok:
        _common.console.print(f"[green]{esc(label)} meets the contract[/] ({report.rows} rows)")
        return
    report.raise_for_violations()


@app.command("infer-contract")
def infer_contract_cmd(
    data: str = typer.Argument(..., help="A CSV/Parquet path, or a dataset as NAME@VERSION."),
    out: Path = typer.Argument(..., help="Where to write the contract YAML."),
    name: str = typer.Option(None, "--name", help="The contract's name (default: the data's)."),
    json_out: bool = _JSON,
) -> None:
    """Infer a contract from data and write it as YAML for a person to review.

    Example: loopline data infer-contract churn@3 churn.contract.yaml
    """
    from loopline.data.contract_inference import infer

    frame, label = _load_frame(data)
    default_name = label.split("@", 1)[0] if "@" in label else Path(label).stem
    contract = infer(frame, name=name or default_name)
    contract.to_yaml(out)
    if json_out:
        answer = contract.to_dict()
        for rule in answer["columns"].values():  # JSON has no infinity (YAML's .inf is one)
            for key in ("min", "max"):
                if key in rule:
                    rule[key] = json_number(rule[key])
        print_json({"data": label, "path": str(out), "contract": answer})
    else:
        _common.console.print(
            f"contract for {esc(label)}: {len(contract.columns)} column(s) -> {esc(out)}"
        )
