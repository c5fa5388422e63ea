"""Every route the installed MLflow client's protos define for tracking, the registry and
the artifact proxy is served by ``loopline server``, except the ones listed here on purpose
(and in docs/migrating-from-mlflow.md): a client upgrade that adds a route fails this test
instead of a user's script."""

from __future__ import annotations

import importlib
import re

import pytest

pytest.importorskip("mlflow")
from fastapi.routing import iter_route_contexts

from loopline.config import Settings
from loopline.core.context import Context
from loopline.server.app import create_app

#: The services of the tracking API, the registry and the artifact proxy.
_SERVICES = {
    "service_pb2": "MlflowService",
    "model_registry_pb2": "ModelRegistryService",
    "mlflow_artifacts_pb2": "MlflowArtifactsService",
}
#: Path families of MLflow 3's GenAI features and its gateway, not served (see the docs).
_GENAI = re.compile(
    r"/mlflow/(traces|unified-traces|get-online-trace-details|datasets|scorers|gateway|"
    r"issues|label-schemas|review-queues|prompt-optimization|workspaces|webhooks)\b"
    r"|search-datasets"
)
#: Tracking and registry routes left unserved on purpose, and why (the docs say so too).
UNSERVED = {
    # stages are deprecated in MLflow: aliases replace them (ENDPOINT_NOT_FOUND says so)
    ("POST", "/api/2.0/mlflow/model-versions/transition-stage"),
    # logged models are kept; their files are read through the artifact proxy
    ("DELETE", "/api/2.0/mlflow/logged-models/{}"),
    ("GET", "/api/2.0/mlflow/logged-models/{}/artifacts/directories"),
    # MLflow 2's model history tag, which the MLflow 3 client no longer sends
    ("POST", "/api/2.0/mlflow/runs/log-model"),
    # cloud storage URLs and multipart uploads: artifacts go through the proxy
    ("POST", "/api/2.0/mlflow/artifacts/presigned-download-url"),
    ("POST", "/api/2.0/mlflow/artifacts/presigned-upload-url"),
    ("POST", "/api/2.0/mlflow-artifacts/mpu/abort/{}"),
    ("POST", "/api/2.0/mlflow-artifacts/mpu/complete/{}"),
    ("POST", "/api/2.0/mlflow-artifacts/mpu/create/{}"),
    ("GET", "/api/2.0/mlflow-artifacts/presigned/{}"),
}


def _shape(path: str) -> str:
    """A path with each parameter as ``{}`` (the protos write ``<path:x>`` or ``{x}``)."""
    return re.sub(r"<[^>]*>|\{[^}]*\}", "{}", path)


def _client_routes() -> set[tuple[str, str]]:
    from mlflow.protos import databricks_pb2

    found = set()
    for module, service in _SERVICES.items():
        descriptor = importlib.import_module(f"mlflow.protos.{module}").DESCRIPTOR
        for method in descriptor.services_by_name[service].methods:
            for endpoint in method.GetOptions().Extensions[databricks_pb2.rpc].endpoints:
                path = f"/api/{endpoint.since.major or 2}.0{endpoint.path}"
                if not _GENAI.search(path):
                    found.add((endpoint.method, _shape(path)))
    return found


def _served_routes() -> set[tuple[str, str]]:
    app = create_app(Context(Settings(uri="sqlite:///:memory:")))
    return {
        (method, _shape(str(route.path)))
        for route in iter_route_contexts(app.routes)
        for method in route.methods or ()
    }


def test_every_tracking_and_registry_route_of_the_client_is_served_or_listed() -> None:
    client = _client_routes()
    assert len(client) > 60, "the protos were read"
    missing = client - _served_routes()
    assert missing == UNSERVED, f"served now: {UNSERVED - missing}; new: {missing - UNSERVED}"
