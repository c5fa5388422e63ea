"""The runner's write-behind journal: few transactions, nothing shown that is not durable,
long steps visible as running, step runs inheriting the pipeline run's environment."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import loopline as ll
from loopline.core import audit
from loopline.core.context import Context
from loopline.training import pipeline_store, step_journal
from loopline.training.pipeline import StepEvent, get_pipeline_run, list_pipeline_runs
from tests.training import pipeline_steps as ps


def _count_saves(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the number of step records in each pipeline_store.save (one transaction)."""
    saves: list[int] = []
    real = pipeline_store.save

    def counting(*args: Any, **kwargs: Any) -> None:
        saves.append(len(args[2]))
        real(*args, **kwargs)

    monkeypatch.setattr(pipeline_store, "save", counting)
    return saves


def test_a_chain_of_100_steps_is_written_in_two_transactions(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(step_journal, "FLUSH_AFTER", 600.0)  # only the step count flushes
    saves = _count_saves(monkeypatch)
    result = ps.chain.run({"n": 100})
    assert result.status == "finished"
    assert saves == [step_journal.FLUSH_STEPS, 100 - step_journal.FLUSH_STEPS]
    stored = get_pipeline_run(result.run_id)
    assert {s.status for s in stored.steps.values()} == {"finished"}
    children = ll.search_runs(
        "chain", filter=f"tags.`loopline.pipeline.run` = '{result.run_id}'", max_results=200
    )
    assert sorted(r.id for r in children) == sorted(s.run_id or "" for s in stored.steps.values())
    assert {(r.status, r.parent_run_id) for r in children} == {("FINISHED", result.run_id)}
    step_events = [
        e.action
        for e in audit.events(ctx.engine, object_type="run")
        if e.object_id in {r.id for r in children}
    ]
    assert sorted(step_events) == ["run.create"] * 100 + ["run.update"] * 100
    assert audit.verify(ctx.engine).ok


def test_ended_steps_wait_at_most_flush_after_seconds(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(step_journal, "FLUSH_AFTER", 0.0)  # every ended step is due at once
    saves = _count_saves(monkeypatch)
    result = ps.chain.run({"n": 5})
    assert result.status == "finished"
    assert saves[:5] == [1, 1, 1, 1, 1]


def test_step_runs_inherit_the_pipeline_runs_environment(ctx: Context, tmp_path: Path) -> None:
    result = ps.simple.run({"workdir": str(tmp_path), "n": 3})
    pipeline_run = ll.get_run(result.run_id)
    child = ll.get_run(result.steps["double"].run_id or "")
    for key in ("loopline.environment", "loopline.python", "loopline.command", "mlflow.user"):
        assert child.tags[key] == pipeline_run.tags[key], key
    assert [a.path for a in child.artifacts] == ["loopline/environment.json"]
    assert child.artifacts[0].digest == pipeline_run.tags["loopline.environment"]
    assert child.tags["loopline.step.status"] == "finished"
    assert child.tags["loopline.step.attempts"] == "1"
    assert "loopline.pipeline" not in child.tags  # the pipeline's own tags stay on it


def test_a_long_step_shows_as_running_with_a_running_run(ctx: Context, tmp_path: Path) -> None:
    wd = str(tmp_path)
    results: list[Any] = []
    driver = threading.Thread(target=lambda: results.append(ps.held.run({"workdir": wd})))
    driver.start()
    try:

        def running_step() -> Any:
            runs = list_pipeline_runs("held")
            if runs and runs[0].steps["hold"].status == "running" and runs[0].steps["hold"].run_id:
                return runs[0].steps["hold"]
            return None

        deadline = time.monotonic() + 20
        rec = running_step()
        while rec is None and time.monotonic() < deadline:
            time.sleep(0.05)
            rec = running_step()
        assert rec is not None, "the held step was not shown as running within 20 s"
        run = ll.get_run(rec.run_id)
        assert run.status == "RUNNING"
        assert run.tags["loopline.step"] == "hold"
    finally:
        (tmp_path / "go").touch()
        driver.join(60)
    assert results and results[0].status == "finished"
    done = ll.get_run(results[0].steps["hold"].run_id or "")
    assert done.status == "FINISHED"
    assert done.tags["loopline.step.output"] == results[0].steps["hold"].output.digest
    actions = [e.action for e in audit.events(ctx.engine, object_type="run", object_id=done.id)]
    assert actions == ["run.create", "run.update"]


def test_a_failure_is_durable_before_it_is_reported(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(step_journal, "FLUSH_AFTER", 600.0)  # no flush but the failure's
    seen: list[tuple[str, str, str]] = []

    def on_event(event: StepEvent) -> None:
        if event.status in ("failed", "skipped"):
            stored = list_pipeline_runs("branches")[0].steps[event.step]
            run_status = ll.get_run(stored.run_id).status if stored.run_id else "-"
            seen.append((event.step, stored.status, run_status))

    result = ps.branches.run({"workdir": str(tmp_path)}, on_event=on_event)
    assert result.status == "failed"
    assert ("always_fails", "failed", "FAILED") in seen
    assert ("after", "skipped", "-") in seen
