"""One SDK suite, four backends: embedded and remote (a real ``loopline server``), on
SQLite and PostgreSQL. Whatever a script does through ``ll.*`` and ``Run`` must behave the
same, errors included, whichever ``LOOPLINE_URI`` it runs under.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import loopline as ll
from loopline.core.artifacts import hash_bytes
from loopline.core.context import Context
from loopline.core.db import create_engine_for
from loopline.errors import Conflict, InvalidInput, NotFound
from loopline.tracking import run_state
from loopline.tracking.api import ENVIRONMENT_TAG, resolve_run_id
from loopline.tracking.backend import TrackingBackend, backend_for
from loopline.tracking.embedded import EmbeddedBackend
from loopline.tracking.entities import MetricPoint
from loopline.tracking.environment import ENVIRONMENT_ARTIFACT
from loopline.tracking.remote import RemoteBackend, RemoteSink
from loopline.tracking.run_handle import ERROR_TAG
from loopline.tracking.validation import MAX_FLOAT
from tests.tracking.backends import count_points, database, run_with_id, server

BACKENDS = ["embedded-sqlite", "embedded-postgresql", "remote-sqlite", "remote-postgresql"]


@pytest.fixture(scope="module", params=BACKENDS)
def backend_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str, Path]]:
    """(kind, LOOPLINE_URI, database URI, folder) shared by the module's tests."""
    kind, db = request.param.split("-")
    folder = tmp_path_factory.mktemp(request.param)
    with database(db, folder) as db_uri:
        if kind == "embedded":
            yield kind, db_uri, db_uri, folder
        else:
            with server(db_uri, folder) as url:
                yield kind, url, db_uri, folder


@pytest.fixture
def tracking(backend_env: tuple[str, str, str, Path]) -> Iterator[Context]:
    """The SDK pointed at the backend under test."""
    kind, uri, _db, folder = backend_env
    ctx = ll.init(uri=uri, artifacts=str(folder / "artifacts") if kind == "embedded" else None)
    yield ctx
    backend_for(ctx).close()
    ctx.close()


@pytest.fixture
def exp() -> str:
    """A fresh experiment name: tests share the module's store."""
    return f"exp-{uuid.uuid4().hex[:12]}"


def test_the_backend_follows_the_uri_scheme(
    tracking: Context, backend_env: tuple[str, str, str, Path]
) -> None:
    backend = backend_for(tracking)
    assert isinstance(backend, TrackingBackend)
    expected = RemoteBackend if backend_env[0] == "remote" else EmbeddedBackend
    assert type(backend) is expected
    assert backend_for(tracking) is backend  # one per context
    with pytest.raises(TypeError, match="abstract"):
        TrackingBackend()  # type: ignore[abstract]


def test_lifecycle_params_metrics_tags(tracking: Context, exp: str) -> None:
    with ll.start_run(experiment=exp, name="lgbm", tags={"team": "risk"}) as run:
        assert ll.active_run() is run
        assert run.status == "RUNNING" and run.end_time is None
        run.log_params({"model": "lgbm", "lr": 0.05})
        run.log_param("depth", 7)
        run.log_param("depth", 7)  # the same value again is a no-op
        run.log_metric("loss", 0.5)
        run.log_metrics({"loss": 0.25, "acc": 0.9}, step=1)
        run.set_tag("stage", "candidate")
        run.set_tags({"owner": "ada", "empty": None})
        assert run.metrics == {"acc": 0.9, "loss": 0.25}  # queued points count too
    assert ll.active_run() is None
    assert run.status == "FINISHED"
    assert run.end_time is not None and run.end_time >= run.start_time
    stored = ll.get_run(run.id)
    assert (stored.experiment, stored.name, stored.status) == (exp, "lgbm", "FINISHED")
    assert stored.params == {"model": "lgbm", "lr": "0.05", "depth": "7"}
    assert stored.metrics == {"acc": 0.9, "loss": 0.25}
    assert {"team": "risk", "stage": "candidate", "owner": "ada", "empty": None}.items() <= (
        stored.tags.items()
    )
    assert stored.user == tracking.settings.actor_name
    history = ll.metric_history(run.id, "loss")
    assert [(p.step, p.value) for p in history] == [(0, 0.5), (1, 0.25)]
    assert stored.to_dict()["params"]["lr"] == "0.05"


def test_failed_and_killed_runs_keep_what_was_logged(tracking: Context, exp: str) -> None:
    def train() -> None:
        raise ValueError("learning rate diverged")

    with pytest.raises(ValueError, match="diverged"), ll.start_run(experiment=exp) as failed:
        failed.log_metric("loss", 3.0)
        train()
    with pytest.raises(KeyboardInterrupt), ll.start_run(experiment=exp) as killed:
        raise KeyboardInterrupt
    assert failed.status == "FAILED" and killed.status == "KILLED"
    error = failed.tags[ERROR_TAG] or ""
    assert error.startswith("ValueError: learning rate diverged") and "in train" in error
    assert failed.tags[f"{ERROR_TAG}.type"] == "ValueError"
    assert ll.get_run(failed.id).metrics == {"loss": 3.0}


def test_nested_runs_record_their_parent(tracking: Context, exp: str) -> None:
    with ll.start_run(experiment=exp) as parent:
        with ll.start_run(name="trial-1", nested=True) as child:
            assert child.parent_run_id == parent.id
        with ll.start_run(name="trial-2"):
            pass
    children = ll.search_runs(exp, filter=f"tags.`mlflow.parentRunId` = '{parent.id}'")
    assert sorted(r.name or "" for r in children) == ["trial-1", "trial-2"]
    assert {r.experiment for r in children} == {exp}


def test_nan_and_infinities_survive_the_round_trip(tracking: Context, exp: str) -> None:
    with ll.start_run(experiment=exp) as run:
        run.log_metric("nan", math.nan, step=0)
        run.log_metrics({"pos": math.inf, "neg": -math.inf, "nan": 1.0}, step=1)
        run.log_metric("nan", math.nan, step=2)
    assert [p.value for p in ll.metric_history(run.id, "pos")] == [MAX_FLOAT]
    assert [p.value for p in ll.metric_history(run.id, "neg")] == [-MAX_FLOAT]
    values = [p.value for p in ll.metric_history(run.id, "nan")]
    assert math.isnan(values[0]) and values[1] == 1.0 and math.isnan(values[2])
    assert math.isnan(ll.get_run(run.id).metrics["nan"])
    found = ll.search_runs(exp, filter="metrics.pos > 1e300")
    assert [r.id for r in found] == [run.id]


def test_explicit_steps_and_timestamps(tracking: Context, exp: str) -> None:
    with ll.start_run(experiment=exp) as run:
        run.log_metric("m", 1.0, step=10, timestamp=1_000)
        run.log_metric("m", 2.0, step=5, timestamp=2_000)
        run.log_metrics({"m": 3.0}, step=10, timestamp=500)
    assert ll.metric_history(run.id, "m") == [
        MetricPoint(5, 2000, 2.0),
        MetricPoint(10, 500, 3.0),
        MetricPoint(10, 1000, 1.0),
    ]
    assert run.metrics == {"m": 1.0}


def test_a_point_logged_twice_is_stored_once(tracking: Context, exp: str) -> None:
    with ll.start_run(experiment=exp) as run:
        run.log_metric("m", 1.0, step=1, timestamp=1_000)
        run.flush()
        run.log_metric("m", 1.0, step=1, timestamp=1_000)  # already stored
        run.log_metrics({"m": 1.0, "n": math.nan}, step=1, timestamp=1_000)  # and queued twice
        run.log_metrics({"m": 2.0, "n": math.nan}, step=1, timestamp=1_000)
    history = ll.metric_history(run.id, "m")
    assert history == [MetricPoint(1, 1000, 1.0), MetricPoint(1, 1000, 2.0)]
    assert [math.isnan(p.value) for p in ll.metric_history(run.id, "n")] == [True]
    latest = ll.get_run(run.id).metrics
    assert latest["m"] == 2.0 and math.isnan(latest["n"])


def test_search_filters_orders_and_pages(tracking: Context, exp: str) -> None:
    for i in range(5):
        with ll.start_run(experiment=exp, name=f"r{i}") as run:
            run.log_params({"model": "lgbm" if i % 2 else "rf"})
            run.log_metric("auc", i / 10)
    page = ll.search_runs(
        exp, filter="params.model = 'rf'", order_by="metrics.auc DESC", max_results=2
    )
    assert [r.name for r in page] == ["r4", "r2"] and page.next_page_token is not None
    rest = ll.search_runs(
        exp,
        filter="params.model = 'rf'",
        order_by=["metrics.auc DESC"],
        page_token=page.next_page_token,
    )
    assert [r.name for r in rest] == ["r0"] and rest.next_page_token is None
    both = ll.search_runs([exp], filter="metrics.auc >= 0.1 and attributes.status = 'FINISHED'")
    assert len(both) == 4
    assert ll.search_runs(exp, view="deleted") == []
    with pytest.raises(InvalidInput, match="position 13") as info:
        ll.search_runs(exp, filter="metrics.auc >> 0.5")
    assert info.value.field == "filter" and "^" in info.value.message
    with pytest.raises(NotFound, match="no experiment named 'nope-"):
        ll.search_runs(f"nope-{exp}")
    with pytest.raises(InvalidInput, match="page token") as bad_token:
        ll.search_runs(exp, page_token="not-a-token")
    assert bad_token.value.field == "page_token"
    with pytest.raises(InvalidInput, match="max_results"):
        ll.search_runs(exp, max_results=0)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"experiment": 5}, "experiment"),
        ({"experiment": ["Default", 5]}, "experiment"),
        ({"filter": 5}, "filter"),
        ({"order_by": [None]}, "order_by"),
        ({"order_by": 5}, "order_by"),
        ({"max_results": True}, "max_results"),  # a bool is no count: it searched 1 run
        ({"max_results": 2.0}, "max_results"),
        ({"page_token": 5}, "page_token"),
        ({"view": "DELETED"}, "view"),
    ],
)
def test_search_arguments_of_a_wrong_type_are_invalid_input(
    tracking: Context, arguments: dict[str, object], field: str
) -> None:
    # Embedded, they raised AttributeError or TypeError from deep inside (or took True
    # as 1); remote, pydantic's ValidationError: the same InvalidInput on both now.
    with pytest.raises(InvalidInput) as info:
        ll.search_runs(**{"experiment": "Default", **arguments})  # type: ignore[arg-type]
    assert info.value.field == field


def test_a_bad_order_by_item_hints_at_order_by(tracking: Context) -> None:
    with pytest.raises(InvalidInput, match="position 9") as info:
        ll.search_runs("Default", order_by="metrics.a, metrics.b")
    assert info.value.field == "order_by" and "['metrics.auc DESC'" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"experiment": 5}, "experiment"),
        ({"experiment": ""}, "experiment"),  # was the parent's experiment, or Default
        ({"name": 5}, "name"),
        ({"tags": [("team", "risk")]}, "tags"),
        ({"tags": {1: "x"}}, "tag"),
    ],
)
def test_start_run_arguments_of_a_wrong_type_are_invalid_input(
    tracking: Context, arguments: dict[str, object], field: str
) -> None:
    # Embedded they raised TypeError; remote, pydantic's ValidationError.
    with pytest.raises(InvalidInput) as info:
        ll.start_run(**arguments)  # type: ignore[arg-type]
    assert info.value.field == field
    assert ll.active_run() is None


def test_logging_arguments_of_a_wrong_type_are_invalid_input(tracking: Context, exp: str) -> None:
    import numpy as np

    with ll.start_run(experiment=exp) as run:
        for call, field in [
            (lambda: run.log_metrics([("auc", 0.9)]), "metrics"),  # type: ignore[arg-type]
            (lambda: run.log_params([("lr", "0.1")]), "params"),  # type: ignore[arg-type]
            (lambda: run.set_tags(["team"]), "tags"),  # type: ignore[arg-type]
            # a bool is no number (the REST routes refuse it): it was stored as 1.0
            (lambda: run.log_metric("flag", True), "metrics.flag"),
            (lambda: run.log_metric("flag", np.bool_(True)), "metrics.flag"),
            (lambda: run.log_metrics({"flag": False}), "metrics.flag"),
        ]:
            with pytest.raises(InvalidInput) as info:
                call()
            assert info.value.field == field
        run.log_metric("auc", 0.9)
    assert ll.get_run(run.id).metrics == {"auc": 0.9}
    for key in (None, 5, ""):  # they found no points, and said nothing
        with pytest.raises(InvalidInput) as no_key:
            ll.metric_history(run.id, key)  # type: ignore[arg-type]
        assert no_key.value.field == "metric"


def test_the_run_name_tag_renames_the_run(tracking: Context, exp: str) -> None:
    # As in MLflow: the SDK's set_tag("mlflow.runName") left the name as it was, so
    # run.name, `loopline runs` and the UI showed one name and MLflow clients another.
    with ll.start_run(experiment=exp, tags={"mlflow.runName": "from-tag"}) as tagged:
        pass
    assert ll.get_run(tagged.id).name == "from-tag"
    with ll.start_run(experiment=exp, name="first") as run:
        run.set_tag("mlflow.runName", "before-write")  # still buffered with the new run
        assert ll.get_run(run.id).name == "before-write"
        run.set_tag("mlflow.runName", "after-write")
        assert run.name == "after-write"
    found = ll.search_runs(exp, filter="attributes.run_name = 'after-write'")
    assert [r.id for r in found] == [run.id]
    assert found[0].tags["mlflow.runName"] == "after-write"
    with pytest.raises(InvalidInput, match="differ") as both:
        ll.start_run(experiment=exp, name="one", tags={"mlflow.runName": "other"})
    assert both.value.field == "name"
    long = ll.start_run(experiment=exp, name="kept")
    with pytest.raises(InvalidInput, match="run name is 300 characters"):
        long.set_tag("mlflow.runName", "n" * 300)  # a tag may be longer than a name
    long.end()
    assert ll.get_run(long.id).name == "kept"


def test_errors_name_what_is_wrong(tracking: Context, exp: str) -> None:
    with pytest.raises(NotFound, match="run 'abc123' does not exist"):
        ll.get_run("abc123")
    with pytest.raises(NotFound, match="'abc123'"):
        ll.metric_history("abc123", "loss")
    with ll.start_run(experiment=exp) as run:
        run.log_param("lr", 0.1)
        with pytest.raises(Conflict, match=r"'lr' of run \w+ is already '0\.1'"):
            run.log_param("lr", 0.2)
        with pytest.raises(InvalidInput, match=r"'\.\.' segment") as up:
            run.set_tag("../up", "x")
        assert up.value.field == "tag"
        with pytest.raises(InvalidInput, match="control character"):
            run.log_param("a\nb", 1)
        with pytest.raises(InvalidInput, match="over the limit of 8000") as long_tag:
            run.set_tag("notes", "x" * 10_000)
        assert long_tag.value.field == "tags.notes"
        with pytest.raises(InvalidInput, match="reserved"):
            run.set_tag("loopline.ingest.0123456789abcdef", "9")
        with pytest.raises(InvalidInput, match="not a number"):
            run.log_metric("loss", "high")  # type: ignore[arg-type]
    assert ll.get_run(run.id).params == {"lr": "0.1"}


@pytest.mark.parametrize(
    "suffix",
    ["?x=1", "#frag", "/", "/artifacts", "/../..", "%2F", " x", "?key=zz&"],
    ids=["query", "fragment", "slash", "route", "dotdot", "percent", "space", "history-query"],
)
def test_an_id_that_only_starts_like_a_run_id_is_not_found(
    tracking: Context, exp: str, suffix: str
) -> None:
    with ll.start_run(experiment=exp) as run:
        run.log_metric("m", 1.0)
    odd = run.id + suffix
    with pytest.raises(NotFound, match=f"run {re.escape(repr(odd))} does not exist"):
        ll.get_run(odd)
    with pytest.raises(NotFound, match=f"run {re.escape(repr(odd))} does not exist"):
        ll.metric_history(odd, "m")


@pytest.mark.parametrize("odd", ["", ".", "..", "search", "%2e%2e", 5], ids=repr)
def test_odd_run_ids_are_not_found_naming_the_id(tracking: Context, odd: str) -> None:
    with pytest.raises(NotFound, match=f"run {re.escape(repr(odd))} does not exist"):
        ll.get_run(odd)


def test_a_run_id_prefix_resolves_to_its_run_in_every_mode(
    tracking: Context, exp: str, backend_env: tuple[str, str, str, Path]
) -> None:
    # Two runs whose ids share 10 characters (the store draws random ids: these are written
    # with chosen ones into the backend's database), and a third that differs at the 10th.
    base = uuid.uuid4().hex[:9]
    remote = backend_env[0] == "remote"
    engine = create_engine_for(backend_env[2]) if remote else tracking.engine
    try:
        twins = [run_with_id(engine, exp, base + digit * 23) for digit in "01"]
        other = run_with_id(engine, exp, base + "f" * 23)
        run_state.delete_run(engine, other)  # get_run shows a deleted run: a prefix finds it
    finally:
        if remote:
            engine.dispose()
    assert resolve_run_id(twins[0][:10]) == twins[0]
    assert resolve_run_id(other[:10]) == other
    assert resolve_run_id(other) == other
    with pytest.raises(InvalidInput, match=f"prefix '{base}' is ambiguous") as caught:
        resolve_run_id(base)
    assert caught.value.field == "run_id" and "more characters" in (caught.value.hint or "")
    assert twins[0] in str(caught.value) and twins[1] in str(caught.value)
    with pytest.raises(InvalidInput, match="too short: give at least 8") as short:
        resolve_run_id(base[:7], field="uri")
    assert short.value.field == "uri"
    with pytest.raises(NotFound, match="no run id starts with it"):
        resolve_run_id(("0" if base[0] != "0" else "1") + base[1:] + "0")
    # Not a hex prefix: given back unchanged for get_run to judge (NotFound), as before.
    for text in ("nope", other[:10].upper(), other + "0", "3f2a-9c0d"):
        assert resolve_run_id(text) == text
        with pytest.raises(NotFound, match="does not exist"):
            ll.get_run(text)


def test_bad_arguments_are_invalid_input_in_every_mode(tracking: Context, exp: str) -> None:
    with ll.start_run(experiment=exp) as run:
        run.flush()  # written: later calls go to the backend, not the run's buffer
        with pytest.raises(InvalidInput, match="tag key 5 must be a non-empty string") as tag:
            run.set_tag(5, "x")  # type: ignore[arg-type]
        assert tag.value.field == "tag"
        with pytest.raises(InvalidInput, match="param key None must be") as param:
            run.log_params({None: 1})  # type: ignore[dict-item]
        assert param.value.field == "param"
        run.log_metric("m", 1.0)
        with pytest.raises(InvalidInput, match="unknown run status 'DONE'") as status:
            run.end("DONE")
        assert status.value.field == "status"
        assert ll.get_run(run.id).status == "RUNNING"  # still open, its point still queued
    assert ll.get_run(run.id).status == "FINISHED"
    assert ll.get_run(run.id).metrics == {"m": 1.0}


def test_artifacts_files_folders_and_dicts(tracking: Context, exp: str, tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "model" / "sub").mkdir()
    (tmp_path / "model" / "sub" / "vocab.txt").write_text("a\nb\n")
    (tmp_path / "report.md").write_text("# report\n")
    with ll.start_run(experiment=exp) as run:
        (entry,) = run.log_artifact(tmp_path / "report.md")
        run.log_artifact(tmp_path / "model", artifact_path="outputs")
        cfg = run.log_dict({"features": ["age", "plan"]}, "config/features.json")
        with pytest.raises(InvalidInput, match="does not exist"):
            run.log_artifact(tmp_path / "missing.bin")
        with pytest.raises(InvalidInput, match=r"'\.\.' segment"):
            run.log_artifact(tmp_path / "report.md", artifact_path="../up")
    assert entry.digest == hash_bytes(b"# report\n")
    found = {a.path: a for a in run.artifacts}
    assert set(found) == {
        ENVIRONMENT_ARTIFACT,
        "report.md",
        "outputs/model/weights.bin",
        "outputs/model/sub/vocab.txt",
        "config/features.json",
    }
    assert found["outputs/model/weights.bin"].size == 10240
    assert run.read_artifact("outputs/model/sub/vocab.txt") == b"a\nb\n"
    assert orjson.loads(run.read_artifact(cfg.path)) == {"features": ["age", "plan"]}
    dest = run.download_artifact("outputs/model/weights.bin", tmp_path / "out" / "w.bin")
    assert dest.read_bytes() == bytes(range(256)) * 40
    env = found[ENVIRONMENT_ARTIFACT]
    assert run.tags[ENVIRONMENT_TAG] == env.digest
    assert "packages" in orjson.loads(run.read_artifact(ENVIRONMENT_ARTIFACT))
    with pytest.raises(NotFound, match=r"no artifact 'nope\.txt'"):
        run.read_artifact("nope.txt")


def test_a_logged_folder_follows_links_inside_it_and_refuses_links_out(
    tracking: Context, exp: str, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    (model / "weights").mkdir(parents=True)
    (model / "weights" / "w.bin").write_bytes(b"w" * 100)
    (model / "latest").symlink_to("weights")  # a folder link that stays inside
    (model / "card.md").symlink_to("weights/w.bin")  # a file link that stays inside
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.txt").write_text("not for the run")
    with ll.start_run(experiment=exp) as run:
        stored = run.log_artifact(model)
        assert [e.path for e in stored] == [
            "model/card.md",
            "model/latest/w.bin",
            "model/weights/w.bin",
        ]
        (model / "ext").symlink_to("../elsewhere")
        with pytest.raises(InvalidInput, match=r"model/ext is a symlink to .*elsewhere, outside"):
            run.log_artifact(model, artifact_path="again")
        (model / "ext").unlink()
        (model / "weights" / "up").symlink_to("..")  # back to model/: endless
        with pytest.raises(InvalidInput, match=r"weights/up is a symlink .* contains it"):
            run.log_artifact(model, artifact_path="again")
    assert {a.path for a in run.artifacts} == {
        ENVIRONMENT_ARTIFACT,
        "model/card.md",
        "model/latest/w.bin",
        "model/weights/w.bin",
    }
    assert run.read_artifact("model/latest/w.bin") == b"w" * 100


def test_inputs_record_lineage(tracking: Context, exp: str) -> None:
    digest = "9f" * 32
    with ll.start_run(experiment=exp) as run:
        run.log_input("dataset", "churn", 3, digest, context="training")
        run.log_input("dataset", "churn", "3", digest, context="training")  # idempotent
        with pytest.raises(Conflict, match="digest"):
            run.log_input("dataset", "churn", "3", "ab" * 32)
    (item,) = run.inputs
    assert (item.kind, item.name, item.version, item.digest, item.context) == (
        "dataset",
        "churn",
        "3",
        digest,
        "training",
    )
    assert [r.id for r in ll.search_runs(exp, filter="datasets.name = 'churn'")] == [run.id]


def test_many_points_are_stored_exactly_once(
    tracking: Context,
    exp: str,
    backend_env: tuple[str, str, str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(RemoteSink, "max_batch_rows", 4_000)  # several batches per flush
    steps, keys = 2_500, 10
    assert steps * keys > 2 * RemoteSink.max_batch_rows
    with ll.start_run(experiment=exp) as run:
        for step in range(steps):
            run.log_metrics({f"k{k}": step * 10 + k for k in range(keys)}, step=step)
        run.flush()
        assert run.metrics == {f"k{k}": (steps - 1) * 10 + k for k in range(keys)}
        for step in range(100):  # left queued: the end of the run writes them
            run.log_metric("tail", step, step=step)
    counts, dupes = count_points(backend_env[2], [run.id])
    assert counts == {run.id: steps * keys + 100}
    assert dupes == []
    assert [p.step for p in ll.metric_history(run.id, "tail")] == list(range(100))
