"""The unmodified MLflow client's logged models (MLflow 3) against a real `loopline server`:
params past the first 100, metrics linked to a model, searches on them, run outputs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import requests

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import LoggedModelStatus  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from tests.server.conftest import mlflow_client_on  # noqa: E402
from tests.tracking.backends import database, server  # noqa: E402

# MLflow's own warnings (about its type hints, its telemetry) are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:mlflow")

_RNG = np.random.default_rng(0)
X = _RNG.normal(size=(40, 2))
y = (X[:, 0] > 0).astype(int)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One server per backend for the module, as starting one takes seconds. The tests share
    it without seeing each other's data: each uses experiments of its own."""
    folder = tmp_path_factory.mktemp(request.param)
    with database(request.param, folder) as db_uri, server(db_uri, folder) as url:
        yield url


@pytest.fixture
def client(server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    with mlflow_client_on(server_url, monkeypatch) as client:
        yield client


def _experiment(client: MlflowClient, what: str) -> str:
    """A new experiment of the test's own, set as the fluent API's."""
    name = f"{what}-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    mlflow.set_experiment(name)
    return str(experiment_id)


#: Given, so that the client does not infer them: it imports the model in a new Python
#: process for that (~5 s of CPU a model), which is the client's own work, not the server's
#: (tests/server/test_mlflow_client.py logs a model as a user does, requirements inferred).
REQS = ["scikit-learn"]


def _post(server_url: str, route: str, body: dict[str, object]) -> requests.Response:
    return requests.post(f"{server_url}/api/2.0/mlflow/{route}", json=body, timeout=30)


# ------------------------------------------------------------------ params


def test_log_model_with_more_than_100_params_keeps_them_all(client: MlflowClient) -> None:
    _experiment(client, "many-params")
    params = {f"p{i}": i for i in range(150)}
    with mlflow.start_run():
        # the client sends 100 with the creation, the rest to logged-models/{id}/params
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(X, y), name="m", params=params, pip_requirements=REQS
        )
    model = mlflow.get_logged_model(info.model_id)
    assert model.status == LoggedModelStatus.READY
    assert model.params == {k: str(v) for k, v in params.items()}
    mlflow.log_model_params({"later": "1"}, model_id=info.model_id)
    assert mlflow.get_logged_model(info.model_id).params["later"] == "1"


def test_logged_model_params_are_checked_as_run_params_are(
    client: MlflowClient, server_url: str
) -> None:
    experiment_id = _experiment(client, "checked-params")
    model_id = client.create_logged_model(experiment_id, name="m", params={"a": "1"}).model_id
    client.log_model_params(model_id, {"a": "1", "b": "2"})  # the same value again is kept
    with pytest.raises(MlflowException, match="cannot be changed to '9'") as info:
        client.log_model_params(model_id, {"a": "9", "c": "3"})
    assert info.value.error_code == "RESOURCE_ALREADY_EXISTS"  # as a run's changed param
    route = f"logged-models/{model_id}/params"
    for params, said in [
        ([{"key": "long", "value": "x" * 6001}], "6001 characters, over the limit of 6000"),
        ([{"key": "nul", "value": "a\x00b"}], "params.nul contains a NUL character"),
        ([{"key": "/abs", "value": "1"}], "is an absolute path"),
        ([{"key": "", "value": "1"}], "must be a non-empty string"),
        ([{"key": "d", "value": "1"}, {"key": "d", "value": "2"}], "appears twice"),
    ]:
        answer = _post(server_url, route, {"model_id": model_id, "params": params})
        assert answer.status_code in (409, 422), (params, answer.text)
        assert said in answer.json()["message"], answer.text
    answer = _post(server_url, route, {"model_id": "m-other", "params": [{"key": "e"}]})
    assert answer.status_code == 422 and "is not" in answer.json()["message"]
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    unknown = _post(server_url, "logged-models/m-nope/params", {"params": [{"key": "e"}]})
    assert unknown.status_code == 404 and "m-nope" in unknown.json()["message"]
    # nothing of a refused batch was kept
    assert client.get_logged_model(model_id).params == {"a": "1", "b": "2"}
    # nor is a bad param taken at creation
    answer = _post(
        server_url,
        "logged-models",
        {"experiment_id": experiment_id, "params": [{"key": "v", "value": "x" * 6001}]},
    )
    assert answer.status_code == 422 and "over the limit" in answer.json()["message"]
    twice = [{"key": "v", "value": "1"}, {"key": "v", "value": "2"}]
    answer = _post(server_url, "logged-models", {"experiment_id": experiment_id, "params": twice})
    assert answer.status_code == 409 and "appears twice" in answer.json()["message"]


# ------------------------------------------------------------------ searches


def test_logged_models_are_found_by_their_params(client: MlflowClient) -> None:
    experiment_id = _experiment(client, "by-params")
    made = {
        name: client.create_logged_model(experiment_id, name=name, params=params).model_id
        for name, params in (("a", {"p1": "v1", "n": "x"}), ("b", {"p1": "v2"}), ("c", {}))
    }

    def names(text: str) -> list[str]:
        found = mlflow.search_logged_models(
            experiment_ids=[experiment_id], filter_string=text, output_format="list"
        )
        return sorted(m.name for m in found)

    assert names("params.p1 = 'v1'") == ["a"]
    assert names("params.p1 != 'v1'") == ["b"]  # a model without the param matches nothing
    assert names("params.`p1` IN ('v1', 'v2') AND name != 'b'") == ["a"]
    assert names("params.p1 LIKE 'v%' AND params.n = 'x'") == ["a"]
    assert names(f"params.p1 = 'v2' AND model_id = '{made['b']}'") == ["b"]
    for bad, said in [
        ("params.p1 > 'v1'", "operator > does not apply to 'params.p1'"),
        ("params.p1 = 1", "for 'params.p1' must be quoted"),
        ("param.p1 ~ 'v1'", "cannot read"),
    ]:
        with pytest.raises(MlflowException, match=said) as info:
            names(bad)
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"


# ------------------------------------------------------------------ metrics


def test_metrics_linked_to_a_logged_model_read_back_and_stay_the_runs(
    client: MlflowClient,
) -> None:
    _experiment(client, "model-metrics")
    with mlflow.start_run() as run:
        for step in range(2):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        # log_model links the run's points at its step to the model it logs
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(X, y), name="m", step=1, pip_requirements=REQS
        )
        mlflow.log_metric("acc", 0.9, step=1, model_id=info.model_id)
        mlflow.log_metric("nan", float("nan"), step=1, model_id=info.model_id)
    run_id = run.info.run_id
    model = mlflow.get_logged_model(info.model_id)
    found = sorted((m.key, m.value, m.step, m.run_id, m.model_id) for m in model.metrics)
    assert found[:2] == [
        ("acc", 0.9, 1, run_id, info.model_id),
        ("loss", 0.5, 1, run_id, info.model_id),
    ]
    assert found[2][0] == "nan" and found[2][1] != found[2][1]  # NaN reads back as NaN
    # each point is the run's too, kept once
    history = client.get_metric_history(run_id, "loss")
    assert [(p.step, p.value) for p in history] == [(0, 1.0), (1, 0.5)]
    assert [p.value for p in client.get_metric_history(run_id, "acc")] == [0.9]
    assert client.get_run(run_id).data.metrics["acc"] == 0.9


def test_sklearn_autolog_links_its_training_metrics_to_the_model(client: MlflowClient) -> None:
    experiment_id = _experiment(client, "autolog")
    mlflow.sklearn.autolog()
    try:
        with mlflow.start_run() as run:
            LogisticRegression().fit(X, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    run_id = run.info.run_id
    (model,) = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
        output_format="list",
    )
    by_key = {m.key: m for m in model.metrics}
    assert by_key["training_score"].value == client.get_run(run_id).data.metrics["training_score"]
    assert by_key["training_score"].dataset_name and by_key["training_score"].dataset_digest
    assert len(client.get_metric_history(run_id, "training_score")) == 1


def test_logged_models_are_searched_and_ordered_by_metrics_on_datasets(
    client: MlflowClient,
) -> None:
    experiment_id = _experiment(client, "by-metrics")
    run_id = client.create_run(experiment_id).info.run_id
    ids = {n: client.create_logged_model(experiment_id, name=n).model_id for n in "abcd"}

    def link(name: str, value: float, dataset: str, digest: str, timestamp: int) -> None:
        client.log_metric(
            run_id, "acc", value, timestamp=timestamp, step=0, model_id=ids[name],
            dataset_name=dataset, dataset_digest=digest,
        )  # fmt: skip

    link("a", 0.9, "train", "d1", 1000)
    link("a", 0.6, "test", "d2", 2000)  # a's latest point
    link("b", 0.7, "train", "d1", 1000)
    link("c", 0.4, "test", "d2", 1000)

    def names(
        text: str | None = None,
        datasets: list[dict[str, str]] | None = None,
        order_by: list[dict[str, object]] | None = None,
    ) -> list[str]:
        found = mlflow.search_logged_models(
            experiment_ids=[experiment_id],
            filter_string=text,
            datasets=datasets,
            order_by=order_by,
            output_format="list",
        )
        return [m.name for m in found]

    assert sorted(names("metrics.acc > 0.5")) == ["a", "b"]  # any of a model's points
    assert sorted(names("metrics.acc >= 0.6 AND metrics.acc < 0.65")) == ["a"]
    assert names("metrics.acc > 0.5", datasets=[{"dataset_name": "test"}]) == ["a"]
    test_d1 = [{"dataset_name": "test", "dataset_digest": "d1"}]
    assert names("metrics.acc > 0.5", datasets=test_d1) == []
    # datasets alone: the models with a point on one of them
    assert sorted(names(datasets=[{"dataset_name": "test"}])) == ["a", "c"]
    train_or_test = [{"dataset_name": "train", "dataset_digest": "d1"}, {"dataset_name": "test"}]
    assert sorted(names(datasets=train_or_test)) == ["a", "b", "c"]
    assert names(datasets=[{"dataset_name": "nope"}]) == []
    # ordered by each model's latest point; a model without one comes last
    by_acc = [{"field_name": "metrics.acc", "ascending": False}]
    assert names(order_by=by_acc) == ["b", "a", "c", "d"]
    on_train = [{"field_name": "metrics.acc", "ascending": True, "dataset_name": "train"}]
    assert names(order_by=on_train) == ["b", "a", "d", "c"]  # then newest first


def test_bad_metric_searches_and_links_are_refused_naming_the_field(
    client: MlflowClient, server_url: str
) -> None:
    experiment_id = _experiment(client, "bad-metrics")
    run_id = client.create_run(experiment_id).info.run_id
    model_id = client.create_logged_model(experiment_id, name="m").model_id
    search = "logged-models/search"
    for body, said in [
        ({"datasets": [{"dataset_digest": "d1"}]}, "datasets[0] names no dataset_name"),
        ({"filter": "metrics.acc > 'high'"}, "'high' for 'metrics.acc' is not a number"),
        ({"filter": "metrics.acc LIKE '1%'"}, "LIKE does not apply to 'metrics.acc'"),
        (
            {"order_by": [{"field_name": "name", "dataset_name": "train"}]},
            "names a dataset for 'name', which is not a metric",
        ),
        (
            {"order_by": [{"field_name": "metrics.acc", "dataset_digest": "d1"}]},
            "dataset_digest without its dataset_name",
        ),
        ({"order_by": [{"field_name": "params.lr"}]}, "is not supported"),
    ]:
        answer = _post(server_url, search, {"experiment_ids": [experiment_id], **body})
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert said in answer.json()["message"], answer.text
    for metric, status, said in [
        ({"model_id": "m-nope"}, 404, "logged model 'm-nope' does not exist"),
        ({"model_id": model_id, "dataset_name": "d" * 501}, 422, "dataset_name is 501 characters"),
        ({"model_id": model_id, "dataset_digest": "x\x00"}, 422, "dataset_digest contains a NUL"),
        ({"model_id": model_id, "key": "/abs"}, 422, "is an absolute path"),
    ]:
        point = {"key": "acc", "value": 0.5, "timestamp": 1, "step": 0, **metric}
        for route, body in [
            ("runs/log-metric", {"run_id": run_id, **point}),
            ("runs/log-batch", {"run_id": run_id, "metrics": [point]}),
        ]:
            answer = _post(server_url, route, body)
            assert answer.status_code == status, (route, metric, answer.text)
            assert said in answer.json()["message"], answer.text
    # a refused link left nothing behind: not the run's point, not a link
    assert client.get_metric_history(run_id, "acc") == []
    assert client.get_logged_model(model_id).metrics in (None, [])


# ------------------------------------------------------------------ run outputs


def test_a_run_lists_the_models_it_logged_as_its_outputs(
    client: MlflowClient, server_url: str
) -> None:
    experiment_id = _experiment(client, "outputs")
    with mlflow.start_run() as run:
        first = mlflow.sklearn.log_model(
            LogisticRegression().fit(X, y), name="a", pip_requirements=REQS
        )
        second = mlflow.sklearn.log_model(
            LogisticRegression().fit(X, y), name="b", step=3, pip_requirements=REQS
        )
    run_id = run.info.run_id
    outputs = client.get_run(run_id).outputs
    assert [(o.model_id, o.step) for o in outputs.model_outputs] == [
        (first.model_id, 0),
        (second.model_id, 3),
    ]
    (found,) = client.search_runs([experiment_id], f"attributes.run_id = '{run_id}'")
    assert [o.model_id for o in found.outputs.model_outputs] == [first.model_id, second.model_id]
    with mlflow.start_run() as bare:
        pass
    assert client.get_run(bare.info.run_id).outputs.model_outputs == []
    # the same output again is kept once; what is not a logged model is refused
    again = {"run_id": run_id, "models": [{"model_id": first.model_id, "step": 0}]}
    assert _post(server_url, "runs/outputs", again).status_code == 200
    assert len(client.get_run(run_id).outputs.model_outputs) == 2
    for models, status, said in [
        ([{"model_id": "m-nope"}], 404, "logged model 'm-nope' does not exist"),
        ([{"model_id": first.model_id, "step": 2**63}], 422, "does not fit in 64 bits"),
    ]:
        answer = _post(server_url, "runs/outputs", {"run_id": run_id, "models": models})
        assert answer.status_code == status, answer.text
        assert said in answer.json()["message"], answer.text
    unknown = _post(server_url, "runs/outputs", {"run_id": "0" * 32, "models": []})
    assert unknown.status_code == 404
    assert len(client.get_run(run_id).outputs.model_outputs) == 2
