"""Where a model version came from, and where it went: ``ll.registry.lineage``.

:func:`lineage` follows a version back through its run to the dataset versions and files
the run read, and forward to the deployment events in which it served. It is separate
from :mod:`loopline.training.registry` because it reads the catalog and the deployment
log, which nothing else in the registry SDK needs.

Example:
    >>> # lineage("churn", 3)["datasets"][0]["ref"]  -> 'churn-data@2'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopline.core.context import get_context
from loopline.errors import InvalidInput
from loopline.training.registry_reads import get

if TYPE_CHECKING:
    from loopline.tracking.entities import RunInput


def _dataset_entry(item: RunInput) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": item.kind,
        "name": item.name,
        "version": item.version,
        "digest": item.digest,
        "context": item.context,
        "found": False,
    }
    if item.kind != "dataset":
        return entry
    from loopline.data import catalog
    from loopline.data.dataset_refs import check_name, parse_version

    # Only the version the run read, with its own file list: reading every version of the
    # dataset (ll.datasets.versions) read the file lists of all of them.
    try:
        check_name(item.name)
        number = parse_version(item.version)
    except InvalidInput:
        return entry
    if number is None:  # "latest" is no version a run read
        return entry
    engine = get_context().engine
    row = catalog.find_version(engine, item.name, number)
    if row is None:
        return entry
    files = catalog.files_of(engine, [row.id])[row.id]
    entry.update(
        {
            "found": True,
            "digest_matches": row.hash == item.digest,
            "ref": f"{row.name}@{row.version}",
            "data_kind": row.kind,
            "row_count": row.row_count,
            "byte_size": row.byte_size,
            "file_count": len(files),
            "files": [{"path": f.path, "digest": f.digest, "size": f.size} for f in files[:100]],
        }
    )
    return entry


def lineage(name: str, version: int | str) -> dict[str, Any]:
    """Where a model version came from, and where it went.

    ``datasets`` (the dataset versions and files the run read) -> ``run`` (code version,
    params, metrics) -> ``model_version`` (with its logged model) -> ``deployments`` (the
    deployment events in which this version served or was rolled out, oldest first).

    Example:
        >>> # ll.registry.lineage("churn", 3)["datasets"][0]["ref"]  -> 'churn-data@2'
    """
    # Imported here: serving imports the registry, and lineage is off every hot path.
    from loopline.serving.deploy import deployments_of_version

    mv = get(name, version)
    run = mv.run
    logged = mv.logged_model
    run_info: dict[str, Any] | None = None
    if run is not None:
        data = run.to_dict()
        run_info = {
            key: data[key]
            for key in (
                "id",
                "name",
                "experiment",
                "experiment_id",
                "status",
                "user",
                "start_time",
                "end_time",
                "params",
                "metrics",
            )
        }
        run_info["code_version"] = mv.code_version
    return {
        "datasets": [_dataset_entry(i) for i in mv.datasets],
        "run": run_info,
        "run_id": mv.run_id,
        "model_version": mv.to_dict(with_lineage=False),
        "logged_model": None
        if logged is None
        else {
            "model_id": logged.model_id,
            "name": logged.name,
            "flavor": logged.flavor,
            "model_type": logged.model_type,
            "status": logged.status,
            "artifact_location": logged.artifact_location,
            "manifest_digest": logged.manifest_digest,
        },
        "deployments": [e.to_dict() for e in deployments_of_version(mv.name, mv.version)],
    }
