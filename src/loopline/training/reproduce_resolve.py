"""Stage 1 of a reproduction: what a model or run recorded, with clear errors for what is
missing.

:func:`resolve` follows a model URI or a run id to the run that logged the model, the
pipeline run it belongs to, its git commit and stored diff
(:mod:`loopline.training.reproduce_record`), the dataset versions its steps read (each
checked to still exist with the recorded digest), the package versions and the metrics,
and returns them as a :class:`Recorded`. It is separate from
:mod:`loopline.training.reproduce` because it only reads the store: it checks out, builds
and runs nothing.

Example:
    >>> # rec = resolve("models:/churn/3"); rec.commit, rec.datasets
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import blake3
import orjson

from loopline.core.context import Context, get_context
from loopline.errors import IntegrityError, InvalidInput, NotFound
from loopline.training import pipeline_store, reproduce_record
from loopline.training.pipeline_store import PipelineRecord

_RUN_ID_CHARS = set("0123456789abcdef")


@dataclass(frozen=True)
class Recorded:
    """Everything a run recorded that a reproduction needs (see :func:`resolve`)."""

    what: str
    model: str | None
    metrics_run_id: str
    step: str | None
    pipeline: PipelineRecord
    commit: str
    repo_root: str | None
    diff: bytes | None
    import_root: str | None
    workdir: str | None
    modules: list[str]
    datasets: dict[str, tuple[int, str]]
    packages: dict[str, str]
    python: str | None
    metrics: dict[str, float]


def _source_run(ref: str) -> tuple[str, str | None, Any]:
    """(description, model URI or None, run) for a model URI or a run id."""
    from loopline.tracking.api import get_run
    from loopline.training import registry_reads

    if isinstance(ref, str) and ref.startswith("models:/"):
        name, version = registry_reads.parse_uri(ref)
        mv = registry_reads.get(name, version)
        what = f"model {mv.name} version {mv.version}"
        if not mv.run_id:
            raise InvalidInput(
                f"{what} ({ref}) has no source run: it was registered from {mv.source!r}, "
                "so there is no pipeline, code or data version to reproduce",
                field="uri",
                hint="register a model logged inside a Loopline pipeline run",
            )
        try:
            return what, mv.uri, get_run(mv.run_id)
        except NotFound as exc:
            raise NotFound(
                f"the run {mv.run_id} that logged {what} no longer exists",
                hint="a deleted run cannot be reproduced; restore it first",
            ) from exc
    if not isinstance(ref, str) or len(ref) != 32 or not set(ref) <= _RUN_ID_CHARS:
        raise InvalidInput(
            f"{ref!r} is neither a model URI nor a run id",
            field="uri",
            hint="use models:/NAME/VERSION, models:/NAME@ALIAS or a 32-character run id",
        )
    return f"run {ref}", None, get_run(ref)


def _pipeline_of(ctx: Context, what: str, run: Any) -> tuple[PipelineRecord, str | None]:
    """The pipeline run that ``run`` is, or is a step of; and the step's name."""
    from loopline.training.runner import PIPELINE_TAG, STEP_TAG

    try:
        return pipeline_store.get(ctx.engine, run.id), None
    except NotFound:
        pass
    tags = run.tags
    owner = tags.get(f"{PIPELINE_TAG}.run") or run.parent_run_id
    if owner:
        try:
            return pipeline_store.get(ctx.engine, owner), tags.get(STEP_TAG) or None
        except NotFound:
            pass
    # Runs started by Loopline record their command line; others came through the MLflow API.
    logged_by = "hand (ll.start_run)" if "loopline.command" in tags else "the MLflow client"
    raise InvalidInput(
        f"{what} was logged by run {run.id}, which is not part of a Loopline pipeline run "
        f"(no pipeline record, no {PIPELINE_TAG}.run tag, no pipeline parent run; it looks "
        f"logged by {logged_by}): there is no recorded entry point, params or step lineage "
        "to rerun",
        field="uri",
        hint="train the model in an @ll.pipeline (loopline pipeline run MODULE:PIPELINE), "
        "log it from a step and register that version",
    )


def _artifact(run: Any, path: str) -> bytes | None:
    try:
        data: bytes = run.read_artifact(path)
    except NotFound:
        return None
    return data


def _datasets(runs: list[Any]) -> dict[str, tuple[int, str]]:
    """Dataset name -> (version, digest) read by any of ``runs``; the newest if several."""
    found: dict[str, tuple[int, str]] = {}
    for run in runs:
        for item in run.inputs:
            if item.kind != "dataset" or not item.version.isdigit():
                continue
            version = int(item.version)
            if item.name not in found or version > found[item.name][0]:
                found[item.name] = (version, item.digest)
    return found


def _check_datasets(pipeline_id: str, datasets: dict[str, tuple[int, str]]) -> None:
    from loopline.data import datasets as ds

    for name, (version, digest) in sorted(datasets.items()):
        present = {v.version: v for v in ds.versions(name)}
        if version not in present:
            listed = ", ".join(str(n) for n in sorted(present)) or "none"
            raise NotFound(
                f"dataset {name!r} version {version}, read by pipeline run {pipeline_id}, no "
                f"longer exists (versions now: {listed}); the run cannot be reproduced on "
                "its data",
                hint=f"the rerun needs exactly that content (digest {digest[:16]}...): restore "
                "the metadata store from a backup, or reproduce a model trained on data that "
                "still exists",
            )
        if present[version].hash != digest:
            raise IntegrityError(
                f"dataset {name}@{version} has digest {present[version].hash[:16]}..., but "
                f"pipeline run {pipeline_id} read digest {digest[:16]}...",
                hint="the dataset store was altered; restore it from a backup",
            )


def resolve(ref: str) -> Recorded:
    """What ``ref`` (model URI or run id) recorded; clear errors for what is missing.

    Example:
        >>> # resolve("models:/churn/3").commit, resolve("models:/churn/3").datasets
    """
    from loopline.tracking.api import get_run
    from loopline.tracking.environment import ENVIRONMENT_ARTIFACT

    ctx = get_context()
    what, model, run = _source_run(ref)
    record, step = _pipeline_of(ctx, what, run)
    prun = run if run.id == record.id else get_run(record.id)
    tags = prun.tags
    commit = tags.get(reproduce_record.COMMIT_TAG)
    if not commit:
        raise InvalidInput(
            f"pipeline run {record.id} (which made {what}) recorded no git commit: it was not "
            "started inside a git repository, so its code cannot be checked out",
            field="uri",
            hint="run pipelines from a git work tree to make them reproducible",
        )
    diff = None
    if tags.get(reproduce_record.DIRTY_TAG) == "true":
        diff = _artifact(prun, reproduce_record.DIFF_ARTIFACT)
        if diff is None:
            raise InvalidInput(
                f"pipeline run {record.id} ran with uncommitted changes (diff "
                f"{str(tags.get(reproduce_record.DIFF_HASH_TAG))[:16]}...) but the diff "
                f"itself was not stored ({reproduce_record.DIFF_ARTIFACT}), so that code "
                "cannot be restored",
                field="uri",
                hint="runs made by this Loopline version store the diff; commit before "
                "training, or rerun the pipeline and register the new model",
            )
        if blake3.blake3(diff).hexdigest() != tags.get(reproduce_record.DIFF_HASH_TAG):
            raise IntegrityError(
                f"the stored diff of pipeline run {record.id} does not match its recorded hash",
                hint="the artifact store was altered; restore it from a backup",
            )
    repo_root = tags.get(reproduce_record.ROOT_TAG)
    modules = tags.get(reproduce_record.MODULES_TAG)
    env_raw = _artifact(prun, ENVIRONMENT_ARTIFACT)
    env: dict[str, Any] = orjson.loads(env_raw) if env_raw else {}
    step_runs = []
    for s in record.steps.values():
        if s.run_id:
            try:
                step_runs.append(get_run(s.run_id))
            except NotFound:
                continue
    datasets = _datasets([prun, *step_runs, run])
    _check_datasets(record.id, datasets)
    metrics, metrics_run = run.metrics, run
    if not metrics and run.id != prun.id:
        # A step's run without metrics of its own: the pipeline's run holds them.
        metrics, metrics_run, step = prun.metrics, prun, None
    if not metrics:
        raise InvalidInput(
            f"{what}: run {run.id} recorded no metrics, so there is nothing to compare",
            field="uri",
            hint="log the model's metrics on the run that logs the model",
        )
    return Recorded(
        what=what,
        model=model,
        metrics_run_id=metrics_run.id,
        step=step if metrics_run.id != record.id else None,
        pipeline=record,
        commit=commit,
        repo_root=repo_root,
        diff=diff,
        import_root=reproduce_record.relative_to(
            tags.get(reproduce_record.IMPORT_ROOT_TAG), repo_root
        ),
        workdir=reproduce_record.relative_to(tags.get(reproduce_record.WORKDIR_TAG), repo_root),
        modules=modules.split(",") if modules else [],
        datasets=datasets,
        packages=dict(env.get("packages") or {}),
        python=env.get("python"),
        metrics=dict(metrics),
    )
