"""The unmodified MLflow client against the registry routes of `loopline server`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from tests.tracking.backends import database, server  # noqa: E402


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One server per backend for the module, as starting one takes seconds. The tests share
    it without seeing each other's data: each uses its own model names."""
    folder: Path = tmp_path_factory.mktemp(request.param)
    with database(request.param, folder) as db_uri, server(db_uri, folder) as url:
        yield url


@pytest.fixture
def client(server_url: str) -> MlflowClient:
    return MlflowClient(tracking_uri=server_url, registry_uri=server_url)


def test_registered_model_lifecycle(client: MlflowClient) -> None:
    client.create_registered_model("churn", tags={"team": "growth"}, description="first")
    rm = client.get_registered_model("churn")
    assert rm.name == "churn" and rm.tags == {"team": "growth"} and rm.description == "first"
    client.update_registered_model("churn", description="second")
    assert client.get_registered_model("churn").description == "second"
    names = [m.name for m in client.search_registered_models(filter_string="name = 'churn'")]
    assert names == ["churn"]
    with pytest.raises(MlflowException, match="already exists"):
        client.create_registered_model("churn")
    client.delete_registered_model("churn")
    with pytest.raises(MlflowException, match="does not exist"):
        client.get_registered_model("churn")


def test_versions_and_aliases(client: MlflowClient) -> None:
    client.create_registered_model("fraud")
    v1 = client.create_model_version("fraud", source="mlflow-artifacts:/0/a/artifacts/model")
    v2 = client.create_model_version("fraud", source="mlflow-artifacts:/0/b/artifacts/model")
    assert (v1.version, v2.version) in (("1", "2"), (1, 2))
    client.set_registered_model_alias("fraud", "champion", "1")
    assert str(client.get_model_version_by_alias("fraud", "champion").version) == "1"
    client.set_registered_model_alias("fraud", "champion", "2")
    assert str(client.get_model_version_by_alias("fraud", "champion").version) == "2"
    assert client.get_registered_model("fraud").aliases == {"champion": "2"}
    client.delete_registered_model_alias("fraud", "champion")
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("fraud", "champion")
    client.set_model_version_tag("fraud", "1", "validated", "yes")
    assert client.get_model_version("fraud", "1").tags == {"validated": "yes"}
    found = client.search_model_versions("name = 'fraud'")
    assert sorted(str(v.version) for v in found) == ["1", "2"]


def test_unknown_model_is_a_404_with_a_message(client: MlflowClient) -> None:
    with pytest.raises(MlflowException) as info:
        client.get_model_version("nope", "1")
    assert info.value.get_http_status_code() == 404
    assert "nope" in str(info.value)


@pytest.mark.parametrize("version", ["0.1.0", "", " 1", "+1", "1_0", "٣", "9" * 25])
def test_a_version_that_is_not_a_whole_number_is_a_422_naming_it(
    client: MlflowClient, server_url: str, version: str
) -> None:
    import uuid

    import requests

    name = f"bad-version-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    client.create_model_version(name, source="mlflow-artifacts:/0/a/artifacts/model")
    base = f"{server_url}/api/2.0/mlflow"
    calls = [
        ("PATCH", "model-versions/update", {"description": "d"}),
        ("DELETE", "model-versions/delete", {}),
        ("POST", "model-versions/set-tag", {"key": "k", "value": "v"}),
        ("DELETE", "model-versions/delete-tag", {"key": "k"}),
        ("POST", "registered-models/alias", {"alias": "champion"}),
    ]
    for method, route, extra in calls:
        body = {"name": name, "version": version, **extra}
        answer = requests.request(method, f"{base}/{route}", json=body, timeout=30)
        assert answer.status_code == 422, (route, answer.text)  # InvalidInput, as everywhere
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", (route, answer.text)
        assert f"version {version!r} is not a version number" in answer.json()["message"]
    assert str(client.get_model_version(name, "1").version) == "1"  # nothing was touched
