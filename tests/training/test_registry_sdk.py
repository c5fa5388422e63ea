"""ll.registry: register with lineage, aliases (audited), get, load, lineage - both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import loopline as ll
from loopline.core import audit
from loopline.core.context import Context
from loopline.errors import InvalidInput, NotFound
from loopline.training import registry, registry_versions
from tests.git_repo import git


def _frame(n: int = 60, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"tenure": rng.integers(1, 60, n), "spend": rng.random(n) * 10})
    df["churned"] = (df["spend"] < 5).astype(int)
    return df


def _git_repo(path: Path) -> str:
    git(path, "init", "-q")
    (path / "train.py").write_text("print('train')\n")
    git(path, "add", "train.py")
    git(path, "commit", "-qm", "train")
    return git(path, "rev-parse", "HEAD").strip()


def _train(experiment: str = "churn", seed: int = 1, dataset: str = "churn-data") -> Any:
    """A run that reads a dataset version, logs params/metrics and one model."""
    ll.datasets.register(dataset, _frame(seed=seed))
    with ll.start_run(experiment=experiment) as run:
        df = ll.datasets.get(dataset).to_pandas()
        X = df[["tenure", "spend"]]
        clf = LogisticRegression(max_iter=300).fit(X, df["churned"])
        run.log_params({"max_iter": 300, "seed": seed})
        run.log_metric("auc", 0.8 + seed / 100)
        run.log_model(clf, "model", input_example=X.head(5))
    return run


def test_register_carries_lineage_through_the_run(ctx: Context, tmp_path: Path) -> None:
    commit = _git_repo(tmp_path)
    run = _train()
    v = ll.registry.register(run, "churn")
    assert (v.name, v.version, v.run_id, v.flavor) == ("churn", 1, run.id, "sklearn")
    assert v.code_version["git_commit"] == commit
    assert v.code_version["git_dirty"] == "false"
    assert [(d.name, d.version) for d in v.datasets] == [("churn-data", "1")]
    assert v.params == {"max_iter": "300", "seed": "1"}
    assert v.metrics == {"auc": pytest.approx(0.81)}
    assert v.signature is not None and v.signature.names == ["tenure", "spend"]
    again = registry.get("churn", 1).to_dict()
    assert again["datasets"][0]["digest"] == ll.datasets.get("churn-data").hash
    assert again["code_version"]["git_commit"] == commit
    events = audit.events(ctx.engine, object_type="model_version", object_id="churn/1")
    assert [e.action for e in events] == ["model_version.create"]


def test_register_takes_a_logged_model_or_ids_and_refuses_ambiguity(ctx: Context) -> None:
    X = _frame()[["tenure", "spend"]]
    with ll.start_run(experiment="churn") as run:
        a = run.log_model(LinearRegression().fit(X, X["spend"]), "a", input_example=X.head(2))
        b = run.log_model(LinearRegression().fit(X, X["tenure"]), "b", input_example=X.head(2))
    with pytest.raises(InvalidInput, match="logged 2 models: ") as info:
        ll.registry.register(run, "m")
    assert f"a ({a.model_id})" in str(info.value) and f"b ({b.model_id})" in str(info.value)
    assert "pass the one to register" in str(info.value)
    assert ll.registry.register(b, "m").version == 1
    assert ll.registry.register(a.model_id, "m").model_id == a.model_id
    with ll.start_run(experiment="churn") as empty:
        pass
    with pytest.raises(InvalidInput, match="has no logged model"):
        ll.registry.register(empty, "m")
    with pytest.raises(InvalidInput, match="register takes a run"):
        ll.registry.register(3.5, "m")
    single = _train(seed=2)
    assert ll.registry.register(single.id, "m").version == 3


@ll.step
def _fit_and_log(seed: int) -> float:
    df = _frame(seed=seed)
    X = df[["tenure", "spend"]]
    clf = LogisticRegression(max_iter=300).fit(X, df["churned"])
    run = ll.active_run()
    assert run is not None
    run.log_model(clf, "model", input_example=X.head(5))  # on the pipeline's run
    return float(clf.score(X, df["churned"]))


@ll.pipeline
def _train_pipe(seed: int = 1) -> None:
    _fit_and_log(seed)


def test_registering_a_cached_pipeline_run_names_the_run_that_logged_the_model(
    ctx: Context,
) -> None:
    # The second run's step came from the cache, so it logged nothing; the error said
    # "log one first with run.log_model", which the pipeline does.
    first = _train_pipe.run({"seed": 1})
    second = _train_pipe.run({"seed": 1})
    assert second.steps["_fit_and_log"].status == "cached"
    with pytest.raises(InvalidInput, match=f"by pipeline run {first.run_id}") as err:
        ll.registry.register(second.run_id, "churn")
    assert f"ll.registry.register('{first.run_id}', name)" in (err.value.hint or "")
    assert "cache=False" in (err.value.hint or "")
    v = ll.registry.register(first.run_id, "churn")
    assert v.run_id == first.run_id
    with ll.start_run() as plain:  # a run that is no pipeline run keeps the first hint
        pass
    with pytest.raises(InvalidInput, match=r"no logged model to register \(hint") as err:
        ll.registry.register(plain.id, "churn")
    assert "log one first" in (err.value.hint or "")


def test_alias_moves_are_audited_and_load_follows_them(ctx: Context) -> None:
    ll.registry.register(_train(seed=1), "churn")
    ll.registry.register(_train(seed=2), "churn")
    ll.registry.set_alias("churn", "champion", 1, reason="first model")
    moved = ll.registry.set_alias("churn", "champion", "2", reason="AUC 0.82 > 0.81")
    assert moved.version == 2 and moved.aliases == ["champion"]
    assert ll.registry.get("churn", "champion").version == 2
    assert ll.registry.load("models:/churn@champion").version == 2
    ll.registry.set_alias("churn", "challenger", 1)
    ll.registry.delete_alias("churn", "challenger", reason="rolled back")
    moves = [
        (e.action, e.before, e.after, e.reason)
        for e in audit.events(ctx.engine, object_type="registered_model", object_id="churn")
        if e.action.startswith("alias.")
    ]
    assert moves == [
        ("alias.set", {"champion": None}, {"champion": 1}, "first model"),
        ("alias.set", {"champion": 1}, {"champion": 2}, "AUC 0.82 > 0.81"),
        ("alias.set", {"challenger": None}, {"challenger": 1}, None),
        ("alias.delete", {"challenger": 1}, None, "rolled back"),
    ]
    assert audit.verify(ctx.engine).ok
    assert ll.registry.get_model("churn").aliases == {"champion": 2}


def test_load_by_version_alias_latest_and_model_id(ctx: Context) -> None:
    v1 = ll.registry.register(_train(seed=1), "churn")
    ll.registry.register(_train(seed=2), "churn")
    X = _frame(10, seed=9)[["tenure", "spend"]]
    by_version = ll.registry.load("models:/churn/1")
    assert (by_version.name, by_version.version, by_version.flavor) == ("churn", 1, "sklearn")
    latest = ll.registry.load("models:/churn/latest")
    assert latest.version == 2 and ll.registry.get("churn").version == 2
    by_id = ll.registry.load(f"models:/{v1.model_id}")
    np.testing.assert_array_equal(by_id.predict(X), by_version.predict(X))
    rows = X.to_dict(orient="records")
    np.testing.assert_array_equal(by_version.predict(rows), by_version.predict(X.to_numpy()))
    assert by_version.predict_proba(rows).shape == (10, 2)
    assert by_version.signature is not None


@pytest.mark.parametrize(
    ("uri", "error", "message"),
    [
        ("models:/ghost/1", NotFound, "`loopline models ls`"),
        ("models:/churn/9", NotFound, "`loopline models show churn`"),
        ("models:/churn@prod", NotFound, "`loopline models show churn`"),
        ("runs:/abc/model", InvalidInput, "models:/NAME/VERSION"),
        ("models:/churn", InvalidInput, "models:/NAME@ALIAS"),
    ],
    ids=["unknown-name", "unknown-version", "unknown-alias", "runs-uri", "no-version"],
)
def test_unknown_models_say_how_to_list_them(
    ctx: Context, uri: str, error: type[Exception], message: str
) -> None:
    ll.registry.register(_train(), "churn")
    with pytest.raises(error) as info:
        ll.registry.load(uri)
    assert message in str(info.value)


def test_alias_errors(ctx: Context) -> None:
    ll.registry.register(_train(), "churn")
    with pytest.raises(NotFound, match="no alias 'prod'") as info:
        ll.registry.delete_alias("churn", "prod")
    assert "loopline models show churn" in str(info.value)
    with pytest.raises(InvalidInput, match="version 'two' is not a version number"):
        ll.registry.set_alias("churn", "champion", "two")
    with pytest.raises(NotFound, match="no version 5"):
        ll.registry.set_alias("churn", "champion", 5)


def test_lineage_goes_from_data_to_deployments(ctx: Context) -> None:
    run = _train(dataset="churn-data")
    ll.registry.register(run, "churn")
    lineage = ll.registry.lineage("churn", 1)
    [data] = lineage["datasets"]
    version = ll.datasets.get("churn-data")
    assert data["ref"] == "churn-data@1" and data["found"] and data["digest_matches"]
    assert data["digest"] == version.hash and data["row_count"] == 60
    assert [f["digest"] for f in data["files"]] == [f.digest for f in version.files]
    assert lineage["run"]["id"] == run.id and lineage["run"]["params"]["seed"] == "1"
    assert lineage["model_version"]["version"] == 1
    assert lineage["logged_model"]["flavor"] == "sklearn"
    assert lineage["deployments"] == []
    assert ll.registry.lineage("churn", "latest")["run_id"] == run.id


def test_lineage_describes_the_one_version_the_run_read(ctx: Context) -> None:
    # lineage read every version of each input dataset (file lists included) to find one.
    ll.datasets.register("many", _frame(n=10, seed=1))
    ll.datasets.register("many", _frame(n=20, seed=2))
    with ll.start_run(experiment="churn") as run:
        df = ll.datasets.get("many", 2).to_pandas()
        clf = LogisticRegression().fit(df[["tenure", "spend"]], df["churned"])
        run.log_model(clf, "model", input_example=df[["tenure", "spend"]].head(3))
        run.log_input("dataset", "many", "7", "0" * 64)  # a version that does not exist
        run.log_input("dataset", "gone", "1", "0" * 64)  # a dataset that does not exist
    ll.datasets.register("many", _frame(n=30, seed=3))
    ll.registry.register(run, "churn")
    entries = {(d["name"], d["version"]): d for d in ll.registry.lineage("churn", 1)["datasets"]}
    read = entries[("many", "2")]
    assert read["found"] and read["digest_matches"] and read["ref"] == "many@2"
    assert read["row_count"] == 20 and read["file_count"] == len(ll.datasets.get("many", 2).files)
    assert not entries[("many", "7")]["found"] and not entries[("gone", "1")]["found"]


def test_lineage_lists_the_deployments_a_version_took_part_in(ctx: Context) -> None:
    for seed in (1, 2):
        ll.registry.register(_train(seed=seed), "churn")
    ll.deploy("churn", 1, reason="first release")
    ll.deploy("churn", 2, strategy="canary", steps=[50, 100])
    one = ll.registry.lineage("churn", 1)["deployments"]
    assert [e["action"] for e in one] == ["deploy.direct", "deploy.canary"]
    assert one[0]["reason"] == "first release" and one[0]["after"]["stable"] == 1
    two = ll.registry.lineage("churn", 2)["deployments"]
    assert [(e["action"], e["after"]["candidate"]) for e in two] == [("deploy.canary", 2)]
    assert orjson.dumps(one)  # plain JSON data, as the CLI's --json prints it


def test_versions_registered_by_the_mlflow_client_explain_how_to_load(ctx: Context) -> None:
    registry_versions.create_model_version(ctx, "legacy", source="runs:/abc/model", run_id=None)
    with pytest.raises(InvalidInput, match="logged by the MLflow client") as info:
        ll.registry.load("models:/legacy/1")
    assert "mlflow.pyfunc.load_model('models:/legacy/1')" in str(info.value)
    v = ll.registry.get("legacy", 1)
    assert v.flavor is None and v.run is None and v.datasets == []


@pytest.mark.filterwarnings("ignore::Warning:mlflow")
def test_a_model_logged_by_the_mlflow_client_is_explained_not_unpickled(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import mlflow.sklearn

    from tests.server.conftest import start_server, stop_server

    proc, url = start_server(ctx.settings.metadata_uri, ctx.settings.artifacts_uri)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
        monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        mlflow.set_tracking_uri(url)
        mlflow.set_registry_uri(url)
        mlflow.set_experiment("mlflow-side")
        X = _frame()[["tenure", "spend"]]
        with mlflow.start_run() as run:
            mlflow.sklearn.log_model(
                LogisticRegression().fit(X, X["spend"] > 5),
                name="model",
                registered_model_name="from-mlflow",
                pip_requirements=["scikit-learn"],  # not inferred: see test_mlflow_logged_models
            )
    finally:
        monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        stop_server(proc)
    with pytest.raises(InvalidInput, match="logged by the MLflow client: it has an MLmodel"):
        ll.registry.load("models:/from-mlflow/1")
    v = ll.registry.get("from-mlflow", 1)
    assert v.flavor is None and v.run_id == run.info.run_id
    assert ll.registry.lineage("from-mlflow", 1)["run"]["id"] == run.info.run_id
