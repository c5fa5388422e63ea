"""``loopline package``: the Dockerfile and manifests install and probe what the model needs."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import loopline as ll
from loopline.core.context import Context
from loopline.serving.package import package
from tests.serving.helpers import FEATURES, good_model, register, toy_data


def _deployment(folder: Path) -> dict[str, object]:
    text = (folder / "k8s" / "deployment.yaml").read_text()
    # An anchor (&id001) and its alias (*id001) are valid YAML that some manifest tools
    # (older kustomize, kyaml-based ones) do not take: each object is written out in full.
    assert "&id" not in text and "*id" not in text, text
    doc: dict[str, object] = yaml.safe_load(text)
    return doc


def test_the_probes_are_written_out_and_a_slow_load_gets_a_startup_probe(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    data = toy_data(200)
    register(good_model(data), "churn", data)
    package("models:/churn", tmp_path / "pkg")
    doc = _deployment(tmp_path / "pkg")
    kubernetes_validate.validate(doc, "1.30.0", strict=True)
    container = doc["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    # Readiness waits for the models; liveness and startup only for the process: on
    # /health, 503 while no version of the deployment loads, liveness restarted the pod
    # in a loop where the server would have loaded the model on its own next retry.
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    startup = container["startupProbe"]
    # The server answers no HTTP while it loads the models at start: liveness alone killed
    # a pod after 60 s.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_the_image_runs_the_python_the_model_was_logged_with(
    embedded_ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopline.training import models

    real = models.installed_version
    monkeypatch.setattr(
        models, "installed_version", lambda dist: "3.12.4" if dist == "python" else real(dist)
    )
    data = toy_data(200)
    version = register(good_model(data), "churn", data)
    monkeypatch.undo()
    package(f"models:/churn/{version}", tmp_path / "pkg")
    docker = (tmp_path / "pkg" / "Dockerfile").read_text()
    assert "FROM python:3.12-slim" in docker, docker


def test_a_model_following_its_deployment_gets_the_libraries_of_the_deployed_versions(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    import xgboost

    data = toy_data(200)
    booster = xgboost.XGBClassifier(n_estimators=5, max_depth=2)
    deployed = register(booster.fit(data[FEATURES], data["label"]), "churn", data)
    register(good_model(data), "churn", data)  # the latest version: scikit-learn only
    ll.deploy("churn", deployed)
    package("models:/churn", tmp_path / "pkg")
    docker = (tmp_path / "pkg" / "Dockerfile").read_text()
    # The replicas serve the deployed XGBoost version: the image must be able to load it.
    assert f'"xgboost=={xgboost.__version__}"' in docker, docker
