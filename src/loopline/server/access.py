"""The role every endpoint of ``loopline server --auth`` needs: one explicit table.

Roles follow MLflow's own permission model (READ, EDIT, MANAGE):

* ``viewer`` reads: every GET, and the POSTs that only search or read (MLflow's
  ``runs/search``, ``experiments/search``, ``registered-models/search``,
  ``get-latest-versions``, Loopline's ``/api/v1/.../search``) and the UI's audit "verify",
  which checks the log without changing it;
* ``editor`` writes what work produces: experiments, runs, params, metrics, tags,
  artifacts, registered models, versions, aliases (which is how a model is promoted);
* ``admin`` deletes and restores (as MLflow's MANAGE does) and manages tokens - and every
  administrative endpoint still to come (policies, loop pause/resume, forced rollbacks).

:data:`PUBLIC` endpoints need no token: ``/health`` (load balancers, probes), the UI's
login form and its static files (CSS and the chart library, no data). ``/metrics`` needs a
viewer token: Prometheus sends one with ``authorization: {credentials: ...}`` in its
scrape config, and the counters tell who uses which model.

A route not in :data:`RULES` is refused to everyone (403), and
``tests/server/test_auth_routes.py`` fails for it: adding an endpoint means adding its row.

Example:
    >>> TABLE.lookup("POST", "/api/2.0/mlflow/runs/search")
    'viewer'
"""

from __future__ import annotations

from loopline.core.access import PUBLIC, AccessTable, Rule

_MLF = "/api/2.0/mlflow"
_ART = "/api/2.0/mlflow-artifacts"
_V1 = "/api/v1"

RULES: list[Rule] = [
    # -- operations and documentation ------------------------------------------------
    ("GET", "/health", PUBLIC),
    ("GET", "/metrics", "viewer"),
    ("GET", "/openapi.json", "viewer"),
    ("GET", "/docs", "viewer"),
    ("GET", "/redoc", "viewer"),
    # -- Loopline REST API v1 ----------------------------------------------------------
    ("POST", f"{_V1}/experiments", "editor"),
    ("GET", f"{_V1}/experiments/by-name", "viewer"),
    ("GET", f"{_V1}/experiments/{{experiment_id}}", "viewer"),
    ("POST", f"{_V1}/experiments/search", "viewer"),
    ("POST", f"{_V1}/runs", "editor"),
    ("POST", f"{_V1}/runs/search", "viewer"),
    ("GET", f"{_V1}/runs/{{run_id}}", "viewer"),
    ("PATCH", f"{_V1}/runs/{{run_id}}", "editor"),
    ("DELETE", f"{_V1}/runs/{{run_id}}", "admin"),
    ("POST", f"{_V1}/runs/{{run_id}}/restore", "admin"),
    ("POST", f"{_V1}/runs/{{run_id}}/log-batch", "editor"),
    ("GET", f"{_V1}/runs/{{run_id}}/metric-history", "viewer"),
    ("POST", f"{_V1}/runs/{{run_id}}/tags", "editor"),
    ("DELETE", f"{_V1}/runs/{{run_id}}/tags", "editor"),
    ("POST", f"{_V1}/runs/{{run_id}}/inputs", "editor"),
    ("GET", f"{_V1}/runs/{{run_id}}/artifacts", "viewer"),
    ("PUT", f"{_V1}/runs/{{run_id}}/artifacts/content", "editor"),
    ("GET", f"{_V1}/runs/{{run_id}}/artifacts/content", "viewer"),
    # monitoring: labels and business events feed live performance and the loop's triggers
    ("POST", f"{_V1}/monitor/labels", "editor"),
    ("POST", f"{_V1}/monitor/business", "editor"),
    ("GET", f"{_V1}/monitor/drift", "viewer"),
    # tokens (loopline.server.tokens_api)
    ("GET", f"{_V1}/whoami", "viewer"),
    ("GET", f"{_V1}/tokens", "admin"),
    ("POST", f"{_V1}/tokens", "admin"),
    ("DELETE", f"{_V1}/tokens/{{name}}", "admin"),
    # -- MLflow tracking ---------------------------------------------------------------
    ("POST", f"{_MLF}/experiments/create", "editor"),
    ("GET", f"{_MLF}/experiments/get", "viewer"),
    ("GET", f"{_MLF}/experiments/get-by-name", "viewer"),
    ("POST", f"{_MLF}/experiments/search", "viewer"),
    ("GET", f"{_MLF}/experiments/search", "viewer"),
    ("POST", f"{_MLF}/experiments/update", "editor"),  # rename: MLflow's EDIT permission
    ("POST", f"{_MLF}/experiments/delete", "admin"),
    ("POST", f"{_MLF}/experiments/restore", "admin"),
    ("POST", f"{_MLF}/experiments/set-experiment-tag", "editor"),
    ("POST", f"{_MLF}/experiments/delete-experiment-tag", "editor"),  # as runs/delete-tag
    ("POST", f"{_MLF}/runs/create", "editor"),
    ("POST", f"{_MLF}/runs/update", "editor"),
    ("GET", f"{_MLF}/runs/get", "viewer"),
    ("POST", f"{_MLF}/runs/delete", "admin"),
    ("POST", f"{_MLF}/runs/restore", "admin"),
    ("POST", f"{_MLF}/runs/search", "viewer"),
    ("POST", f"{_MLF}/runs/log-metric", "editor"),
    ("POST", f"{_MLF}/runs/log-parameter", "editor"),
    ("POST", f"{_MLF}/runs/set-tag", "editor"),
    ("POST", f"{_MLF}/runs/delete-tag", "editor"),
    ("POST", f"{_MLF}/runs/log-batch", "editor"),
    ("POST", f"{_MLF}/runs/log-inputs", "editor"),
    ("POST", f"{_MLF}/runs/outputs", "editor"),
    ("GET", f"{_MLF}/metrics/get-history", "viewer"),
    ("GET", f"{_MLF}/artifacts/list", "viewer"),
    ("GET", f"{_MLF}/metrics/get-history-bulk-interval", "viewer"),
    # -- MLflow model registry ---------------------------------------------------------
    ("POST", f"{_MLF}/registered-models/create", "editor"),
    ("GET", f"{_MLF}/registered-models/get", "viewer"),
    ("PATCH", f"{_MLF}/registered-models/update", "editor"),
    ("DELETE", f"{_MLF}/registered-models/delete", "admin"),
    ("POST", f"{_MLF}/registered-models/rename", "editor"),  # MLflow's EDIT permission
    ("GET", f"{_MLF}/registered-models/search", "viewer"),
    ("POST", f"{_MLF}/registered-models/search", "viewer"),
    ("POST", f"{_MLF}/registered-models/get-latest-versions", "viewer"),
    ("GET", f"{_MLF}/registered-models/get-latest-versions", "viewer"),
    ("POST", f"{_MLF}/registered-models/set-tag", "editor"),
    ("DELETE", f"{_MLF}/registered-models/delete-tag", "editor"),
    ("POST", f"{_MLF}/registered-models/alias", "editor"),
    ("DELETE", f"{_MLF}/registered-models/alias", "editor"),
    ("GET", f"{_MLF}/registered-models/alias", "viewer"),
    ("POST", f"{_MLF}/model-versions/create", "editor"),
    ("GET", f"{_MLF}/model-versions/get", "viewer"),
    ("PATCH", f"{_MLF}/model-versions/update", "editor"),
    ("DELETE", f"{_MLF}/model-versions/delete", "admin"),
    ("GET", f"{_MLF}/model-versions/search", "viewer"),
    ("POST", f"{_MLF}/model-versions/search", "viewer"),
    ("GET", f"{_MLF}/model-versions/get-download-uri", "viewer"),
    ("POST", f"{_MLF}/model-versions/set-tag", "editor"),
    ("DELETE", f"{_MLF}/model-versions/delete-tag", "editor"),
    ("POST", f"{_MLF}/logged-models", "editor"),
    ("POST", f"{_MLF}/logged-models/search", "viewer"),
    ("GET", f"{_MLF}/logged-models/{{model_id}}", "viewer"),
    ("PATCH", f"{_MLF}/logged-models/{{model_id}}", "editor"),
    ("POST", f"{_MLF}/logged-models/{{model_id}}/params", "editor"),
    ("PATCH", f"{_MLF}/logged-models/{{model_id}}/tags", "editor"),
    ("DELETE", f"{_MLF}/logged-models/{{model_id}}/tags/{{key}}", "editor"),
    # -- MLflow artifact proxy ---------------------------------------------------------
    ("PUT", f"{_ART}/artifacts/{{path:path}}", "editor"),
    ("GET", f"{_ART}/artifacts/{{path:path}}", "viewer"),
    ("GET", f"{_ART}/artifacts", "viewer"),
    ("DELETE", f"{_ART}/artifacts/{{path:path}}", "admin"),
    # -- web UI (pages read; the login form is open so that a browser can get in) ------
    ("GET", "/login", PUBLIC),
    ("POST", "/login", PUBLIC),
    ("POST", "/logout", PUBLIC),
    ("GET", "/_ui/static/{path:path}", PUBLIC),
    ("GET", "/", "viewer"),
    ("GET", "/runs", "viewer"),
    ("GET", "/compare", "viewer"),
    ("GET", "/runs/{run_id}", "viewer"),
    ("GET", "/runs/{run_id}/artifact", "viewer"),
    ("GET", "/datasets", "viewer"),
    ("GET", "/datasets/{name}", "viewer"),
    ("GET", "/datasets/{name}/diff", "viewer"),
    ("GET", "/models", "viewer"),
    ("GET", "/models/{name}", "viewer"),
    ("GET", "/models/{name}/versions/{version}", "viewer"),
    ("GET", "/deployments", "viewer"),
    ("GET", "/deployments/{name}", "viewer"),
    ("GET", "/monitoring", "viewer"),
    ("GET", "/audit", "viewer"),
    ("POST", "/audit/verify", "viewer"),
]

TABLE = AccessTable(RULES)
