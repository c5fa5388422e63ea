"""Reproduce a model: rerun the pipeline that made it on its recorded code, data and packages.

:func:`reproduce` takes ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or a run id and

1. *resolves* what was recorded (:func:`resolve`): the run that logged the model, the
   pipeline run it belongs to, its git commit and stored diff
   (:mod:`loopline.training.reproduce_record`), target and params, the dataset versions
   its steps read, the package versions and the metrics;
2. *checks out* the code: ``git archive`` of the commit into a temporary folder, then
   ``git apply`` of the stored diff (the user's repository is only read);
3. prepares the *environment* (:mod:`loopline.training.reproduce_env`): a fresh venv of
   the recorded versions, or this interpreter after comparing versions;
4. *reruns* the pipeline in a subprocess of that environment
   (:mod:`loopline.training.reproduce_worker`) with the checked-out code first on
   ``PYTHONPATH`` and every dataset pinned to the recorded version
   (``LOOPLINE_DATASET_PINS``, honoured by ``ll.datasets.get``), without the step cache,
   into the same store, as a new pipeline run tagged ``loopline.reproduction.of``; the
   original gets ``loopline.reproduction.latest`` (lineage both ways);
5. *compares* each recorded metric with the reproduced one: it matches when
   ``|reproduced - recorded| <= max(tolerance * |recorded|, abs_tolerance)``.

Example:
    >>> # r = reproduce("models:/churn/3", env="current"); r.match, r.metrics["auc"].rel_diff
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import blake3
import orjson

from loopline.core.context import Context, get_context
from loopline.errors import IntegrityError, InvalidInput, LooplineError, NotFound
from loopline.training import pipeline_store, reproduce_env, reproduce_record
from loopline.training.pipeline_store import PipelineRecord
from loopline.training.reproduce_env import PackageMismatch

__all__ = ["MetricComparison", "Recorded", "Reproduction", "checkout", "reproduce", "resolve"]

Env = Literal["fresh", "current"]
#: ``on_stage(stage, index, total)`` is called as each stage begins.
StageFn = Callable[[str, int, int], None]
STAGES = ("resolve", "checkout", "environment", "rerun", "compare")
_RUN_ID_CHARS = set("0123456789abcdef")
_GIT = ("git", "--no-optional-locks")


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


@dataclass(frozen=True)
class MetricComparison:
    """One metric: recorded and reproduced value, differences, within tolerance or not."""

    recorded: float
    reproduced: float | None
    abs_diff: float | None
    rel_diff: float | None
    match: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``.

        Example:
            >>> MetricComparison(1.0, 1.0, 0.0, 0.0, True).to_dict()["match"]
            True
        """
        return {
            "recorded": self.recorded,
            "reproduced": self.reproduced,
            "abs_diff": self.abs_diff,
            "rel_diff": self.rel_diff,
            "match": self.match,
        }


@dataclass
class Reproduction:
    """The outcome of :func:`reproduce`; ``match`` is true when every metric matched."""

    model: str | None
    original_run_id: str
    reproduced_run_id: str
    reproduced_status: str
    environment: Env
    package_mismatches: list[PackageMismatch]
    metrics: dict[str, MetricComparison]
    tolerance: float
    abs_tolerance: float
    workdir: str | None = None
    datasets: dict[str, int] = field(default_factory=dict)

    @property
    def match(self) -> bool:
        """Every recorded metric was reproduced within the tolerance."""
        return bool(self.metrics) and all(m.match for m in self.metrics.values())

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (see ``loopline reproduce --help``).

        Example:
            >>> # reproduce("models:/churn/3").to_dict()["match"]
        """
        return {
            "model": self.model,
            "original_run_id": self.original_run_id,
            "reproduced_run_id": self.reproduced_run_id,
            "reproduced_status": self.reproduced_status,
            "environment": self.environment,
            "package_mismatches": [m.to_dict() for m in self.package_mismatches],
            "datasets": self.datasets,
            "tolerance": self.tolerance,
            "abs_tolerance": self.abs_tolerance,
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "match": self.match,
        }


# -- 1. what was recorded ------------------------------------------------------------------


def _source_run(ref: str) -> tuple[str, str | None, Any]:
    """(description, model URI or None, run) for a model URI or a run id."""
    from loopline.tracking.api import get_run
    from loopline.training import registry

    if isinstance(ref, str) and ref.startswith("models:/"):
        name, version = registry.parse_uri(ref)
        mv = registry.get(name, version)
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


# -- 2. the code ---------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*_GIT, "-C", str(repo), *args], capture_output=True, timeout=120, check=False
    )


def checkout(rec: Recorded, dest: Path, repo: str | Path | None = None) -> Path:
    """Write the recorded code (commit + stored diff) into the new folder ``dest``.

    ``repo`` (default: the recorded repository root if it still exists, else the current
    folder) is only read: ``git archive`` of the commit, then ``git apply`` in ``dest``.

    Example:
        >>> # checkout(resolve("models:/churn/3"), Path("/tmp/code"))
    """
    where = Path(repo) if repo else None
    if where is None:
        root = Path(rec.repo_root) if rec.repo_root else None
        where = root if root is not None and root.is_dir() else Path.cwd()
    if _git(where, "rev-parse", "--git-dir").returncode != 0:
        raise InvalidInput(
            f"{where} is not a git repository",
            field="repo",
            hint="run from a clone of the repository, or pass --repo PATH",
        )
    if _git(where, "cat-file", "-e", f"{rec.commit}^{{commit}}").returncode != 0:
        raise NotFound(
            f"commit {rec.commit} (the code of pipeline run {rec.pipeline.id}) is not in the "
            f"repository at {where}",
            hint="fetch it (git fetch --all), or pass --repo with a clone that has it",
        )
    dest.mkdir(parents=True)
    with subprocess.Popen(
        [*_GIT, "-C", str(where), "archive", "--format=tar", rec.commit],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            tar.extractall(dest, filter="data")
        err = proc.stderr.read() if proc.stderr is not None else b""
        if proc.wait() != 0:
            raise LooplineError(f"git archive {rec.commit} failed: {err.decode().strip()}")
    if rec.diff:
        patch = dest.parent / "recorded.diff"
        patch.write_bytes(rec.diff)
        done = subprocess.run(
            ["git", "apply", "--binary", "--whitespace=nowarn", str(patch)],
            cwd=dest,
            capture_output=True,
            timeout=120,
            check=False,
            # Keep git from taking an enclosing repository for the one to patch.
            env={**os.environ, "GIT_CEILING_DIRECTORIES": str(dest.parent)},
        )
        if done.returncode != 0:
            raise IntegrityError(
                f"the stored diff of pipeline run {rec.pipeline.id} does not apply to commit "
                f"{rec.commit}: {done.stderr.decode().strip()[-500:]}",
                hint="the commit was rewritten since the run; reproduce from its original",
            )
    return dest


# -- 3. the environment --------------------------------------------------------------------


def _wanted(rec: Recorded) -> list[str]:
    """The recorded distributions that matter: those whose modules the run imported."""
    if not rec.modules:  # recorded before imports were: every package matters
        return sorted(rec.packages)
    owned = reproduce_env.distributions_of(rec.modules)
    return sorted(n for n in rec.packages if reproduce_env.normalize(n) in owned)


def _mismatches(rec: Recorded, installed: dict[str, str], python: str) -> list[PackageMismatch]:
    out = []
    if rec.python and rec.python != python:
        out.append(PackageMismatch("python", rec.python, python))
    return out + reproduce_env.compare_packages(rec.packages, installed, _wanted(rec))


def _fresh_env(rec: Recorded, code: Path, venv: Path, on_line: reproduce_env.LineFn | None) -> Path:
    local = {n for n in rec.packages if reproduce_env.local_source(n) is not None}
    local.add("loopline")
    wanted = [n for n in _wanted(rec) if n not in local]
    requirements = [f"{n}=={rec.packages[n]}" for n in wanted]
    requirements.append(reproduce_env.loopline_requirement(code, rec.packages))
    constraints = {n: v for n, v in rec.packages.items() if n not in local}
    return reproduce_env.build_venv(venv, requirements, constraints, on_line=on_line)


# -- 4. the rerun --------------------------------------------------------------------------


def _store_env(ctx: Context) -> dict[str, str]:
    """LOOPLINE_* settings that let another process open this store, absolute paths."""
    settings = ctx.settings
    uri = settings.metadata_uri
    if uri.startswith("sqlite://"):
        path = uri.removeprefix("sqlite:///")
        if not path or ":memory:" in uri:
            raise InvalidInput(
                "reproduce reruns the pipeline in another process, which cannot open an "
                "in-memory SQLite store",
                field="uri",
                hint="use a SQLite file or PostgreSQL (LOOPLINE_URI)",
            )
        uri = "sqlite:///" + str(Path(path).resolve())
    artifacts = settings.artifacts_uri
    if "://" not in artifacts:
        artifacts = str(Path(artifacts).expanduser().resolve())
    return {
        "LOOPLINE_URI": uri,
        "LOOPLINE_ARTIFACTS": artifacts,
        "LOOPLINE_HOME": str(settings.home.expanduser().resolve()),
    }


def _rerun(
    ctx: Context,
    rec: Recorded,
    python: Path | str,
    code: Path,
    out: Path,
    *,
    pin_data: bool,
    executor: str | None,
) -> dict[str, Any]:
    from loopline.data.dataset_refs import PINS_ENV

    import_dir = (code / rec.import_root).resolve() if rec.import_root else code
    workdir = (code / rec.workdir).resolve() if rec.workdir else import_dir
    if not workdir.is_dir():
        workdir = import_dir
    paths = [str(import_dir)]
    # Unrecorded import root (a run made before it was recorded): try the src layout too.
    # And when the project under test is Loopline itself, its checked-out code comes first.
    if (rec.import_root is None or (code / "src" / "loopline").is_dir()) and (
        code / "src"
    ).is_dir():
        paths.append(str(code / "src"))
    env = {
        **os.environ,
        **_store_env(ctx),
        "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]),
    }
    env.pop(PINS_ENV, None)
    if pin_data and rec.datasets:
        env[PINS_ENV] = orjson.dumps({n: v for n, (v, _) in rec.datasets.items()}).decode()
    cmd = [str(python), "-m", "loopline.training.reproduce_worker", rec.pipeline.id]
    cmd += ["--out", str(out)]
    if executor:
        cmd += ["--executor", executor]
    if rec.model:
        cmd += ["--model", rec.model]
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.exists():
        raise LooplineError(
            f"rerunning pipeline run {rec.pipeline.id} ({rec.pipeline.target}) failed:\n"
            + done.stderr.strip()[-2000:],
            hint="the checked-out code or environment could not run the pipeline (files "
            "that were untracked by git at training time are not part of the recorded code); "
            "keep the folder with --keep to look at the checkout",
        )
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    return result


# -- 5. the comparison ---------------------------------------------------------------------


def compare(
    recorded: float, reproduced: float | None, tolerance: float, abs_tolerance: float
) -> MetricComparison:
    """Compare one metric: matches when ``|diff| <= max(tolerance*|recorded|, abs_tolerance)``.

    Example:
        >>> compare(0.5, 0.5000001, 1e-6, 0.0).match, compare(0.5, 0.6, 1e-6, 0.0).match
        (True, False)
    """
    if reproduced is None:
        return MetricComparison(recorded, None, None, None, False)
    if math.isnan(recorded) or math.isnan(reproduced):
        both = math.isnan(recorded) and math.isnan(reproduced)
        return MetricComparison(recorded, reproduced, None, None, both)
    diff = abs(reproduced - recorded)
    # Relative to the recorded value; a recorded 0 makes any difference infinitely large.
    rel = diff / abs(recorded) if recorded != 0 else (0.0 if diff == 0 else math.inf)
    match = diff <= max(tolerance * abs(recorded), abs_tolerance)
    return MetricComparison(recorded, reproduced, diff, rel, match)


def _check_tolerances(tolerance: float, abs_tolerance: float) -> None:
    for name, value in (("tolerance", tolerance), ("abs_tolerance", abs_tolerance)):
        if not isinstance(value, int | float) or math.isnan(value) or value < 0:
            raise InvalidInput(
                f"The {name!r} parameter of reproduce must be a number >= 0. Got {value!r} "
                "instead.",
                field=name,
            )


def _link(rec: Recorded, new_run_id: str, match: bool) -> None:
    """Tag both runs: lineage both ways, and whether the metrics matched."""
    from loopline.tracking.api import get_run

    new = get_run(new_run_id)
    if rec.diff:
        new._log_bytes(rec.diff, reproduce_record.DIFF_ARTIFACT)  # same blob: costs nothing
    new.set_tag("loopline.reproduction.match", "true" if match else "false")
    get_run(rec.pipeline.id).set_tag(reproduce_record.REPRODUCED_BY_TAG, new_run_id)


def reproduce(
    ref: str,
    *,
    env: Env = "fresh",
    tolerance: float = 1e-6,
    abs_tolerance: float = 0.0,
    repo: str | Path | None = None,
    executor: str | None = None,
    pin_data: bool = True,
    keep: bool = False,
    on_stage: StageFn | None = None,
    on_line: reproduce_env.LineFn | None = None,
) -> Reproduction:
    """Rerun what made ``ref`` on its recorded code, data and packages; compare metrics.

    ``ref``: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or a run id (a pipeline run
    or one of its steps). ``env="fresh"`` builds a venv of the recorded package versions
    from PyPI (with uv when it is installed, else pip); ``"current"`` reuses this
    interpreter and reports each version that differs. A metric matches when
    ``|reproduced - recorded| <= max(tolerance * |recorded|, abs_tolerance)``.
    ``pin_data=False`` lets the pipeline read the latest data instead (to see what the pins
    change); ``keep`` keeps the temporary folder (code and venv).

    Example:
        >>> # r = reproduce("models:/churn@champion", env="current")
        >>> # r.match, r.metrics["accuracy"].to_dict(), r.reproduced_run_id
    """
    if env not in ("fresh", "current"):
        raise InvalidInput(
            f"env must be 'fresh' or 'current', got {env!r}",
            field="env",
            hint="--env fresh builds a venv from the recorded versions; --env current reuses "
            "this interpreter",
        )
    _check_tolerances(tolerance, abs_tolerance)
    if executor is not None:
        from loopline.training.executor_checks import check_executor_name

        check_executor_name(executor)

    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(name, STAGES.index(name), len(STAGES))

    ctx = get_context()
    stage("resolve")
    rec = resolve(ref)
    _store_env(ctx)  # fail before the slow stages when another process cannot open the store
    work = Path(tempfile.mkdtemp(prefix="loopline-reproduce-"))
    try:
        stage("checkout")
        code = checkout(rec, work / "code", repo)
        stage("environment")
        if env == "current":
            from loopline.tracking.environment import installed_packages

            python: Path | str = sys.executable
            installed = installed_packages()
        else:
            python = _fresh_env(rec, code, work / "venv", on_line)
            installed = reproduce_env.installed_in(python)
        version = platform.python_version() if env == "current" else _python_version(python)
        mismatches = _mismatches(rec, installed, version)
        stage("rerun")
        result = _rerun(
            ctx, rec, python, code, work / "result.json", pin_data=pin_data, executor=executor
        )
        stage("compare")
        from loopline.tracking.api import get_run

        steps: dict[str, str | None] = result.get("steps", {})
        counterpart = (steps.get(rec.step) if rec.step else None) or result["run_id"]
        got = get_run(counterpart).metrics
        metrics = {
            k: compare(v, got.get(k), tolerance, abs_tolerance)
            for k, v in sorted(rec.metrics.items())
        }
        outcome = Reproduction(
            model=rec.model,
            original_run_id=rec.pipeline.id,
            reproduced_run_id=result["run_id"],
            reproduced_status=str(result.get("status")),
            environment=env,
            package_mismatches=mismatches,
            metrics=metrics,
            tolerance=float(tolerance),
            abs_tolerance=float(abs_tolerance),
            workdir=str(work) if keep else None,
            datasets={n: v for n, (v, _) in rec.datasets.items()} if pin_data else {},
        )
        _link(rec, result["run_id"], outcome.match)
        return outcome
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _python_version(python: Path | str) -> str:
    done = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip()
