"""ll.tune on Optuna, with the study stored in the metadata database."""

from __future__ import annotations

import time
from typing import Any

import optuna
import pytest
import sqlalchemy as sa

import loopline as ll
from loopline.core.context import Context
from loopline.core.db_migrations import current_revision, head_revision
from loopline.errors import InvalidInput
from loopline.training.trials import open_storage, optuna_storage_url
from loopline.training.tuning import TuningFailed, parse_space
from tests.training import pipeline_steps as ps


def test_finds_the_optimum_of_a_quadratic(ctx: Context) -> None:
    result = ll.tune(ps.quadratic, {"x": ("float", -10.0, 10.0)}, n_trials=30, pruner=False)
    assert abs(result.best_params["x"] - 2.0) < 0.5
    assert result.best_value > 2.75
    assert len(result.trials) == 30
    assert {t.state for t in result.trials} == {"complete"}
    best = max(result.trials, key=lambda t: t.value or -1e9)
    assert result.best_run_id == best.run_id
    assert ll.get_run(result.best_run_id).metrics["objective"] == pytest.approx(result.best_value)


def test_trials_are_child_runs_with_params_and_the_objective(ctx: Context) -> None:
    result = ll.tune(
        ps.quadratic,
        {"x": ("float", 0.0, 4.0), "kind": ("categorical", ["a", "b"]), "k": ("int", 1, 3)},
        n_trials=4,
        direction="minimize",
        study_name="children",
    )
    parent = ll.get_run(result.run_id)
    assert parent.tags["loopline.tune.study"] == "children"
    assert parent.metrics["best_objective"] == pytest.approx(result.best_value)
    assert result.best_value == min(t.value for t in result.trials if t.value is not None)
    for trial in result.trials:
        run = ll.get_run(trial.run_id)
        assert run.parent_run_id == result.run_id
        assert run.name == f"trial-{trial.number}"
        assert run.params == {k: str(v) for k, v in trial.params.items()}
        assert run.metrics["objective"] == pytest.approx(trial.value)
        assert set(trial.params) == {"x", "kind", "k"}


def test_poor_trials_are_pruned(ctx: Context) -> None:
    result = ll.tune(ps.curve, {"x": ("float", 0.0, 1.0)}, n_trials=16)
    states = [t.state for t in result.trials]
    assert "pruned" in states, states
    assert states[:5] == ["complete"] * 5  # the median pruner waits for 5 trials
    pruned = next(t for t in result.trials if t.state == "pruned")
    run = ll.get_run(pruned.run_id)
    assert run.tags["loopline.tune.state"] == "pruned"
    assert run.status == "FINISHED"
    assert "objective" not in run.metrics
    assert len(ll.metric_history(pruned.run_id, "objective_intermediate")) < 8
    assert abs(result.best_params["x"] - 0.5) < 0.2


def test_study_lives_in_the_metadata_database(ctx: Context) -> None:
    ll.tune(ps.quadratic, {"x": ("float", -1.0, 1.0)}, n_trials=3, study_name="shared")
    again = ll.tune(ps.quadratic, {"x": ("float", -1.0, 1.0)}, n_trials=2, study_name="shared")
    assert [t.number for t in again.trials] == [3, 4]  # the study went on where it stopped
    url = optuna_storage_url(ctx.settings.metadata_uri)
    assert url is not None
    study = optuna.load_study(study_name="shared", storage=open_storage(url))
    assert len(study.trials) == 5
    tables = set(sa.inspect(ctx.engine).get_table_names())
    assert {"studies", "trials", "runs", "pipeline_runs"} <= tables
    assert current_revision(ctx.engine) == head_revision()  # Loopline's schema untouched


def test_a_resumed_study_does_not_ask_its_first_params_again(ctx: Context) -> None:
    # With the same seed, TPE's random start asked for the params of the study's first
    # trials again: every call on a named study re-evaluated the same points.
    space = {"x": ("float", -10.0, 10.0), "k": ("int", 1, 1000)}
    first = ll.tune(ps.quadratic, space, n_trials=4, study_name="goes-on", seed=0)
    again = ll.tune(ps.quadratic, space, n_trials=4, study_name="goes-on", seed=0)
    seen = {(t.params["x"], t.params["k"]) for t in first.trials}
    assert not seen & {(t.params["x"], t.params["k"]) for t in again.trials}
    # still reproducible: the same calls on a new study search the same points
    fresh = [ll.tune(ps.quadratic, space, n_trials=4, study_name="copy", seed=0)]
    fresh.append(ll.tune(ps.quadratic, space, n_trials=4, study_name="copy", seed=0))
    assert [t.params for r in fresh for t in r.trials] == [
        t.params for r in (first, again) for t in r.trials
    ]


def test_tune_waits_for_the_last_trials_without_spinning(ctx: Context) -> None:
    # Past the timeout, the loop waited with a timeout of 0 for the trials in flight: it
    # spun a core (~0.5 s of CPU per second of the trial) until they ended.
    ll.tune(ps.quadratic, {"x": ("float", 0.0, 1.0)}, n_trials=1)  # Optuna's imports, once
    cpu = time.process_time()
    result = ll.tune(_sleeps, {"x": ("float", 0.0, 1.0)}, n_trials=5, timeout=0.2)
    assert [t.state for t in result.trials] == ["complete"]
    assert time.process_time() - cpu < 0.25


def _sleeps(params: dict[str, Any]) -> float:
    time.sleep(2.0)  # a sleeping thread takes no CPU
    return float(params["x"])


def test_tuning_does_not_log_optunas_study_created_line(
    ctx: Context, caplog: pytest.LogCaptureFixture
) -> None:
    # Optuna's handler writes to the stderr of its first import (pytest's capture by now),
    # so the record is checked, not the stream: a filtered record reaches no handler.
    with caplog.at_level("INFO"):
        result = ll.tune(ps.quadratic, {"x": ("float", -1.0, 1.0)}, n_trials=2, study_name="quiet")
    assert not [r for r in caplog.records if "A new study created" in r.getMessage()]
    assert ll.get_run(result.run_id).tags["loopline.tune.study"] == "quiet"
    # Optuna's own logger keeps its level: only that one line is filtered.
    assert optuna.logging.get_verbosity() == optuna.logging.INFO


def test_a_study_resumed_with_a_space_its_trials_do_not_fit_is_refused_before_a_trial(
    ctx: Context,
) -> None:
    """A param searched as a float, then as an int or a categorical (or a categorical with
    other choices), raised Optuna's raw ValueError from the first trial, which stayed
    RUNNING in the study for ever; and the tuning run was left FAILED."""
    space = {"x": ("float", 0.0, 4.0), "kind": ("categorical", ["a", "b"])}
    ll.tune(ps.quadratic, space, n_trials=2, study_name="resumed")
    runs_before = len(ll.search_runs(experiment="tuning"))
    for param, dimension, old in (
        ("x", ("int", 0, 4), "('float', 0.0, 4.0)"),
        ("x", ("float", 0.5, 4.0, "log"), "('float', 0.0, 4.0)"),
        ("kind", ("categorical", ["a", "b", "c"]), "('categorical', ['a', 'b'])"),
        ("kind", ("categorical", ["b", "a"]), "('categorical', ['a', 'b'])"),
    ):
        with pytest.raises(InvalidInput, match="study 'resumed' exists") as info:
            ll.tune(ps.quadratic, {**space, param: dimension}, n_trials=2, study_name="resumed")
        assert info.value.field == f"space.{param}"
        assert f"give {param!r} as {old}" in (info.value.hint or "")
    assert len(ll.search_runs(experiment="tuning")) == runs_before
    url = optuna_storage_url(ctx.settings.metadata_uri)
    assert url is not None
    study = optuna.load_study(study_name="resumed", storage=open_storage(url))
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    # What Optuna allows goes on: another float range, a new param.
    wider = {**space, "x": ("float", -1.0, 5.0), "k": ("int", 1, 3)}
    again = ll.tune(ps.quadratic, wider, n_trials=2, study_name="resumed")
    assert [t.number for t in again.trials] == [2, 3]


def test_a_named_study_goes_on_with_the_metadata_database_in_memory(tmp_path: Any) -> None:
    """Each call made a new in-memory storage: the 'same' study started again from trial 0
    (and a changed space was never checked)."""
    memory = ll.init(uri="sqlite:///:memory:", artifacts=str(tmp_path / "artifacts"))
    try:
        space = {"x": ("float", -1.0, 1.0)}
        ll.tune(ps.quadratic, space, n_trials=2, study_name="kept")
        again = ll.tune(ps.quadratic, space, n_trials=2, study_name="kept")
        assert [t.number for t in again.trials] == [2, 3]
        with pytest.raises(InvalidInput, match="study 'kept' exists"):
            ll.tune(ps.quadratic, {"x": ("int", -1, 1)}, n_trials=1, study_name="kept")
    finally:
        memory.close()


def test_a_multi_objective_study_of_that_name_is_refused_naming_it(ctx: Context) -> None:
    """Optuna's RuntimeError ('not available during multi-objective optimization') leaked."""
    ctx.engine  # noqa: B018 - Loopline's schema first, as ll.tune does
    url = optuna_storage_url(ctx.settings.metadata_uri)
    assert url is not None
    optuna.create_study(
        study_name="pareto", storage=open_storage(url), directions=["maximize", "minimize"]
    )
    with pytest.raises(InvalidInput, match="study 'pareto' exists and has 2 objectives"):
        ll.tune(ps.quadratic, {"x": ("float", 0.0, 1.0)}, n_trials=1, study_name="pareto")


def test_trials_on_local_processes_report_through_the_shared_storage(ctx: Context) -> None:
    result = ll.tune(ps.curve, {"x": ("float", 0.0, 1.0)}, n_trials=8, executor="process")
    assert len(result.trials) == 8
    assert "pruned" in [t.state for t in result.trials]
    assert ll.get_run(result.trials[0].run_id).parent_run_id == result.run_id


@pytest.mark.slow
def test_trials_as_ray_tasks(ctx: Context) -> None:
    import ray

    try:
        result = ll.tune(ps.quadratic, {"x": ("float", -4.0, 4.0)}, n_trials=6, executor="ray")
    finally:
        ray.shutdown()
    assert len(result.trials) == 6
    assert {t.state for t in result.trials} == {"complete"}


def _raises(objective: Any) -> None:
    raise RuntimeError("the objective is broken")


def test_an_objective_that_always_fails(ctx: Context) -> None:
    with pytest.raises(TuningFailed, match="the objective is broken"):
        ll.tune(_raises, {"x": ("float", 0.0, 1.0)}, n_trials=2)


def test_an_objective_calling_sys_exit_fails_its_trial_only(ctx: Context) -> None:
    # SystemExit went past the trial and ended ll.tune (and the process).
    result = ll.tune(_exits_below_half, {"x": ("float", 0.0, 1.0)}, n_trials=8, seed=0)
    failed = [t for t in result.trials if t.state == "failed"]
    assert failed and all(t.params["x"] < 0.5 for t in failed)
    assert "SystemExit: 2" in (failed[0].error or "")
    assert result.best_params["x"] >= 0.5


def _exits_below_half(params: dict[str, Any]) -> float:
    if params["x"] < 0.5:
        raise SystemExit(2)
    return float(params["x"])


def test_a_bool_is_no_score(ctx: Context) -> None:
    # `return acc > 0.9` was taken as 1.0 or 0.0, and a tie of 1.0s picked the best.
    with pytest.raises(TuningFailed, match=r"the objective returned True"):
        ll.tune(lambda p: p["x"] >= 0.0, {"x": ("float", 0.0, 1.0)}, n_trials=2)
    with pytest.raises(TuningFailed, match=r"trial 0 reported the bool True at step 0"):
        ll.tune(_reports_a_bool, {"x": ("float", 0.0, 1.0)}, n_trials=1)


def _reports_a_bool(params: dict[str, Any], trial: Any) -> float:
    trial.report(params["x"] > 0.5 or True, 0)
    return float(params["x"])


def test_a_score_given_as_text_is_no_score(ctx: Context) -> None:
    """'1.5' was converted and became the best value: an objective returning text is a bug."""
    with pytest.raises(TuningFailed, match=r"the objective returned '1\.5'"):
        ll.tune(_text_score, {"x": ("float", 0.0, 1.0)}, n_trials=2, seed=0)


def _text_score(params: dict[str, Any]) -> str:
    return "1.5"


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"lr": ("float", 1.0)}, r"space\['lr'\].*expected \(\"float\", low, high\)"),
        ({"lr": ("float", 0.0, 1.0, "log")}, r"space\['lr'\].*log scale needs low > 0"),
        ({"n": ("int", 5, 1)}, r"space\['n'\].*low 5 is above high 1"),
        ({"n": ("int", 1.5, 3)}, r"space\['n'\].*not whole"),
        ({"c": ("categorical", [])}, r"space\['c'\].*non-empty list"),
        ({"c": ("categorical", [object])}, r"space\['c'\].*is not None/bool/int/float/str"),
        ({"x": ("normal", 0, 1)}, r"space\['x'\].*unknown kind 'normal'"),
        ({"x": 3}, r"space\['x'\].*tuple starting with its kind"),
        ({}, r"non-empty dict"),
    ],
    ids=[
        "short",
        "log-zero",
        "reversed",
        "fraction",
        "empty-choices",
        "odd-choice",
        "kind",
        "not-tuple",
        "empty",
    ],
)
def test_bad_space_names_the_entry(space: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_space(space)


def test_bad_arguments_are_clear_errors(ctx: Context) -> None:
    space = {"x": ("float", 0.0, 1.0)}
    with pytest.raises(InvalidInput, match="'n_trials' parameter of tune"):
        ll.tune(ps.quadratic, space, n_trials=0)
    with pytest.raises(InvalidInput, match="'direction' parameter of tune"):
        ll.tune(ps.quadratic, space, direction="up")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown executor 'gpu'"):
        ll.tune(ps.quadratic, space, executor="gpu")
    for seed in (True, -1, 2**32, "0", 1.0):
        with pytest.raises(InvalidInput, match="'seed' parameter of tune") as err:
            ll.tune(ps.quadratic, space, seed=seed)  # type: ignore[arg-type]
        assert err.value.field == "seed"
