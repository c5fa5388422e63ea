"""The unmodified MLflow client, end to end, against a real `loopline server` process."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import loopline  # noqa: E402
from tests.cli_run import run_cli  # noqa: E402
from tests.server.conftest import mlflow_client_on  # noqa: E402
from tests.tracking.backends import database, server  # noqa: E402

# MLflow's own warnings (about its type hints, its telemetry) are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:mlflow")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(server URL, database URI): one server per backend for the module, as starting one
    takes seconds. The tests share it without seeing each other's data: each makes its own
    runs, and only one makes the experiment "churn" and the registered model "churn-clf"."""
    folder = tmp_path_factory.mktemp(request.param)
    with database(request.param, folder) as db_uri, server(db_uri, folder) as url:
        yield url, db_uri


@pytest.fixture
def tracking(served: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    server_url = served[0]
    with mlflow_client_on(server_url, monkeypatch) as client:
        yield client


def test_runs_params_metrics_tags_and_search(
    tracking: MlflowClient, served: tuple[str, str], tmp_path: Path
) -> None:
    db_uri = served[1]
    exp_id = mlflow.create_experiment("churn")
    assert tracking.get_experiment_by_name("churn").experiment_id == exp_id
    mlflow.set_experiment("churn")
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"model": "lgbm", "depth": 5})
        mlflow.set_tags({"team": "growth"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("weird", math.nan)
        tracking.log_batch(
            parent.info.run_id,
            metrics=[Metric("auc", 0.91, 0, 0), Metric("inf", math.inf, 0, 0)],
            params=[Param("lr", "0.1")],
            tags=[RunTag("stage", "dev")],
        )
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("child_metric", 2.0)
    with mlflow.start_run(run_name="other"):
        mlflow.log_params({"model": "rf"})
        mlflow.log_metric("auc", 0.7)

    run = tracking.get_run(parent.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"model": "lgbm", "depth": "5", "lr": "0.1"}
    assert run.data.metrics["auc"] == pytest.approx(0.91)
    assert math.isnan(run.data.metrics["weird"]) and run.data.metrics["inf"] > 1e300
    assert run.data.tags["team"] == "growth" and run.data.tags["stage"] == "dev"
    history = tracking.get_metric_history(parent.info.run_id, "loss")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    assert tracking.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id

    found = mlflow.search_runs(
        [exp_id],
        "metrics.auc > 0.8 and params.model = 'lgbm'",
        order_by=["metrics.auc DESC"],
        output_format="list",
    )
    assert [r.info.run_id for r in found] == [parent.info.run_id]

    with pytest.raises(MlflowException):  # a param re-logged with another value
        tracking.log_param(parent.info.run_id, "model", "xgb")

    # What the MLflow client logged is what Loopline's SDK and CLI read.
    loopline.init(uri=db_uri, artifacts=str(tmp_path / "unused"))
    ours = loopline.get_run(parent.info.run_id)
    assert ours.params["model"] == "lgbm" and ours.metrics["auc"] == pytest.approx(0.91)
    assert [p[0] for p in loopline.metric_history(parent.info.run_id, "loss")] == [0, 1, 2, 3, 4]
    cli = run_cli(
        ["runs", "show", parent.info.run_id, "--json"],
        env={**os.environ, "LOOPLINE_URI": db_uri},
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert "lgbm" in cli.stdout


def test_artifacts_round_trip(tracking: MlflowClient, tmp_path: Path) -> None:
    src = tmp_path / "report.txt"
    src.write_text("hello artifacts")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.csv").write_text("x,y\n1,2\n")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(src))
        mlflow.log_artifacts(str(tmp_path / "plots"), artifact_path="plots")
        mlflow.log_dict({"k": 1}, "config/params.json")
    names = sorted(f.path for f in tracking.list_artifacts(run.info.run_id))
    assert names == ["config", "plots", "report.txt"]
    assert [f.path for f in tracking.list_artifacts(run.info.run_id, "plots")] == ["plots/a.csv"]
    out = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="report.txt", dst_path=str(tmp_path / "dl")
        )
    )
    assert out.read_text() == "hello artifacts"
    assert mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/config/params.json") == {"k": 1}


def test_log_register_load_and_aliases(tracking: MlflowClient) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    with mlflow.start_run() as run:
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("odd", math.nan, step=0)
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name="churn-clf", input_example=X[:2]
        )
        # a point sent with a model id for the first time is new: kept
        mlflow.log_metric("loss", 0.1, step=3, model_id=info.model_id)
    # MLflow 3's log_model sends the run's points at the model's step again, with the
    # model's id; MLflow's server keeps one copy of a point, and so must we.
    history = tracking.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1 / 3), (3, 0.1)]
    assert len(tracking.get_metric_history(run.info.run_id, "odd")) == 1
    version = tracking.get_model_version("churn-clf", "1")
    # The client sends only the logged model's id: the server records the run that logged it.
    assert version.run_id == run.info.run_id
    found = tracking.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert [str(v.version) for v in found] == ["1"]
    loaded = mlflow.pyfunc.load_model("models:/churn-clf/1")
    assert (loaded.predict(X[:20]) == model.predict(X[:20])).all()
    tracking.set_registered_model_alias("churn-clf", "champion", "1")
    assert tracking.get_model_version_by_alias("churn-clf", "champion").version == "1"
    by_alias = mlflow.pyfunc.load_model("models:/churn-clf@champion")
    assert (by_alias.predict(X[:5]) == model.predict(X[:5])).all()


def test_unknown_run_is_404(tracking: MlflowClient) -> None:
    with pytest.raises(MlflowException) as info:
        tracking.get_run("0" * 32)
    assert info.value.get_http_status_code() == 404


def test_experiment_search_orders_and_like_is_case_sensitive(tracking: MlflowClient) -> None:
    ids = {name: tracking.create_experiment(name) for name in ("xs-b", "xs-a", "xs-c", "xs-A")}
    names = [e.name for e in tracking.search_experiments(filter_string="name LIKE 'xs-%'")]
    assert names == ["xs-A", "xs-c", "xs-a", "xs-b"]  # MLflow's default: newest first
    asc = tracking.search_experiments(filter_string="name LIKE 'xs-%'", order_by=["name ASC"])
    assert [e.name for e in asc] == ["xs-A", "xs-a", "xs-b", "xs-c"]
    assert [e.name for e in tracking.search_experiments(filter_string="name LIKE 'xs-a'")] == [
        "xs-a"
    ]
    found = tracking.search_experiments(filter_string="name ILIKE 'xs-a'", order_by=["name"])
    assert [e.name for e in found] == ["xs-A", "xs-a"]
    found = tracking.search_experiments(
        filter_string=f"experiment_id = '{ids['xs-c']}'", max_results=1
    )
    assert [e.name for e in found] == ["xs-c"]
    page = tracking.search_experiments(
        filter_string="name LIKE 'xs-%'", order_by=["name DESC"], max_results=3
    )
    rest = tracking.search_experiments(
        filter_string="name LIKE 'xs-%'",
        order_by=["name DESC"],
        max_results=3,
        page_token=page.token,
    )
    assert [e.name for e in [*page, *rest]] == ["xs-c", "xs-b", "xs-a", "xs-A"]
    with pytest.raises(MlflowException, match="order_by 'color' is not supported"):
        tracking.search_experiments(order_by=["color"])


def test_the_run_name_is_a_tag_filters_find_and_time_zero_is_kept(
    tracking: MlflowClient,
) -> None:
    exp = tracking.create_experiment("run-names")
    run = tracking.create_run(exp, run_name="first")
    assert tracking.get_run(run.info.run_id).data.tags["mlflow.runName"] == "first"

    def named(name: str) -> list[str]:
        found = tracking.search_runs([exp], f"tags.mlflow.runName = '{name}'")
        return [r.info.run_name for r in found]

    assert named("first") == ["first"]
    tracking.update_run(run.info.run_id, name="second")
    assert named("second") == ["second"] and named("first") == []
    # a timestamp of 0 is a time (1970), not "now"
    tracking.log_metric(run.info.run_id, "at_zero", 1.0, timestamp=0)
    tracking.log_batch(run.info.run_id, metrics=[Metric("batch_zero", 1.0, 0, 0)])
    for key in ("at_zero", "batch_zero"):
        assert [m.timestamp for m in tracking.get_metric_history(run.info.run_id, key)] == [0]


def test_dataset_inputs_read_back_as_logged(tracking: MlflowClient) -> None:
    import pandas as pd

    frame = pd.DataFrame({"x": [1, 2], "y": [3, 4]})
    dataset = mlflow.data.from_pandas(frame, source="s3://bucket/train.csv", name="train")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training", tags={"split": "train"})
    (logged,) = tracking.get_run(run.info.run_id).inputs.dataset_inputs
    assert logged.dataset.name == "train" and logged.dataset.digest == dataset.digest
    assert logged.dataset.source == dataset.source.to_json()
    assert logged.dataset.schema == dataset.to_dict()["schema"]
    assert logged.dataset.profile == dataset.to_dict()["profile"]
    assert {t.key: t.value for t in logged.tags} == {
        "mlflow.data.context": "training",
        "split": "train",
    }
    assert mlflow.data.get_source(logged).uri == "s3://bucket/train.csv"


def test_deleted_artifacts_are_gone(tracking: MlflowClient) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    with mlflow.start_run() as run:
        mlflow.log_text("a", "notes/a.txt")
        mlflow.log_text("b", "notes/b.txt")
        mlflow.log_text("c", "keep.txt")
    repo = get_artifact_repository(run.info.artifact_uri)
    repo.delete_artifacts("notes/a.txt")
    listed = [f.path for f in tracking.list_artifacts(run.info.run_id, "notes")]
    assert listed == ["notes/b.txt"]
    with pytest.raises(MlflowException):
        mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes/a.txt")
    repo.delete_artifacts("notes")
    assert [f.path for f in tracking.list_artifacts(run.info.run_id)] == ["keep.txt"]


def test_an_experiment_tag_is_deleted(tracking: MlflowClient) -> None:
    # The route did not exist: ENDPOINT_NOT_FOUND (404) from delete_experiment_tag.
    exp = tracking.create_experiment("untagged", tags={"team": "risk", "keep": "yes"})
    tracking.delete_experiment_tag(exp, "team")
    assert tracking.get_experiment(exp).tags == {"keep": "yes"}
    with pytest.raises(MlflowException, match="has no tag 'team'") as info:
        tracking.delete_experiment_tag(exp, "team")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as info:
        tracking.delete_experiment_tag("987654", "keep")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_an_experiment_is_renamed_as_in_mlflow(tracking: MlflowClient) -> None:
    # experiments/update was ENDPOINT_NOT_FOUND.
    exp = tracking.create_experiment("to-rename")
    run = tracking.create_run(exp).info.run_id
    tracking.rename_experiment(exp, "renamed")
    assert tracking.get_experiment_by_name("renamed").experiment_id == exp
    assert tracking.get_experiment_by_name("to-rename") is None
    assert [r.info.run_id for r in tracking.search_runs([exp])] == [run]
    tracking.create_experiment("taken")
    with pytest.raises(MlflowException, match="'taken' already exists") as info:
        tracking.rename_experiment(exp, "taken")
    assert info.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as info:
        tracking.rename_experiment("987654", "nowhere")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    tracking.delete_experiment(exp)
    with pytest.raises(MlflowException, match="restore it first") as info:
        tracking.rename_experiment(exp, "again")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    tracking.restore_experiment(exp)
    assert tracking.get_experiment(exp).name == "renamed"


def test_a_param_changed_or_repeated_is_invalid_as_in_mlflow(
    tracking: MlflowClient, served: tuple[str, str]
) -> None:
    # MLflow answers INVALID_PARAMETER_VALUE (the client raises it with the explanation);
    # Loopline's routes said RESOURCE_ALREADY_EXISTS (409).
    import httpx

    run_id = tracking.create_run(tracking.create_experiment("params-once")).info.run_id
    tracking.log_param(run_id, "lr", "0.1")
    tracking.log_param(run_id, "lr", "0.1")  # the same value again is fine
    with pytest.raises(MlflowException, match=r"'lr'.*already '0\.1'") as info:
        tracking.log_param(run_id, "lr", "0.2")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as info:
        tracking.log_batch(run_id, params=[Param("lr", "0.3")])
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    for params in ([Param("depth", "3"), Param("depth", "4")], [Param("d", "3"), Param("d", "3")]):
        with pytest.raises(MlflowException, match="Duplicate parameter keys") as info:
            tracking.log_batch(run_id, params=params)
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert tracking.get_run(run_id).data.params == {"lr": "0.1"}
    # Loopline's own API keeps its answer: a conflict with what is stored.
    changed = httpx.post(
        f"{served[0]}/api/v1/runs/{run_id}/log-batch", json={"params": {"lr": "0.4"}}, timeout=30
    )
    assert changed.status_code == 409 and changed.json()["error"]["code"] == "CONFLICT"


def test_metric_history_bulk_interval_samples_each_run_as_mlflow(
    tracking: MlflowClient, served: tuple[str, str]
) -> None:
    import requests

    # what the MLflow UI's charts ask for: one metric of several runs, sampled evenly
    exp = tracking.create_experiment("bulk-interval")
    runs = [tracking.create_run(exp).info.run_id for _ in range(2)]
    steps = {runs[0]: range(0, 100), runs[1]: range(0, 10)}
    for run_id, span in steps.items():
        metrics = [Metric("loss", 1.0 / (s + 1), 1_000 + s, s) for s in span]
        tracking.log_batch(run_id, metrics=metrics)
    url = f"{served[0]}/api/2.0/mlflow/metrics/get-history-bulk-interval"

    def ask(**params: object) -> requests.Response:
        return requests.get(url, params={"metric_key": "loss", **params}, timeout=30)

    sampled = ask(run_ids=runs, max_results=5)
    assert sampled.status_code == 200, sampled.text
    got = [(m["run_id"], m["step"]) for m in sampled.json()["metrics"]]
    # MLflow's sampling: first and last kept, evenly spaced between (round((n-1)/(k-1)*i))
    assert got == [(runs[0], s) for s in (0, 25, 50, 74, 99)] + [
        (runs[1], s) for s in (0, 2, 4, 7, 9)
    ]
    first = sampled.json()["metrics"][0]
    assert first == {"key": "loss", "value": 1.0, "timestamp": 1_000, "step": 0, "run_id": runs[0]}
    window = ask(run_ids=[runs[0]], start_step=10, end_step=12)
    assert [m["step"] for m in window.json()["metrics"]] == [10, 11, 12]
    everything = ask(run_ids=[runs[1]])  # default: up to 2,500 points a run
    assert [m["step"] for m in everything.json()["metrics"]] == list(range(10))
    refused = {
        "half a range": ({"run_ids": runs, "start_step": 3}, "both must be specified"),
        "backwards": ({"run_ids": runs, "start_step": 5, "end_step": 1}, "end_step must be"),
        "no runs": ({}, "run_ids"),
        "too many": ({"run_ids": [runs[0]] * 101}, "run_ids"),
        "max_results": ({"run_ids": runs, "max_results": 2501}, "max_results"),
        "not a step": ({"run_ids": runs, "start_step": "1_0", "end_step": 20}, "start_step"),
    }
    for case, (params, words) in refused.items():
        answer = ask(**params)
        assert answer.status_code in (400, 422), (case, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", (case, answer.text)
        assert words in answer.json()["message"], (case, answer.text)
    unknown = ask(run_ids=[runs[0], "0" * 32])
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_artifacts_list_shows_a_runs_files_as_mlflow_lists_them(
    tracking: MlflowClient, served: tuple[str, str], tmp_path: Path
) -> None:
    import requests

    # the MLflow UI's artifact browser lists a run's files through this route
    run = tracking.create_run(tracking.create_experiment("artifact-list")).info.run_id
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "roc.txt").write_text("0.9")
    (tmp_path / "notes.txt").write_text("hello")
    tracking.log_artifact(run, str(tmp_path / "notes.txt"))
    tracking.log_artifacts(run, str(tmp_path / "plots"), artifact_path="plots")
    url = f"{served[0]}/api/2.0/mlflow/artifacts/list"

    top = requests.get(url, params={"run_id": run}, timeout=30)
    assert top.status_code == 200, top.text
    assert top.json() == {
        "root_uri": tracking.get_run(run).info.artifact_uri,
        "files": [
            {"path": "notes.txt", "is_dir": False, "file_size": 5},
            {"path": "plots", "is_dir": True},
        ],
    }
    inside = requests.get(url, params={"run_id": run, "path": "plots"}, timeout=30).json()
    assert inside["files"] == [{"path": "plots/roc.txt", "is_dir": False, "file_size": 3}]
    empty = requests.get(url, params={"run_id": run, "path": "nothing"}, timeout=30)
    assert empty.status_code == 200 and "files" not in empty.json()
    escape = requests.get(url, params={"run_id": run, "path": "../other"}, timeout=30)
    assert escape.status_code in (400, 422), escape.text
    assert escape.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    unknown = requests.get(url, params={"run_id": "0" * 32}, timeout=30)
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    missing = requests.get(url, timeout=30)
    assert missing.status_code in (400, 422) and "run_id" in missing.json()["message"]
