"""Starting runs cheaply: a new run is written with its first data (often in one commit),
visible soon to everyone, refused at once when its experiment is deleted. (How the git state
is reused between runs: ``test_git_state.py``.)"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import loopline as ll
from loopline.core import audit
from loopline.core.context import Context
from loopline.core.db import create_engine_for
from loopline.errors import Conflict, InvalidInput
from loopline.tracking import deferred, experiments
from loopline.tracking.early_points import _EARLY_ROWS
from loopline.tracking.tables import experiments as experiments_table
from loopline.tracking.tables import runs as runs_table


def _commits(ctx: Context) -> list[int]:
    """A counter of the commits made on ``ctx``'s engine from now on."""
    count = [0]

    def on_commit(conn: object) -> None:
        count[0] += 1

    sa.event.listen(ctx.engine, "commit", on_commit)
    return count


@pytest.fixture
def other_engine(ctx: Context) -> Iterator[sa.Engine]:
    """A second engine on the same database: what another process sees."""
    engine = create_engine_for(str(ctx.engine.url.render_as_string(hide_password=False)))
    yield engine
    engine.dispose()


def _stored_run(engine: sa.Engine, run_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(runs_table.c.id, runs_table.c.status).where(runs_table.c.id == run_id)
        ).first()


def test_a_short_run_is_written_in_one_commit_with_its_audit_events(ctx: Context) -> None:
    with ll.start_run(experiment="one-commit"):
        pass  # the experiment now exists
    commits = _commits(ctx)
    with ll.start_run(experiment="one-commit", tags={"team": "risk"}) as run:
        run.log_params({"model": "lgbm", "depth": 3})
        run.set_tag("stage", "candidate")
        run.log_metrics({"auc": 0.9, "loss": 0.1}, step=2)
        run.log_metric("auc", 0.95, step=3)
    assert commits[0] == 1
    stored = ll.get_run(run.id)
    assert stored.status == "FINISHED" and stored.end_time is not None
    assert stored.params == {"model": "lgbm", "depth": "3"}
    assert {"team": "risk", "stage": "candidate"}.items() <= stored.tags.items()
    assert stored.metrics == {"auc": 0.95, "loss": 0.1}
    assert [p.value for p in ll.metric_history(run.id, "auc")] == [0.9, 0.95]
    events = audit.events(ctx.engine, object_type="run", object_id=run.id)
    assert [(e.action, e.after) for e in events] == [
        ("run.create", {"experiment": "one-commit", "parent_run_id": None}),
        ("run.update", {"status": "FINISHED"}),
    ]
    assert audit.verify(ctx.engine).ok


def test_a_started_run_is_visible_to_others_soon_even_when_it_logs_nothing(
    ctx: Context, other_engine: sa.Engine
) -> None:
    with ll.start_run(experiment="visible") as run:
        run.log_param("lr", 0.1)
        run_id = run._record.id  # not run.id: that would write it at once
        deadline = time.monotonic() + deferred.WRITE_DELAY_S + 10
        while _stored_run(other_engine, run_id) is None:
            assert time.monotonic() < deadline, "the run was not written in time"
            time.sleep(0.05)
        row = _stored_run(other_engine, run_id)
        assert row is not None and row.status == "RUNNING"
        assert ll.get_run(run_id).params == {"lr": "0.1"}
        run.log_param("depth", 4)  # written at once from now on
        with other_engine.connect() as conn:
            depth = conn.execute(
                sa.text("SELECT value FROM params WHERE run_id = :r AND key = 'depth'"),
                {"r": run_id},
            ).scalar()
        assert depth == "4"
    assert _stored_run(other_engine, run_id) == (run_id, "FINISHED")


def test_the_run_id_search_and_get_run_write_the_run_first(
    ctx: Context, other_engine: sa.Engine
) -> None:
    with ll.start_run(experiment="ids") as run:
        run_id = run.id
        assert _stored_run(other_engine, run_id) is not None
    with ll.start_run(experiment="ids") as run:
        run.log_param("model", "rf")
        found = ll.search_runs("ids", filter="params.model = 'rf'")
        assert [r._record.id for r in found] == [run._record.id]
        assert found[0].status == "RUNNING"


def test_params_and_tags_are_checked_when_logged_not_when_written(ctx: Context) -> None:
    with ll.start_run(experiment="checks") as run:
        run.log_param("lr", 0.1)
        run.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(Conflict, match=r"'lr'.*already '0\.1'"):
            run.log_param("lr", 0.2)
        with pytest.raises(InvalidInput, match="tag"):
            run.set_tag("", "x")
        with pytest.raises(InvalidInput, match="reserved"):
            run.set_tag("loopline.ingest.w1", "3")
        with pytest.raises(InvalidInput, match=r"6000|6,000|limit|long"):
            run.log_param("big", "x" * 7000)
    assert ll.get_run(run.id).params == {"lr": "0.1"}


def test_a_deleted_experiment_refuses_new_runs(
    ctx: Context, other_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run below must still be unwritten when the other process deletes its experiment:
    # on a loaded machine that update took longer than the background writer's delay.
    monkeypatch.setattr(deferred, "WRITE_DELAY_S", 60.0)
    with ll.start_run(experiment="doomed"):
        pass  # remembered as active
    exp = experiments.get_experiment_by_name(ctx.engine, "doomed")
    experiments.set_experiment_lifecycle(ctx.engine, exp.id, "deleted")
    with pytest.raises(InvalidInput, match="'doomed' is deleted"):
        ll.start_run(experiment="doomed")
    experiments.set_experiment_lifecycle(ctx.engine, exp.id, "active")
    # Deleted by another process after this one looked it up: the run's write refuses it,
    # and nothing of the run is stored.
    run = ll.start_run(experiment="doomed")
    run.log_param("lr", 0.1)
    with other_engine.begin() as conn:
        conn.execute(
            experiments_table.update()
            .where(experiments_table.c.id == exp.id)
            .values(lifecycle_stage="deleted")
        )
    with pytest.raises(InvalidInput, match="'doomed' is deleted"):
        run.end()
    assert _stored_run(other_engine, run._record.id) is None
    with other_engine.begin() as conn:
        conn.execute(
            experiments_table.update()
            .where(experiments_table.c.id == exp.id)
            .values(lifecycle_stage="active")
        )
    run.end()  # nothing was lost: it is written now, with its param
    assert ll.get_run(run.id).params == {"lr": "0.1"}


def test_a_child_of_an_unwritten_parent_writes_the_parent_first(ctx: Context) -> None:
    with ll.start_run(experiment="nest") as parent, ll.start_run(name="child") as child:
        child.log_metric("loss", 0.5)
    assert ll.get_run(child.id).parent_run_id == parent.id
    assert ll.get_run(child.id).tags["mlflow.parentRunId"] == parent.id
    assert ll.get_run(parent.id).status == "FINISHED"


def test_many_points_before_the_first_write_all_arrive(ctx: Context) -> None:
    with ll.start_run(experiment="points") as run:
        for step in range(_EARLY_ROWS + 500):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metrics({"acc": 0.5}, step=1)
    history = ll.metric_history(run.id, "loss")
    assert len(history) == _EARLY_ROWS + 500
    assert ll.get_run(run.id).metrics["acc"] == 0.5


def test_points_logged_from_threads_while_the_run_is_written_all_arrive(ctx: Context) -> None:
    with ll.start_run(experiment="threads") as run:

        def log(key: str) -> None:
            for step in range(2000):
                run.log_metric(key, float(step), step=step)

        threads = [threading.Thread(target=log, args=(f"m{i}",)) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(deferred.WRITE_DELAY_S)  # the background writer takes the run meanwhile
        for t in threads:
            t.join()
    for i in range(3):
        assert len(ll.metric_history(run.id, f"m{i}")) == 2000


def test_a_run_nobody_ends_is_written_at_exit_with_its_points(ctx: Context, db_uri: str) -> None:
    script = f"""
import loopline as ll
from loopline.tracking import active
ll.init(uri={db_uri!r}, artifacts={str(ctx.artifacts.url)!r})
run = ll.start_run(experiment="abandoned")
active.forget(run)  # as tuning does with its trials: not ended at exit
run.log_param("lr", 0.1)
for i in range(100):
    run.log_metric("x", float(i), step=i)
print(run._record.id)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    run = ll.get_run(done.stdout.strip())
    assert run.status == "RUNNING" and run.params == {"lr": "0.1"}
    assert len(ll.metric_history(run.id, "x")) == 100


def test_installed_packages_read_from_folder_names_match_their_metadata() -> None:
    # In a fresh interpreter: other tests in this worker put folders on sys.path and remove
    # them, which would make two scans here disagree for reasons that are not the code's.
    code = """
import json
from importlib import metadata
from loopline.tracking import environment
slow = {}
for dist in metadata.distributions():
    name = dist.metadata["Name"] if dist.metadata else None
    if name:
        slow.setdefault(name.lower().replace("_", "-"), dist.version)
print(json.dumps([environment.installed_packages(), dict(sorted(slow.items()))]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    quick, slow = json.loads(out.stdout)
    assert quick == slow
    assert "sqlalchemy" in quick
