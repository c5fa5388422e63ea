"""``run_batch``: child runs written in bulk look exactly like runs written call by call."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

import loopline as ll
from loopline.core import audit
from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.tracking import run_batch
from loopline.tracking.entities import now_ms
from loopline.tracking.environment import ENVIRONMENT_ARTIFACT
from loopline.tracking.tables import runs


def _git_repo(folder: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)

    git("init", "-q")
    (folder / "train.py").write_text("print('hi')\n")
    git("add", "train.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first")


def test_children_get_the_parents_environment_tags_params_and_status(
    ctx: Context, tmp_path: Path
) -> None:
    _git_repo(tmp_path)  # the tests run in tmp_path: the parent records this repository
    with ll.start_run(experiment="batch", name="pipeline") as parent:
        p = run_batch.parent_of(parent)
        done = run_batch.ChildRun(
            run_batch.new_run_id(),
            "load",
            now_ms() - 5,
            tags={"loopline.step": "load"},
            params={"n": "10"},
            status="FINISHED",
            end_time=now_ms(),
        )
        running = run_batch.ChildRun(run_batch.new_run_id(), "fit", now_ms())
        with ctx.engine.begin() as conn:
            run_batch.write_runs(conn, p, created=[done, running], actor="ada")
        parent_tags = parent.tags
    assert parent_tags["mlflow.source.git.commit"]
    child = ll.get_run(done.id)
    assert child.parent_run_id == parent.id
    assert child.experiment == "batch"
    assert (child.name, child.status, child.params) == ("load", "FINISHED", {"n": "10"})
    assert child.end_time is not None and child.start_time == done.start_time
    assert child.tags["loopline.step"] == "load"
    assert child.tags["mlflow.parentRunId"] == parent.id
    inherited = {
        k: v
        for k, v in parent_tags.items()
        if k in run_batch.INHERITED_TAGS or k.startswith(run_batch.INHERITED_TAG_PREFIXES)
    }
    assert {"mlflow.source.git.commit", "loopline.git.diff_blake3", "loopline.environment"} <= set(
        inherited
    )
    assert {k: child.tags[k] for k in inherited} == inherited
    assert "loopline.pipeline" not in child.tags
    assert child.read_artifact(ENVIRONMENT_ARTIFACT) == parent.read_artifact(ENVIRONMENT_ARTIFACT)
    assert child.artifact_uri == parent.artifact_uri.replace(parent.id, child.id)
    assert ll.get_run(running.id).status == "RUNNING"
    found = ll.search_runs("batch", filter="tags.`loopline.step` = 'load'")
    assert [r.id for r in found] == [done.id]
    trail = [
        (e.action, e.object_id, e.after)
        for e in audit.events(ctx.engine, object_type="run")
        if e.object_id in (done.id, running.id)
    ]
    assert trail == [
        ("run.create", done.id, {"experiment": "batch", "parent_run_id": parent.id}),
        ("run.update", done.id, {"status": "FINISHED"}),
        ("run.create", running.id, {"experiment": "batch", "parent_run_id": parent.id}),
    ]
    assert audit.verify(ctx.engine).ok


def test_a_running_child_is_ended_later_with_its_final_tags(ctx: Context) -> None:
    with ll.start_run(experiment="batch") as parent:
        p = run_batch.parent_of(parent)
        child = run_batch.ChildRun(run_batch.new_run_id(), "slow", now_ms(), tags={"a": "1"})
        with ctx.engine.begin() as conn:
            run_batch.write_runs(conn, p, created=[child], actor="ada")
        end = run_batch.RunEnd(child.id, "FAILED", now_ms(), {"a": "2", "loopline.error": "boom"})
        with ctx.engine.begin() as conn:
            run_batch.write_runs(conn, p, ended=[end], actor="ada")
    stored = ll.get_run(child.id)
    assert stored.status == "FAILED" and stored.end_time == end.end_time
    assert stored.tags["a"] == "2" and stored.tags["loopline.error"] == "boom"
    actions = [e.action for e in audit.events(ctx.engine, object_type="run", object_id=child.id)]
    assert actions == ["run.create", "run.update"]
    assert audit.verify(ctx.engine).ok


@pytest.mark.parametrize(
    ("child", "field"),
    [
        (run_batch.ChildRun("ab" * 16, "x", 0, tags={"../up": "v"}), "tag"),
        (run_batch.ChildRun("ab" * 16, "x", 0, params={"p": "v" * 7000}), "params.p"),
        (run_batch.ChildRun("ab" * 16, "x", 0, status="DONE"), "status"),
        (run_batch.ChildRun("ab" * 16, "x" * 300, 0), "name"),
    ],
    ids=["bad-tag-key", "long-param", "unknown-status", "long-name"],
)
def test_bad_input_names_the_field_and_writes_nothing(
    ctx: Context, child: run_batch.ChildRun, field: str
) -> None:
    good = run_batch.ChildRun(run_batch.new_run_id(), "good", now_ms())
    with ll.start_run(experiment="batch") as parent:
        p = run_batch.parent_of(parent)
        with pytest.raises(InvalidInput) as err, ctx.engine.begin() as conn:
            run_batch.write_runs(conn, p, created=[good, child], actor="ada")
    assert err.value.field == field
    with ctx.engine.connect() as conn:
        ids = set(conn.execute(sa.select(runs.c.id)).scalars())
    assert ids == {parent.id}
