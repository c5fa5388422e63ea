"""The unmodified MLflow client against the registry routes of `loopline server`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from loopline.config import Settings  # noqa: E402
from loopline.core import audit  # noqa: E402
from loopline.core.context import Context  # noqa: E402
from loopline.training import registry_models  # noqa: E402
from tests.cli_run import run_loopline  # noqa: E402
from tests.tracking.backends import database, server  # noqa: E402


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Context]]:
    """One server per backend for the module, as starting one takes seconds, and a context
    on its store (what Loopline's SDK and CLI read). The tests share it without seeing each
    other's data: each uses its own model names."""
    folder: Path = tmp_path_factory.mktemp(request.param)
    with database(request.param, folder) as db_uri, server(db_uri, folder) as url:
        ctx = Context(Settings(uri=db_uri, artifacts=str(folder / "server-artifacts")))
        try:
            yield url, ctx
        finally:
            ctx.close()


@pytest.fixture
def server_url(served: tuple[str, Context]) -> str:
    return served[0]


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


def _names(versions: list) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [(v.name, int(v.version)) for v in versions]


def test_a_deleted_versions_number_is_never_given_again(client: MlflowClient) -> None:
    client.create_registered_model("renumber")
    for _ in range(3):
        client.create_model_version("renumber", source="mlflow-artifacts:/0/a/artifacts/m")
    client.delete_model_version("renumber", "3")
    # as in MLflow: models:/renumber/3 and the audit log's renumber/3 keep naming one model
    assert int(client.create_model_version("renumber", source="runs:/r/m").version) == 4
    assert sorted(_names(client.search_model_versions("name = 'renumber'"))) == [
        ("renumber", 1),
        ("renumber", 2),
        ("renumber", 4),
    ]


def test_version_search_compares_numbers_lists_and_orders(client: MlflowClient) -> None:
    for name in ("order-a", "order-b"):
        client.create_registered_model(name)
        for _ in range(3):
            client.create_model_version(name, source=f"mlflow-artifacts:/0/{name}/artifacts/m")
    both = "name IN ('order-a', 'order-b')"
    # MLflow's own syntax: an unquoted number, comparisons on it
    found = client.search_model_versions(f"{both} AND version_number = 2")
    assert sorted(_names(found)) == [("order-a", 2), ("order-b", 2)]
    found = client.search_model_versions(
        f"{both} AND version_number >= 2", order_by=["name DESC", "version_number ASC"]
    )
    assert _names(found) == [("order-b", 2), ("order-b", 3), ("order-a", 2), ("order-a", 3)]
    found = client.search_model_versions("name = 'order-a'", order_by=["version_number"])
    assert _names(found) == [("order-a", 1), ("order-a", 2), ("order-a", 3)]
    # MLflow's default: newest change first
    assert _names(client.search_model_versions("name = 'order-a'"))[0] == ("order-a", 3)
    for bad, said in [
        ("version_number LIKE '2'", "does not apply to 'version_number'"),
        ("version_number = 'two'", "is not a whole number"),
        ("name = 2", "must be quoted"),
        ("color = 'red'", "filter key 'color' is not supported"),
    ]:
        with pytest.raises(MlflowException, match=said):
            client.search_model_versions(bad)
    with pytest.raises(MlflowException, match="order_by 'color DESC' is not supported"):
        client.search_model_versions("name = 'order-a'", order_by=["color DESC"])


def test_model_search_orders_and_tags_match_as_in_mlflow(client: MlflowClient) -> None:
    for name, team in (("zz-sort-1", "x"), ("zz-sort-2", None), ("zz-sort-3", "y")):
        client.create_registered_model(name, tags={"team": team} if team else None)
    found = client.search_registered_models("name LIKE 'zz-sort-%'", order_by=["name DESC"])
    assert [m.name for m in found] == ["zz-sort-3", "zz-sort-2", "zz-sort-1"]
    # a model without the tag matches no comparison on it (MLflow), not even !=
    found = client.search_registered_models("name LIKE 'zz-sort-%' AND tags.team != 'x'")
    assert [m.name for m in found] == ["zz-sort-3"]
    # and MLflow 3's client, which hides prompts with a != filter, still sees every model
    assert {"zz-sort-1", "zz-sort-2", "zz-sort-3"} <= {
        m.name for m in client.search_registered_models()
    }


def test_latest_is_a_reserved_alias(client: MlflowClient) -> None:
    client.create_registered_model("reserved")
    client.create_model_version("reserved", source="mlflow-artifacts:/0/a/artifacts/m")
    for alias in ("latest", "LATEST"):
        with pytest.raises(MlflowException, match="is reserved"):
            client.set_registered_model_alias("reserved", alias, "1")
    assert client.get_registered_model("reserved").aliases == {}


@pytest.mark.filterwarnings("ignore:.*get_latest_versions.*:FutureWarning")
def test_latest_versions_by_stage_find_none_outside_stage_none(
    client: MlflowClient, server_url: str, tmp_path: Path
) -> None:
    # Loopline has no stages: every version is in "None". Asking for another stage must
    # find nothing (as MLflow does when no version was moved there), not the newest version:
    # models:/NAME/Production would otherwise load a model nobody promoted.
    client.create_registered_model("staged")
    for _ in range(2):
        client.create_model_version("staged", source="mlflow-artifacts:/0/a/artifacts/m")
    newest = client.get_latest_versions("staged")
    assert [(str(v.version), v.current_stage) for v in newest] == [("2", "None")]
    assert [str(v.version) for v in client.get_latest_versions("staged", ["none"])] == ["2"]
    for stage in ("Staging", "production", "Archived"):
        assert client.get_latest_versions("staged", [stage]) == []
    # MLflow resolves models:/ URIs with a client of the process's tracking and registry
    # URIs (which another test of this worker may have set), not of the client at hand.
    mlflow.set_tracking_uri(server_url)
    mlflow.set_registry_uri(server_url)
    with pytest.raises(MlflowException, match="No versions of model with name 'staged'"):
        mlflow.artifacts.download_artifacts("models:/staged/Production", dst_path=str(tmp_path))
    with pytest.raises(MlflowException, match="'Bogus' is not a model version stage") as info:
        client.get_latest_versions("staged", ["Bogus"])
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match="does not exist"):
        client.get_latest_versions("no-such-model", ["Bogus"])


def test_latest_versions_answer_get_as_post(client: MlflowClient, server_url: str) -> None:
    import requests

    # MLflow serves GetLatestVersions on GET too (its proto lists both); the client posts
    client.create_registered_model("latest-by-get")
    for _ in range(2):
        client.create_model_version("latest-by-get", source="mlflow-artifacts:/0/a/artifacts/m")
    url = f"{server_url}/api/2.0/mlflow/registered-models/get-latest-versions"
    found = requests.get(url, params={"name": "latest-by-get"}, timeout=30)
    assert found.status_code == 200, found.text
    assert [(v["version"], v["current_stage"]) for v in found.json()["model_versions"]] == [
        ("2", "None")
    ]
    production = {"name": "latest-by-get", "stages": ["Production"]}
    staged = requests.get(url, params=production, timeout=30)
    assert staged.status_code == 200 and staged.json() == {"model_versions": []}
    bogus = requests.get(url, params={"name": "latest-by-get", "stages": "Bogus"}, timeout=30)
    assert bogus.status_code == 422 and bogus.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "'Bogus' is not a model version stage" in bogus.json()["message"]
    missing = requests.get(url, params={"name": "no-such-model"}, timeout=30)
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    no_name = requests.get(url, timeout=30)
    assert no_name.status_code in (400, 422), no_name.text


def test_a_renamed_model_keeps_its_versions_tags_and_aliases(
    client: MlflowClient, served: tuple[str, Context]
) -> None:
    client.create_registered_model("to-rename", tags={"team": "growth"}, description="d")
    for run in ("a", "b"):
        client.create_model_version("to-rename", source=f"mlflow-artifacts:/0/{run}/artifacts/m")
    client.set_model_version_tag("to-rename", "1", "validated", "yes")
    client.set_registered_model_alias("to-rename", "champion", "1")

    client.rename_registered_model("to-rename", "renamed")  # MlflowClient returns None

    renamed = client.get_registered_model("renamed")
    assert (renamed.name, renamed.tags, renamed.description) == ("renamed", {"team": "growth"}, "d")
    assert renamed.aliases == {"champion": "1"}
    assert [str(v.version) for v in renamed.latest_versions] == ["2"]
    champion = client.get_model_version_by_alias("renamed", "champion")
    assert (champion.name, str(champion.version), champion.tags) == (
        "renamed",
        "1",
        {"validated": "yes"},
    )
    found = client.search_model_versions("name = 'renamed'")
    assert sorted(str(v.version) for v in found) == ["1", "2"]
    assert client.search_model_versions("name = 'to-rename'") == []
    with pytest.raises(MlflowException) as info:
        client.get_registered_model("to-rename")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    # Loopline's SDK and CLI read the same store: the model under its new name, audited
    ctx = served[1]
    assert registry_models.get_registered_model(ctx, "renamed").aliases == {"champion": 1}
    shown = run_loopline(ctx, "models", "ls", "--json")
    assert shown.returncode == 0, shown.stderr
    assert "renamed" in shown.stdout and "to-rename" not in shown.stdout
    [event] = [
        e
        for e in audit.events(ctx.engine, object_type="registered_model", object_id="renamed")
        if e.action == "model.rename"
    ]
    assert (event.before, event.after) == ({"name": "to-rename"}, {"name": "renamed"})


def test_a_rename_onto_a_taken_or_bad_name_is_refused_as_mlflow_refuses_it(
    client: MlflowClient,
) -> None:
    client.create_registered_model("keeps-name")
    client.create_registered_model("taken-name")
    with pytest.raises(MlflowException, match="'taken-name' already exists") as info:
        client.rename_registered_model("keeps-name", "taken-name")
    assert info.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as info:
        client.rename_registered_model("no-such-model", "anything")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException, match=r"new_name '\.\./up' is not a valid") as info:
        client.rename_registered_model("keeps-name", "../up")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert client.get_registered_model("keeps-name").name == "keeps-name"


@pytest.mark.filterwarnings("ignore:.*transition_model_version_stage.*:FutureWarning")
def test_routes_loopline_does_not_serve_say_so(client: MlflowClient) -> None:
    client.create_registered_model("unserved")
    client.create_model_version("unserved", source="mlflow-artifacts:/0/a/artifacts/m")
    with pytest.raises(MlflowException, match="set an alias") as info:
        client.transition_model_version_stage("unserved", "1", "Production")
    assert info.value.error_code == "ENDPOINT_NOT_FOUND"
    assert client.get_registered_model("unserved").name == "unserved"


def test_logged_models_search_in_the_order_asked(client: MlflowClient) -> None:
    exp = client.create_experiment("logged-order")
    made = [client.create_logged_model(exp, name=f"m{i}").model_id for i in range(3)]
    oldest_first = client.search_logged_models(
        [exp], order_by=[{"field_name": "creation_timestamp", "ascending": True}]
    )
    by_name_desc = client.search_logged_models(
        [exp], order_by=[{"field_name": "name", "ascending": False}]
    )
    assert [m.name for m in by_name_desc] == ["m2", "m1", "m0"]
    assert {m.model_id for m in oldest_first} == set(made)
    stamps = [m.creation_timestamp for m in oldest_first]
    assert stamps == sorted(stamps)
    # metrics.<key> orders (tests/server/test_mlflow_logged_models.py); params do not, as
    # in MLflow
    with pytest.raises(MlflowException, match="not supported"):
        client.search_logged_models(
            [exp], order_by=[{"field_name": "params.auc", "ascending": True}]
        )
    by_metric = client.search_logged_models(
        [exp], order_by=[{"field_name": "metrics.auc", "ascending": True}]
    )
    assert {m.model_id for m in by_metric} == set(made)  # none has it: every one, last


@pytest.mark.parametrize(
    ("key", "value"),
    [("", "a\x00b"), ("k" * 70_000, "v"), ("team", "a\x00b"), ("../up", "v")],
    ids=["empty-key-nul-value", "huge-key", "nul-value", "dotdot-key"],
)
def test_a_bad_registry_tag_is_a_4xx_and_not_stored(
    client: MlflowClient, server_url: str, key: str, value: str
) -> None:
    import uuid

    import requests

    name = f"tags-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    client.create_model_version(name, source="mlflow-artifacts:/0/a/artifacts/model")
    base = f"{server_url}/api/2.0/mlflow"
    for route, extra in (
        ("registered-models/set-tag", {}),
        ("model-versions/set-tag", {"version": "1"}),
    ):
        body = {"name": name, "key": key, "value": value, **extra}
        answer = requests.post(f"{base}/{route}", json=body, timeout=30)
        assert answer.status_code == 422, (route, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", answer.text
        assert "tag" in answer.json()["message"] and len(answer.text) < 1000, answer.text
    assert client.get_registered_model(name).tags == {}
    assert client.get_model_version(name, "1").tags == {}


@pytest.mark.parametrize(
    "source",
    [
        "\x00../../etc/passwd",
        "file:///etc/passwd",
        "/etc",
        "../../etc",
        "mlflow-artifacts:/../../etc",
        "mlflow-artifacts:/%2e%2e/%2e%2e/etc",
    ],
)
def test_a_source_outside_this_servers_artifacts_is_refused_as_mlflow_refuses_it(
    client: MlflowClient, source: str
) -> None:
    # MLflow answers 400 "Invalid model version source"; Loopline stored the path as sent, so
    # the download URI pointed at it and models:/NAME/latest failed only when loaded.
    import uuid

    name = f"sources-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    with pytest.raises(MlflowException, match="model version source") as info:
        client.create_model_version(name, source=source)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert client.search_model_versions(f"name = '{name}'") == []


def test_a_version_needs_a_source(server_url: str) -> None:
    import requests

    base = f"{server_url}/api/2.0/mlflow"
    requests.post(f"{base}/registered-models/create", json={"name": "sourceless"}, timeout=30)
    answer = requests.post(f"{base}/model-versions/create", json={"name": "sourceless"}, timeout=30)
    assert answer.status_code == 400 and "source" in answer.json()["message"], answer.text
