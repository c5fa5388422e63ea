"""The store functions the SDK and the MLflow-compatible server share, on both backends."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from loopline.core import audit
from loopline.core.context import Context
from loopline.core.db import create_engine_for
from loopline.core.db_migrations import upgrade
from loopline.errors import BackendUnavailable, Conflict, InvalidInput, NotFound
from loopline.tracking import experiments, lineage, query, run_creation, run_data, run_state
from loopline.tracking.entities import ArtifactEntry, Metric, MetricPoint, RunInput, now_ms
from loopline.tracking.metrics import stored_points
from loopline.tracking.tables import latest_metrics
from loopline.tracking.validation import MAX_FLOAT
from tests.tracking.backends import run_with_id


def test_experiment_create_get_and_name_conflict(ctx: Context) -> None:
    exp = experiments.create_experiment(ctx.engine, "churn", tags={"team": "risk"}, actor="ada")
    assert exp.id > 0
    assert exp.artifact_location == f"mlflow-artifacts:/{exp.id}"
    assert experiments.get_experiment(ctx.engine, exp.id).tags == {"team": "risk"}
    assert experiments.get_experiment_by_name(ctx.engine, "churn").id == exp.id
    with pytest.raises(Conflict, match="'churn' already exists"):
        experiments.create_experiment(ctx.engine, "churn")
    assert experiments.get_or_create_experiment(ctx.engine, "churn").id == exp.id
    with pytest.raises(NotFound, match="experiment 'nope'"):
        experiments.get_experiment_by_name(ctx.engine, "nope")
    with pytest.raises(NotFound, match="experiment 999"):
        experiments.get_experiment(ctx.engine, 999)
    assert [e.action for e in audit.events(ctx.engine)] == ["experiment.create"]


def test_experiment_delete_restore_and_search(ctx: Context) -> None:
    a = experiments.create_experiment(ctx.engine, "churn-a")
    b = experiments.create_experiment(ctx.engine, "churn-b")
    experiments.create_experiment(ctx.engine, "fraud")
    experiments.set_experiment_lifecycle(ctx.engine, b.id, "deleted")
    found = query.search_experiments(ctx.engine, name_like="churn%").experiments
    assert [e.name for e in found] == ["churn-a"]
    with pytest.raises(InvalidInput, match="at most 10,000 bytes") as info:
        query.search_experiments(ctx.engine, name_like="x" * 60_000)
    assert info.value.field == "name_like"
    deleted = query.search_experiments(ctx.engine, view="deleted").experiments
    assert [e.name for e in deleted] == ["churn-b"]
    with pytest.raises(InvalidInput, match="deleted"):
        run_creation.create_run(ctx.engine, b.id)
    experiments.set_experiment_lifecycle(ctx.engine, b.id, "active")
    assert run_creation.create_run(ctx.engine, b.id).status == "RUNNING"
    experiments.set_experiment_tag(ctx.engine, a.id, "owner", "ada")
    experiments.set_experiment_tag(ctx.engine, a.id, "owner", "bob")
    assert experiments.get_experiment(ctx.engine, a.id).tags == {"owner": "bob"}
    page = query.search_experiments(ctx.engine, max_results=2)
    assert [e.name for e in page.experiments] == ["Default", "churn-a"]
    rest = query.search_experiments(ctx.engine, max_results=2, page_token=page.next_page_token)
    assert [e.name for e in rest.experiments] == ["churn-b", "fraud"]
    assert rest.next_page_token is None


def test_an_experiment_tag_is_deleted_and_a_missing_one_is_not_found(ctx: Context) -> None:
    exp = experiments.create_experiment(ctx.engine, "tagged", tags={"owner": "ada", "team": "x"})
    experiments.get_experiment(ctx.engine, exp.id)  # remembered, then changed below
    experiments.delete_experiment_tag(ctx.engine, exp.id, "owner")
    assert experiments.get_experiment(ctx.engine, exp.id).tags == {"team": "x"}
    with pytest.raises(NotFound, match="has no tag 'owner'"):
        experiments.delete_experiment_tag(ctx.engine, exp.id, "owner")
    with pytest.raises(NotFound):
        experiments.delete_experiment_tag(ctx.engine, 987_654, "team")
    with pytest.raises(InvalidInput) as info:
        experiments.delete_experiment_tag(ctx.engine, exp.id, "a\x00b")
    assert info.value.field == "tag"
    assert experiments.get_experiment(ctx.engine, exp.id).tags == {"team": "x"}


def test_deleting_an_experiment_deletes_its_runs_as_mlflow_does(ctx: Context) -> None:
    exp = experiments.create_experiment(ctx.engine, "churn")
    other = experiments.create_experiment(ctx.engine, "fraud")
    runs = [run_creation.create_run(ctx.engine, exp.id).id for _ in range(2)]
    kept = run_creation.create_run(ctx.engine, other.id).id
    experiments.set_experiment_lifecycle(ctx.engine, exp.id, "deleted")
    assert {run_state.get_run(ctx.engine, r).lifecycle_stage for r in runs} == {"deleted"}
    assert [r.id for r in query.search_runs(ctx.engine).runs] == [kept]
    in_deleted = query.search_runs(ctx.engine, experiment_ids=[exp.id], view="deleted").runs
    assert sorted(r.id for r in in_deleted) == sorted(runs)
    experiments.set_experiment_lifecycle(ctx.engine, exp.id, "active")
    assert {run_state.get_run(ctx.engine, r).lifecycle_stage for r in runs} == {"active"}
    assert len(query.search_runs(ctx.engine, experiment_ids=[exp.id]).runs) == 2
    assert run_state.get_run(ctx.engine, kept).lifecycle_stage == "active"


def test_an_experiment_is_renamed_keeping_its_id_and_runs(ctx: Context) -> None:
    exp = experiments.create_experiment(ctx.engine, "churn")
    run = run_creation.create_run(ctx.engine, exp.id).id
    assert experiments.active_experiment(ctx.engine, "churn").id == exp.id  # remembered
    experiments.rename_experiment(ctx.engine, exp.id, "churn-2026", actor="ada")
    renamed = experiments.get_experiment_by_name(ctx.engine, "churn-2026")
    assert renamed.id == exp.id and renamed.artifact_location == exp.artifact_location
    assert renamed.last_update_time >= exp.last_update_time
    assert run_state.get_run(ctx.engine, run).experiment == "churn-2026"
    with pytest.raises(NotFound):
        experiments.get_experiment_by_name(ctx.engine, "churn")
    # What asks for the old name now gets a new experiment, not the renamed one.
    assert experiments.active_experiment(ctx.engine, "churn").id != exp.id
    [event] = [e for e in audit.events(ctx.engine) if e.action == "experiment.rename"]
    assert (event.object_id, event.before, event.after) == (
        str(exp.id),
        {"name": "churn"},
        {"name": "churn-2026"},
    )
    experiments.rename_experiment(ctx.engine, exp.id, "churn-2026")  # its own name: no change


def test_a_rename_to_a_taken_name_or_of_a_deleted_experiment_is_refused(ctx: Context) -> None:
    exp = experiments.create_experiment(ctx.engine, "a")
    gone = experiments.create_experiment(ctx.engine, "gone")
    experiments.set_experiment_lifecycle(ctx.engine, gone.id, "deleted")
    with pytest.raises(Conflict, match="'Default' already exists"):
        experiments.rename_experiment(ctx.engine, exp.id, "Default")
    with pytest.raises(Conflict, match="'gone' already exists"):  # deleted ones keep theirs
        experiments.rename_experiment(ctx.engine, exp.id, "gone")
    with pytest.raises(InvalidInput, match="is deleted") as info:
        experiments.rename_experiment(ctx.engine, gone.id, "back")
    assert info.value.field == "experiment_id" and info.value.hint == "restore it first"
    for unknown in (987_654, 2**40, -1):
        with pytest.raises(NotFound, match=f"experiment {unknown} does not exist"):
            experiments.rename_experiment(ctx.engine, unknown, "x")
    for bad in ("", "  ", "a\nb", "a\x00b", "x" * 600):
        with pytest.raises(InvalidInput) as info:
            experiments.rename_experiment(ctx.engine, exp.id, bad)
        assert info.value.field == "experiment"
    assert experiments.get_experiment(ctx.engine, exp.id).name == "a"
    assert [e for e in audit.events(ctx.engine) if e.action == "experiment.rename"] == []


def test_run_lifecycle_update_delete_restore(ctx: Context) -> None:
    run = run_creation.create_run(
        ctx.engine, 0, name="baseline", tags={"team": "risk"}, actor="ada"
    )
    assert len(run.id) == 32
    assert run.status == "RUNNING"
    assert run.experiment == "Default"
    assert run.artifact_uri == f"mlflow-artifacts:/0/{run.id}/artifacts"
    assert run.tags == {"team": "risk"}
    ended = run_state.update_run(
        ctx.engine, run.id, status="FINISHED", end_time=now_ms(), actor="ada"
    )
    assert ended.status == "FINISHED"
    assert ended.end_time is not None and ended.end_time >= ended.start_time
    run_state.delete_run(ctx.engine, run.id, actor="ada")
    assert run_state.get_run(ctx.engine, run.id).lifecycle_stage == "deleted"
    with pytest.raises(InvalidInput, match="deleted"):
        run_data.log_batch(ctx.engine, run.id, params={"a": "1"})
    assert query.search_runs(ctx.engine).runs == []
    assert [r.id for r in query.search_runs(ctx.engine, view="deleted").runs] == [run.id]
    run_state.restore_run(ctx.engine, run.id, actor="ada")
    assert [r.id for r in query.search_runs(ctx.engine).runs] == [run.id]
    actions = [e.action for e in audit.events(ctx.engine, object_type="run")]
    assert actions == ["run.create", "run.update", "run.delete", "run.restore"]
    with pytest.raises(InvalidInput, match="unknown run status 'DONE'"):
        run_state.update_run(ctx.engine, run.id, status="DONE")
    with pytest.raises(NotFound, match="run 'f00' does not exist"):
        run_state.get_run(ctx.engine, "f00")


def test_a_renamed_run_s_name_tag_follows_its_name(ctx: Context) -> None:
    # A run the MLflow client made has the tag; a rename through /api/v1 (update_run) left
    # it on the old name, which MLflow clients then saw. A run without the tag gets none.
    tagged = run_creation.create_run(ctx.engine, 0, name="old", tags={"mlflow.runName": "old"})
    plain = run_creation.create_run(ctx.engine, 0, name="plain")
    assert run_state.update_run(ctx.engine, tagged.id, name="new").tags["mlflow.runName"] == "new"
    assert "mlflow.runName" not in run_state.update_run(ctx.engine, plain.id, name="p2").tags
    found = query.search_runs(ctx.engine, filter="tags.mlflow.runName = 'new'").runs
    assert [r.id for r in found] == [tagged.id]
    run_data.log_batch(ctx.engine, plain.id, tags={"mlflow.runName": "p3"})  # the other way
    assert run_state.get_run(ctx.engine, plain.id).name == "p3"


def test_random_run_names_and_parent_tag(ctx: Context) -> None:
    parent = run_creation.create_run(ctx.engine, 0)
    child = run_creation.create_run(ctx.engine, 0, parent_run_id=parent.id)
    assert parent.name and len(parent.name.split("-")) == 3
    assert child.parent_run_id == parent.id
    assert child.tags["mlflow.parentRunId"] == parent.id
    with pytest.raises(NotFound):
        run_creation.create_run(ctx.engine, 0, parent_run_id="0" * 32)


def test_param_relogged_same_value_is_ok_different_value_conflicts(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    run_data.log_batch(ctx.engine, run.id, params={"lr": "0.1", "model": "lgbm"})
    run_data.log_batch(ctx.engine, run.id, params={"lr": "0.1"})
    with pytest.raises(Conflict) as info:
        run_data.log_batch(ctx.engine, run.id, params={"depth": "3", "lr": "0.2"})
    message = str(info.value)
    assert "'lr'" in message and "'0.1'" in message and "'0.2'" in message
    # The batch was all or nothing: 'depth' was not written either.
    assert run_state.get_run(ctx.engine, run.id).params == {"lr": "0.1", "model": "lgbm"}
    with pytest.raises(Conflict, match="twice in one batch"):
        run_data.log_batch(ctx.engine, run.id, params=[("x", "1"), ("x", "2")])


def test_tags_overwrite_and_delete(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    run_data.set_tag(ctx.engine, run.id, "stage", "candidate")
    run_data.set_tag(ctx.engine, run.id, "stage", "champion")
    assert run_state.get_run(ctx.engine, run.id).tags["stage"] == "champion"
    run_data.delete_tag(ctx.engine, run.id, "stage")
    assert "stage" not in run_state.get_run(ctx.engine, run.id).tags
    with pytest.raises(NotFound, match="no tag 'stage'"):
        run_data.delete_tag(ctx.engine, run.id, "stage")


def test_metric_history_and_latest_follow_mlflow_rules(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    # Arrives out of order: the latest is the greatest step, then timestamp, then value.
    run_data.log_batch(
        ctx.engine,
        run.id,
        metrics=[Metric("loss", 0.5, 2000, 5), Metric("loss", 0.9, 1000, 1)],
    )
    run_data.log_batch(ctx.engine, run.id, metrics=[Metric("loss", 0.7, 1500, 3)])
    assert run_state.get_run(ctx.engine, run.id).metrics == {"loss": 0.5}
    run_data.log_batch(ctx.engine, run.id, metrics=[Metric("loss", 0.4, 1999, 5)])
    assert run_state.get_run(ctx.engine, run.id).metrics == {"loss": 0.5}  # older timestamp
    run_data.log_batch(ctx.engine, run.id, metrics=[Metric("loss", 0.6, 2000, 5)])
    assert run_state.get_run(ctx.engine, run.id).metrics == {"loss": 0.6}  # same, greater value
    history = run_data.get_metric_history(ctx.engine, run.id, "loss")
    assert history == [
        MetricPoint(1, 1000, 0.9),
        MetricPoint(3, 1500, 0.7),
        MetricPoint(5, 1999, 0.4),
        MetricPoint(5, 2000, 0.5),
        MetricPoint(5, 2000, 0.6),
    ]
    assert run_state.get_run(ctx.engine, run.id).latest_metrics["loss"] == MetricPoint(5, 2000, 0.6)
    assert run_data.get_metric_history(ctx.engine, run.id, "nothing") == []


def test_nan_and_inf_are_stored_as_mlflow_stores_them(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    run_data.log_batch(
        ctx.engine,
        run.id,
        metrics=[
            Metric("nan", math.nan, 1, 0),
            Metric("pinf", math.inf, 1, 0),
            Metric("ninf", -math.inf, 1, 0),
        ],
    )
    with ctx.engine.connect() as conn:
        rows = {
            r.key: (r.value, r.is_nan)
            for r in conn.execute(
                sa.select(latest_metrics).where(latest_metrics.c.run_id == run.id)
            )
        }
        history = {key: point.value for _r, key, point in stored_points(conn, [run.id])}
    assert rows == {"nan": (0.0, True), "pinf": (MAX_FLOAT, False), "ninf": (-MAX_FLOAT, False)}
    assert math.isnan(history.pop("nan"))  # the packed history keeps NaN as NaN
    assert history == {"pinf": MAX_FLOAT, "ninf": -MAX_FLOAT}
    got = run_state.get_run(ctx.engine, run.id).metrics
    assert math.isnan(got["nan"])
    assert got["pinf"] == MAX_FLOAT and got["ninf"] == -MAX_FLOAT
    assert math.isnan(run_data.get_metric_history(ctx.engine, run.id, "nan")[0].value)


def test_log_batch_validates_before_writing(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    with pytest.raises(InvalidInput, match="'abc', which is not a number"):
        run_data.log_batch(
            ctx.engine,
            run.id,
            metrics=[Metric("ok", 1.0, 1, 0), Metric("bad", "abc", 1, 0)],  # type: ignore[arg-type]
            params={"p": "1"},
        )
    with pytest.raises(InvalidInput, match="step must be an integer"):
        run_data.log_batch(ctx.engine, run.id, metrics=[Metric("ok", 1.0, 1, 1.5)])  # type: ignore[arg-type]
    record = run_state.get_run(ctx.engine, run.id)
    assert record.params == {} and record.metrics == {}
    with pytest.raises(NotFound):
        run_data.log_batch(ctx.engine, "0" * 32, params={"p": "1"})


def test_inputs_are_idempotent_and_a_version_cannot_change_digest(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    item = RunInput("dataset", "churn", "3", "ab" * 32, "training")
    lineage.log_inputs(ctx.engine, run.id, [item])
    lineage.log_inputs(ctx.engine, run.id, [item])
    assert run_state.get_run(ctx.engine, run.id).inputs == (item,)
    with pytest.raises(Conflict, match="digest"):
        lineage.log_inputs(ctx.engine, run.id, [RunInput("dataset", "churn", "3", "cd" * 32)])
    with pytest.raises(InvalidInput, match="name must be a non-empty string"):
        lineage.log_inputs(ctx.engine, run.id, [RunInput("dataset", "", "1", "ef" * 32)])


#: (input, field, what the message says): every part of an input is checked.
BAD_INPUTS = [
    (RunInput("dataset", "a\x00b", "1", "ab"), "name", "NUL"),
    (RunInput("dataset", "\x01\nb", "1", "ab"), "name", "control character"),
    (RunInput("dataset", "x" * 100_000, "1", "ab"), "name", "limit of 500"),
    (RunInput("dataset", "churn", "1", "a\x00"), "digest", "NUL"),
    (RunInput("dataset", "churn", "1", "d" * 129), "digest", "limit of 128"),
    (RunInput("s\x00", "churn", "1", "ab"), "kind", "NUL"),
    (RunInput("\x01\n", "churn", "1", "ab"), "kind", "control character"),
    (RunInput("k" * 51, "churn", "1", "ab"), "kind", "limit of 50"),
    (RunInput("dataset", "churn", "1\x1b[2J", "ab"), "version", "control character"),
    (RunInput("dataset", "churn", "v" * 201, "ab"), "version", "limit of 200"),
    (RunInput("dataset", "churn", "1", "ab", "c" * 101), "context", "limit of 100"),
    (RunInput("dataset", "churn", "1", "ab", "train\x00"), "context", "NUL"),
]


@pytest.mark.parametrize(("item", "field", "said"), BAD_INPUTS, ids=lambda v: repr(v)[:30])
def test_a_bad_input_is_refused_naming_its_field_and_nothing_is_stored(
    ctx: Context, item: RunInput, field: str, said: str
) -> None:
    # They were stored as sent on SQLite (returned by runs/get, printed by `runs show`).
    run = run_creation.create_run(ctx.engine, 0)
    good = RunInput("dataset", "churn", "1", "ab" * 32)
    with pytest.raises(InvalidInput, match=said) as info:
        lineage.log_inputs(ctx.engine, run.id, [good, item])
    assert info.value.field == field
    assert run_state.get_run(ctx.engine, run.id).inputs == ()


def test_an_input_at_the_limits_is_stored(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    item = RunInput("k" * 50, "n" * 499 + "\n", "v" * 200, "d" * 128, "c" * 100)
    lineage.log_inputs(ctx.engine, run.id, [item])
    assert run_state.get_run(ctx.engine, run.id).inputs == (item,)


def test_artifacts_map_paths_to_blobs(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    one = ctx.artifacts.put_bytes(b"one")
    two = ctx.artifacts.put_bytes(b"two")
    lineage.add_artifacts(
        ctx.engine,
        run.id,
        [ArtifactEntry("model/w.bin", one, 3), ArtifactEntry("model.txt", two, 3)],
    )
    lineage.add_artifacts(ctx.engine, run.id, [ArtifactEntry("model/w.bin", two, 3)])
    listed = lineage.list_artifacts(ctx.engine, run.id)
    assert [(a.path, a.digest) for a in listed] == [("model.txt", two), ("model/w.bin", two)]
    assert [a.path for a in lineage.list_artifacts(ctx.engine, run.id, "model")] == ["model/w.bin"]
    with pytest.raises(InvalidInput, match=r"'\.\.' segment"):
        lineage.add_artifacts(ctx.engine, run.id, [ArtifactEntry("../x", one, 3)])


def test_run_ids_starting_finds_the_runs_a_prefix_starts_and_no_neighbour(ctx: Context) -> None:
    # Ids around the digit boundaries of the range's upper end: ...09 -> ...0a, ...0f -> ...10.
    ids = {
        tail: run_with_id(ctx.engine, "prefixes", "abcdef" + tail + "0" * 24)
        for tail in ("09", "0a", "0f", "10")
    }
    twin = run_with_id(ctx.engine, "prefixes", "abcdef09" + "1" * 24)
    run_state.delete_run(ctx.engine, twin)  # deleted runs count: get_run finds them too
    assert run_state.run_ids_starting(ctx.engine, "abcdef09") == [ids["09"], twin]
    assert run_state.run_ids_starting(ctx.engine, "abcdef0a") == [ids["0a"]]
    assert run_state.run_ids_starting(ctx.engine, "abcdef0f") == [ids["0f"]]
    assert run_state.run_ids_starting(ctx.engine, "abcdef1") == [ids["10"]]
    assert run_state.run_ids_starting(ctx.engine, "abcdef0", limit=10) == [
        ids["09"],
        twin,
        ids["0a"],
        ids["0f"],
    ]
    assert run_state.run_ids_starting(ctx.engine, "abcdef0", limit=1) == [ids["09"]]
    assert run_state.run_ids_starting(ctx.engine, "abcdef2") == []
    assert run_state.run_ids_starting(ctx.engine, ids["10"][:31]) == [ids["10"]]


@pytest.mark.parametrize("bad", ["", "ABCDEF09", "abcdef0%", "abcdef_9", "a" * 32, 5], ids=repr)
def test_a_run_id_prefix_that_is_no_hex_start_of_an_id_is_refused(ctx: Context, bad: str) -> None:
    with pytest.raises(InvalidInput, match="lowercase hex digits") as caught:
        run_state.run_ids_starting(ctx.engine, bad)
    assert caught.value.field == "run_id"


def test_a_run_id_prefix_is_looked_up_on_the_primary_key_index(embedded_ctx: Context) -> None:
    """Not a scan of every run: SQLite's plan for the statement the store sends searches
    the key's index (PostgreSQL plans small tables as scans either way)."""
    engine = embedded_ctx.engine
    run_with_id(engine, "plans", "0123abcd" + "0" * 24)
    sent: list[tuple[str, Any]] = []

    def remember(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", remember)
    try:
        assert run_state.run_ids_starting(engine, "0123abcd") == ["0123abcd" + "0" * 24]
    finally:
        sa.event.remove(engine, "before_cursor_execute", remember)
    [(statement, params)] = [s for s in sent if "runs" in s[0]]
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
    details = " ".join(str(row[-1]) for row in plan)
    assert "SEARCH runs USING" in details and "INDEX" in details, details


def test_points_for_a_missing_or_deleted_run_are_refused_alike_on_an_engine_or_a_connection(
    ctx: Context,
) -> None:
    # log_batch reads the run's state with its metrics copy in one statement on SQLite (and
    # runs on a connection held open by the server): the errors must be require_active's,
    # nothing written, and the held connection usable after them.
    run = run_creation.create_run(ctx.engine, 0)
    run_data.log_batch(ctx.engine, run.id, metrics=[Metric("loss", 0.5, 10, 0)])
    gone = run_creation.create_run(ctx.engine, 0)
    run_state.delete_run(ctx.engine, gone.id)
    point = [Metric("loss", 0.25, 11, 1)]
    with ctx.engine.connect() as held:
        for bind in (ctx.engine, held):
            with pytest.raises(NotFound, match="run 'nope' does not exist"):
                run_data.log_batch(bind, "nope", metrics=point)
            with pytest.raises(InvalidInput, match=f"run {gone.id} is deleted") as info:
                run_data.log_batch(bind, gone.id, metrics=point, tags={"t": "x"})
            assert info.value.field == "run_id"
            assert not held.in_transaction()
        assert run_data.log_batch(held, run.id, metrics=point).stored == 1
        assert not held.in_transaction()
    assert run_state.get_run(ctx.engine, gone.id).metrics == {}
    assert "t" not in run_state.get_run(ctx.engine, gone.id).tags
    found = run_state.get_run(ctx.engine, run.id)
    assert found.metrics == {"loss": 0.25}
    assert run_data.get_metric_history(ctx.engine, run.id, "loss") == [
        MetricPoint(0, 10, 0.5),
        MetricPoint(1, 11, 0.25),
    ]


def test_a_point_logged_again_is_stored_once_whether_it_is_the_latest_or_older(
    ctx: Context,
) -> None:
    # log_batch skips the look for stored points when a series comes after its key's latest
    # point (the run's metrics copy): a repeat of the latest, or of an older point, must
    # still be found and dropped, and only new points counted.
    run = run_creation.create_run(ctx.engine, 0)

    def log(*points: tuple[float, int, int]) -> int:
        metrics = [Metric("loss", value, stamp, step) for value, stamp, step in points]
        return run_data.log_batch(ctx.engine, run.id, metrics=metrics).stored

    assert log((0.5, 10, 1)) == 1
    assert log((0.5, 10, 1)) == 0  # the latest point again
    assert log((0.7, 10, 1)) == 1  # the same step and time with another value
    assert log((0.7, 10, 1), (0.9, 11, 2)) == 1  # a batch reaching back to the latest
    assert log((0.5, 10, 1)) == 0  # an older point again
    assert log((0.1, 12, 3)) == 1  # past the latest
    assert log((0.1, 12, 3)) == 0
    assert log((math.nan, 13, 4)) == 1
    assert log((math.nan, 13, 4)) == 0  # NaN equals NaN, as MLflow stores it
    history = run_data.get_metric_history(ctx.engine, run.id, "loss")
    assert [(p.step, p.timestamp) for p in history] == [(1, 10), (1, 10), (2, 11), (3, 12), (4, 13)]
    assert [p.value for p in history][:4] == [0.5, 0.7, 0.9, 0.1]
    assert math.isnan(history[4].value)
    assert math.isnan(run_state.get_run(ctx.engine, run.id).metrics["loss"])


def test_a_run_created_and_ended_on_a_held_connection_is_one_transaction_each(
    ctx: Context,
) -> None:
    # The MLflow server creates and ends runs on a connection it holds open (bind): each
    # must be one transaction with its audit event, leave the connection outside any
    # transaction, and answer what a call on the engine answers.
    parent = run_creation.create_run(ctx.engine, 0, name="parent")
    with ctx.engine.connect() as held:
        child = run_creation.create_run(
            held, 0, name="child", tags={"team": "risk"}, parent_run_id=parent.id, actor="ada"
        )
        assert not held.in_transaction()
        assert run_state.get_run(ctx.engine, child.id) == child
        ended = run_state.update_run(held, child.id, status="FINISHED", end_time=5, actor="ada")
        assert not held.in_transaction()
        assert ended == run_state.get_run(ctx.engine, child.id)
        assert (ended.status, ended.end_time, ended.name) == ("FINISHED", 5, "child")
        with pytest.raises(NotFound, match="experiment 999 does not exist"):
            run_creation.create_run(held, 999, actor="ada")
        with pytest.raises(NotFound, match="run 'nope' does not exist"):
            run_creation.create_run(held, 0, parent_run_id="nope", actor="ada")
        with pytest.raises(NotFound, match="run 'nope' does not exist"):
            run_state.update_run(held, "nope", status="KILLED", actor="ada")
        assert not held.in_transaction()
        assert run_state.get_run(held, child.id) == ended  # a read on it too
        assert experiments.get_experiment(held, 0).name == "Default"
        assert experiments.get_experiment_by_name(held, "Default").id == 0
        assert not held.in_transaction()
    changes = [(e.action, e.object_id) for e in audit.events(ctx.engine)]
    assert changes == [("run.create", child.id), ("run.update", child.id)]
    assert len(query.search_runs(ctx.engine, experiment_ids=[0]).runs) == 2


def test_a_create_or_update_on_a_connection_that_does_not_wait_fails_whole_while_locked(
    tmp_path: Path,
) -> None:
    # The server's writes on its event loop use a connection whose busy timeout is 0: while
    # another process holds SQLite's write lock, they must fail at once with
    # BackendUnavailable, nothing written (the server then runs them again in its pool).
    uri = f"sqlite:///{tmp_path / 'meta.db'}"
    engine = create_engine_for(uri)
    upgrade(engine)
    run = run_creation.create_run(engine, 0, name="r")
    quick = create_engine_for(uri, busy_timeout_ms=0)
    holder = sqlite3.connect(tmp_path / "meta.db", isolation_level=None)
    try:
        with quick.connect() as held:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(BackendUnavailable):
                run_creation.create_run(held, 0, name="locked-out", actor="ada")
            with pytest.raises(BackendUnavailable):
                run_state.update_run(held, run.id, status="FINISHED", actor="ada")
            assert not held.in_transaction()
            holder.execute("COMMIT")
            assert run_state.get_run(engine, run.id).status == "RUNNING"
            assert [r.name for r in query.search_runs(engine, experiment_ids=[0]).runs] == ["r"]
            assert audit.events(engine) == []
            created = run_creation.create_run(held, 0, name="after", actor="ada")
            assert run_state.update_run(held, run.id, status="FINISHED", actor="ada").status == (
                "FINISHED"
            )
        assert run_state.get_run(engine, created.id).name == "after"
        assert [e.action for e in audit.events(engine)] == ["run.create", "run.update"]
    finally:
        holder.close()
        quick.dispose()
        engine.dispose()
