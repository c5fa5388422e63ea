"""The unmodified MLflow client's logged models (MLflow 3) against a real `loopline server`:
params past the first 100, metrics linked to a model, searches on them, run outputs."""

from __future__ import annotations

import os
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
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_url)
    # The fluent API remembers the active experiment across servers; start clean.
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(server_url)
    mlflow.set_registry_uri(server_url)
    yield MlflowClient(tracking_uri=server_url, registry_uri=server_url)
    while mlflow.active_run():
        mlflow.end_run()
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # mlflow.set_experiment writes it


def _experiment(client: MlflowClient, what: str) -> str:
    """A new experiment of the test's own, set as the fluent API's."""
    name = f"{what}-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    mlflow.set_experiment(name)
    return str(experiment_id)


def _post(server_url: str, route: str, body: dict[str, object]) -> requests.Response:
    return requests.post(f"{server_url}/api/2.0/mlflow/{route}", json=body, timeout=30)


# ------------------------------------------------------------------ params


def test_log_model_with_more_than_100_params_keeps_them_all(client: MlflowClient) -> None:
    _experiment(client, "many-params")
    params = {f"p{i}": i for i in range(150)}
    with mlflow.start_run():
        # the client sends 100 with the creation, the rest to logged-models/{id}/params
        info = mlflow.sklearn.log_model(LogisticRegression().fit(X, y), name="m", params=params)
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
