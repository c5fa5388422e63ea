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


def test_the_image_installs_a_wheel_of_the_running_loopline_from_the_build_context(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    # It installed loopline==VERSION from PyPI: nothing published yet, or not the code
    # that logged and serves the model.
    import os
    import subprocess
    import sys
    import time
    import zipfile

    import loopline

    data = toy_data(200)
    register(good_model(data), "churn", data)
    started = time.perf_counter()
    files = package("models:/churn", tmp_path / "pkg")
    took = time.perf_counter() - started
    (wheel,) = (tmp_path / "pkg" / "wheels").iterdir()
    assert wheel in files and wheel.name == f"loopline-{loopline.__version__}-py3-none-any.whl"
    docker = (tmp_path / "pkg" / "Dockerfile").read_text()
    assert "COPY wheels/ /tmp/wheels/" in docker, docker
    assert f'ARG LOOPLINE_SPEC="/tmp/wheels/{wheel.name}"' in docker
    assert not [x for x in docker.splitlines() if "loopline==" in x and not x.startswith("#")]
    root = Path(loopline.__file__).parent
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        # The running code, this very file's bytes among them.
        assert zf.read("loopline/serving/package.py") == (root / "serving/package.py").read_bytes()
    on_disk = {
        f"loopline/{p.relative_to(root).as_posix()}"
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert {n for n in names if n.startswith("loopline/")} == on_disk
    # pip takes it as it is, offline, with the package data and the command.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(target), str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    assert (target / "loopline/server/ui/templates/base.html").is_file()
    entry_points = next(target.glob("loopline-*.dist-info")) / "entry_points.txt"
    assert "loopline = " in entry_points.read_text()
    where = subprocess.run(
        [sys.executable, "-c", "import loopline; print(loopline.__file__)"],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True, text=True, check=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert where.stdout.strip() == str(target / "loopline" / "__init__.py")
    assert took < 30, f"package took {took:.1f} s"


def test_a_loopline_spec_replaces_the_wheel(embedded_ctx: Context, tmp_path: Path) -> None:
    data = toy_data(200)
    register(good_model(data), "churn", data)
    package("models:/churn", tmp_path / "pkg", loopline_spec="loopline==0.1.0")
    docker = (tmp_path / "pkg" / "Dockerfile").read_text()
    assert 'ARG LOOPLINE_SPEC="loopline==0.1.0"' in docker, docker
    assert list((tmp_path / "pkg" / "wheels").iterdir()) == []  # COPY needs the folder
