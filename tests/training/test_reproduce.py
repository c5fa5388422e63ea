"""``reproduce``: code checkout, data pins, environments, metric comparison, bad input.

The project is a real git repository with a scikit-learn pipeline
(:mod:`tests.training.reproduce_project`); the original run is made from a dirty work tree,
then a new dataset version is registered and the code is changed again before reproducing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from loopline.core.context import Context
from loopline.data import datasets
from loopline.data.dataset_refs import PINS_ENV
from loopline.data.tables import dataset_versions
from loopline.errors import InvalidInput, NotFound
from loopline.tracking.api import get_run, start_run
from loopline.training import registry, registry_reads, reproduce_record
from loopline.training.reproduce import compare, reproduce
from loopline.training.reproduce_env import compare_packages
from loopline.training.reproduce_resolve import resolve
from tests.training import reproduce_project as rp


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The project repository, as the current folder; forgotten by Python afterwards."""
    path = rp.make_project(tmp_path)
    monkeypatch.chdir(path)
    yield path
    rp.forget_pipes(path)


def _trained(repo: Path, pipeline: str = "train") -> str:
    """Train from a dirty tree (C = 0.5, uncommitted) on data v1; register the model."""
    datasets.register(rp.DATASET, rp.data(seed=1))
    rp.set_c(repo, 0.5)
    return rp.train_and_register(repo, pipeline)


def _drift(repo: Path) -> None:
    """After training: a new dataset version, and other code in the work tree."""
    datasets.register(rp.DATASET, rp.data(seed=2))
    rp.set_c(repo, 3.0)


def test_reproduces_a_model_from_its_commit_diff_and_pinned_data(ctx: Context, repo: Path) -> None:
    uri = _trained(repo)
    original = registry_reads.get("repro", 1)
    recorded = original.metrics
    prun = get_run(original.run_id or "")
    assert prun.tags[reproduce_record.DIRTY_TAG] == "true"
    assert b"C = 0.5" in prun.read_artifact(reproduce_record.DIFF_ARTIFACT)
    _drift(repo)

    r = reproduce(uri, env="current")

    assert r.match, r.to_dict()
    assert r.original_run_id == original.run_id
    assert r.environment == "current"
    assert r.package_mismatches == []
    assert set(r.metrics) == {"accuracy", "coef0"}
    for name, m in r.metrics.items():
        assert m.recorded == recorded[name]
        assert m.reproduced == pytest.approx(recorded[name], rel=1e-9)
        assert m.abs_diff is not None and m.abs_diff <= 1e-6 * abs(recorded[name])
    new = get_run(r.reproduced_run_id)
    # lineage both ways, the pinned data version read, the original's code recorded
    assert new.tags[reproduce_record.REPRODUCTION_OF_TAG] == original.run_id
    assert get_run(r.original_run_id).tags[reproduce_record.REPRODUCED_BY_TAG] == new.id
    assert new.tags["loopline.reproduction.match"] == "true"
    assert [(i.name, i.version) for i in new.inputs] == [(rp.DATASET, "1")]
    assert new.tags[reproduce_record.COMMIT_TAG] == prun.tags[reproduce_record.COMMIT_TAG]
    assert new.read_artifact(reproduce_record.DIFF_ARTIFACT) == prun.read_artifact(
        reproduce_record.DIFF_ARTIFACT
    )
    # The checkout mattered: the work tree's code (C = 3.0) on the pinned data differs.
    pipes = rp.import_pipes(repo)
    with datasets.pinned({rp.DATASET: 1}):
        now = pipes.train.run(cache=False)
    assert get_run(now.run_id).metrics["coef0"] != pytest.approx(recorded["coef0"], rel=1e-3)


def test_without_the_data_pin_the_metrics_differ(embedded_ctx: Context, repo: Path) -> None:
    uri = _trained(repo)
    _drift(repo)
    r = reproduce(uri, env="current", pin_data=False)
    assert not r.match
    assert not r.metrics["coef0"].match
    assert r.metrics["coef0"].rel_diff is not None and r.metrics["coef0"].rel_diff > 1e-3
    assert [i.version for i in get_run(r.reproduced_run_id).inputs] == ["2"]


def test_a_nondeterministic_pipeline_is_reported_as_not_reproduced(
    embedded_ctx: Context, repo: Path
) -> None:
    uri = _trained(repo, "noisy")
    r = reproduce(uri, env="current")
    assert not r.match
    assert not r.metrics["coef0"].match
    assert r.to_dict()["match"] is False
    assert get_run(r.reproduced_run_id).tags["loopline.reproduction.match"] == "false"


def test_a_step_run_id_and_an_alias_resolve_to_the_same_pipeline_run(
    embedded_ctx: Context, repo: Path
) -> None:
    uri = _trained(repo)
    registry.set_alias("repro", "champion", 1)
    by_alias = resolve("models:/repro@champion")
    assert by_alias.pipeline.id == resolve(uri).pipeline.id
    step_run = by_alias.pipeline.steps["fit"].run_id
    assert step_run is not None
    by_step = resolve(step_run)
    assert by_step.pipeline.id == by_alias.pipeline.id
    # the step's run has no metrics of its own: the pipeline's run's are compared
    assert by_step.metrics_run_id == by_step.pipeline.id and by_step.step is None
    assert by_step.metrics == by_alias.metrics
    assert by_alias.datasets == {rp.DATASET: (1, datasets.get(rp.DATASET, 1).hash)}
    assert by_alias.import_root == "src" and by_alias.workdir == "."
    assert "sklearn" in by_alias.modules and by_alias.packages["scikit-learn"]


def test_compare_applies_relative_and_absolute_tolerances() -> None:
    assert compare(100.0, 100.00005, 1e-6, 0.0).match
    assert not compare(100.0, 100.001, 1e-6, 0.0).match
    assert compare(0.0, 1e-9, 1e-6, 1e-8).match
    zero = compare(0.0, 1e-9, 1e-6, 0.0)
    assert not zero.match and zero.rel_diff == float("inf")
    missing = compare(1.0, None, 1e-6, 0.0)
    assert not missing.match and missing.reproduced is None
    assert compare_packages({"numpy": "2.0"}, {"numpy": "2.0", "x": "1"}, ["numpy"]) == []


# -- bad input -------------------------------------------------------------------------------


def test_a_model_that_does_not_exist_is_not_found(embedded_ctx: Context) -> None:
    with pytest.raises(NotFound, match="nope"):
        reproduce("models:/nope/1", env="current")
    with pytest.raises(InvalidInput, match="neither a model URI nor a run id"):
        reproduce("churn", env="current")


def test_a_model_logged_by_hand_names_what_is_missing(embedded_ctx: Context, repo: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    df = rp.data(seed=1)
    with start_run(experiment="by-hand") as run:
        run.log_metric("accuracy", 0.5)
        run.log_model(LogisticRegression().fit(df[["x1"]], df["y"]), "model")
    registry.register(run.id, "manual")
    with pytest.raises(InvalidInput, match="not part of a Loopline pipeline run") as err:
        reproduce("models:/manual/1", env="current")
    assert "no recorded entry point" in str(err.value) and "@ll.pipeline" in str(err.value)


def test_a_commit_missing_from_the_repository_is_named(
    embedded_ctx: Context, repo: Path, tmp_path: Path
) -> None:
    uri = _trained(repo)
    other = tmp_path / "other"
    other.mkdir()
    rp.git(other, "init", "-q")
    commit = get_run(registry_reads.get("repro", 1).run_id or "").tags[reproduce_record.COMMIT_TAG]
    with pytest.raises(NotFound, match=f"commit {commit}.*not in the repository"):
        reproduce(uri, env="current", repo=other)
    with pytest.raises(InvalidInput, match="is not a git repository"):
        reproduce(uri, env="current", repo=tmp_path / "proj" / "src" / "missing")


def test_a_deleted_dataset_version_is_named(embedded_ctx: Context, repo: Path) -> None:
    uri = _trained(repo)
    _drift(repo)
    # There is no delete API for dataset versions; an operator removing the row is the case.
    with embedded_ctx.engine.begin() as conn:
        conn.execute(sa.delete(dataset_versions).where(dataset_versions.c.version == 1))
    with pytest.raises(
        NotFound, match=r"'repro-data' version 1.*no longer exists.*versions now: 2"
    ):
        reproduce(uri, env="current")


def test_a_run_outside_git_and_bad_options_are_refused(
    embedded_ctx: Context, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets.register(rp.DATASET, rp.data(seed=1))
    pipes = rp.import_pipes(repo)
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(outside)
    run_id = pipes.train.run().raise_for_status().run_id
    with pytest.raises(InvalidInput, match="recorded no git commit"):
        reproduce(run_id, env="current")
    with pytest.raises(InvalidInput, match="'tolerance'"):
        reproduce(run_id, env="current", tolerance=-1.0)
    with pytest.raises(InvalidInput, match="env must be"):
        reproduce(run_id, env="conda")  # type: ignore[arg-type]


def test_pins_are_honoured_for_latest_only_and_checked(
    embedded_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets.register(rp.DATASET, rp.data(seed=1))
    datasets.register(rp.DATASET, rp.data(seed=2))
    assert datasets.get(rp.DATASET).version == 2
    with datasets.pinned({rp.DATASET: 1}):
        assert datasets.get(rp.DATASET).version == 1
        assert datasets.get(rp.DATASET, 2).version == 2
    monkeypatch.setenv(PINS_ENV, '{"repro-data": 1}')
    assert datasets.get(rp.DATASET).version == 1
    monkeypatch.setenv(PINS_ENV, "[1]")
    with pytest.raises(InvalidInput, match="LOOPLINE_DATASET_PINS must be a JSON object"):
        datasets.get(rp.DATASET)
    with pytest.raises(InvalidInput, match="not a version number"):
        datasets.pinned({rp.DATASET: "latest"}).__enter__()  # type: ignore[dict-item]


@pytest.mark.slow
def test_a_fresh_environment_is_built_from_the_recorded_versions(
    embedded_ctx: Context, repo: Path
) -> None:
    # Trained by the CLI, so that the recorded imports are a pipeline's, not pytest's.
    datasets.register(rp.DATASET, rp.data(seed=1))
    rp.set_c(repo, 0.5)
    env = {
        **os.environ,
        "LOOPLINE_URI": embedded_ctx.settings.metadata_uri,
        "LOOPLINE_ARTIFACTS": embedded_ctx.settings.artifacts_uri,
        "PYTHONPATH": str(repo / "src"),
    }
    cmd = [sys.executable, "-m", "loopline.cli.main", "pipeline", "run", "reproproj.pipes:train"]
    done = subprocess.run([*cmd, "--json"], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    version = registry.register(orjson.loads(done.stdout)["run_id"], "repro")
    _drift(repo)
    started = time.monotonic()
    r = reproduce(version.uri, env="fresh")
    print(f"fresh environment reproduction took {time.monotonic() - started:.0f} s")
    assert r.environment == "fresh"
    assert r.package_mismatches == [], r.package_mismatches
    assert r.match, r.to_dict()
