"""``loopline server --auth``, endpoint by endpoint: 401 without a token, 403 a role too low.

The endpoints come from the server's own ``/openapi.json`` (Loopline's API v1, the
MLflow-compatible tracking, registry and artifact routes) plus the routes the schema leaves
out (the UI's pages): a route added to the app is swept here without anyone listing it,
and fails until the access table gives it a role.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

import loopline
from loopline.core import audit, auth
from loopline.core.access import DENY, PUBLIC
from loopline.core.context import Context
from loopline.server.access import RULES, TABLE
from loopline.server.app import create_app

with warnings.catch_warnings():
    # Starlette asks for its httpx fork ("httpx2"); the test client works the same on httpx.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

LOWER: dict[str, str | None] = {"viewer": None, "editor": "viewer", "admin": "editor"}
#: The server answers loopback names only (TestClient's default, "testserver", is refused).
LOCAL = "http://127.0.0.1:5000"


class Setup:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tokens: dict[str, str] = {
            role: auth.create_token(ctx.engine, role, name=role, actor="test").token
            for role in auth.ROLES
        }
        self.app = create_app(ctx)

    def client(self, role: str | None = None) -> TestClient:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return TestClient(self.app, headers=headers, follow_redirects=False, base_url=LOCAL)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    ctx = loopline.init(
        uri=f"sqlite:///{tmp_path / 'meta.db'}", artifacts=str(tmp_path / "art"), auth=True
    )
    setup = Setup(ctx)
    yield setup
    setup.app.state.token_cache.stop()
    ctx.close()


def _app_routes(app: FastAPI) -> set[tuple[str, str]]:
    routes = set()
    for r in iter_route_contexts(app.routes):
        pattern = str(r.path)
        methods = r.methods or {"GET"}  # a mount (static files) answers GET
        if not r.methods:
            pattern = pattern.rstrip("/") + "/{path:path}"
        routes |= {(m, pattern) for m in methods if m != "HEAD"}
    return routes


def _endpoints(s: Setup) -> list[tuple[str, str]]:
    answer = s.client("viewer").get("/openapi.json")
    assert answer.status_code == 200, answer.text
    schema = answer.json()
    documented = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    # OpenAPI writes {path:path} as {path}; the sweep uses the app's own patterns.
    routes = {(m, p.replace(":path}", "}")): (m, p) for m, p in _app_routes(s.app)}
    mlflow = {e for e in routes if e[1].startswith("/api/2.0/mlflow")}
    assert len(mlflow) > 50 and mlflow <= documented, "MLflow routes are in the description"
    return sorted({routes.get(e, e) for e in documented} | set(routes.values()))


def _concrete(pattern: str) -> str:
    path = re.sub(r"\{[^}]+:path\}", "dir/file.txt", pattern)
    return re.sub(r"\{[^}]+\}", "x1", path)


def _send(client: TestClient, method: str, pattern: str) -> httpx.Response:
    path = _concrete(pattern)
    if method in ("POST", "PUT", "PATCH"):
        return client.request(method, path, json={})
    return client.request(method, path)


def _call(client: TestClient, method: str, pattern: str) -> int:
    return _send(client, method, pattern).status_code


def test_every_route_of_the_app_has_a_role_in_the_table(setup: Setup) -> None:
    missing = [e for e in _app_routes(setup.app) if not TABLE.covers(*e)]
    assert missing == [], f"routes without a role in loopline/server/access.py: {missing}"


def test_every_endpoint_refuses_no_token_and_a_role_too_low_and_admits_the_role(
    setup: Setup,
) -> None:
    anonymous = setup.client()
    clients: dict[str, TestClient] = {role: setup.client(role) for role in auth.ROLES}
    endpoints = _endpoints(setup)
    assert len(endpoints) > 90
    checked = 0
    for method, pattern in endpoints:
        need = TABLE.lookup(method, _concrete(pattern))
        assert need != DENY, f"{method} {pattern} has no role"
        where = f"{method} {pattern} (needs {need})"
        if need == PUBLIC:
            # Not refused by the gate (the login form itself answers 401 to a bad token).
            assert "www-authenticate" not in _send(anonymous, method, pattern).headers, where
            continue
        r = anonymous.request(method, _concrete(pattern))
        assert r.status_code == 401, where
        assert r.headers["www-authenticate"].startswith("Bearer"), where
        lower = LOWER[need]
        if lower is not None:
            assert _call(clients[lower], method, pattern) == 403, where
        assert _call(clients[need], method, pattern) not in (401, 403), where
        checked += 1
    assert checked > 80


def test_the_refusals_are_json_naming_what_is_needed(setup: Setup) -> None:
    r = setup.client().post("/api/2.0/mlflow/runs/search", json={})
    assert r.status_code == 401
    assert r.json()["error_code"] == "UNAUTHENTICATED"
    assert "MLFLOW_TRACKING_TOKEN" in r.json()["message"]
    r = setup.client("viewer").post("/api/2.0/mlflow/runs/create", json={})
    assert r.status_code == 403
    assert r.json()["error_code"] == "PERMISSION_DENIED"
    assert "needs the role 'editor'; token 'viewer' has 'viewer'" in r.json()["message"]
    r = setup.client("editor").delete("/api/v1/runs/abc")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "PERMISSION_DENIED"
    assert "needs the role 'admin'" in r.json()["error"]["message"]
    bad = TestClient(setup.app, headers={"Authorization": "Bearer ll_made-up"}, base_url=LOCAL)
    r = bad.get("/api/v1/whoami")
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert "not valid" in r.json()["error"]["message"]
    r = TestClient(setup.app, headers={"Authorization": "Basic YTpi"}, base_url=LOCAL).get(
        "/api/v1/whoami"
    )
    assert r.status_code == 401


def test_a_route_added_without_a_role_is_refused_even_to_admin(setup: Setup) -> None:
    @setup.app.get("/api/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {"secret": "yes"}

    assert not TABLE.covers("GET", "/api/v1/forgotten")
    assert setup.client().get("/api/v1/forgotten").status_code == 401
    r = setup.client("admin").get("/api/v1/forgotten")
    assert r.status_code == 403
    assert "has no role in the access table" in r.json()["error"]["message"]
    # A path that is no route at all is a 404 for a valid token, a 401 without one.
    assert setup.client("viewer").get("/api/v1/no-such-thing").status_code == 404
    assert setup.client().get("/api/v1/no-such-thing").status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/2.0/mlflow/runs/delete"),
        ("PUT", "/api/v1/tokens"),
        ("OPTIONS", "/api/v1/tokens"),
        ("TRACE", "/api/2.0/mlflow/runs/search"),
        ("DELETE", "/runs"),
        ("POST", "/_ui/static/ui.css"),
    ],
)
def test_another_method_of_a_route_is_a_405_not_a_forgotten_route(
    setup: Setup, method: str, path: str
) -> None:
    # It was a 403 saying the route "has no role in the access table ... a bug in
    # Loopline": the route has one, for its own methods; this method is simply not served.
    assert setup.client().request(method, path).status_code == 401
    r = setup.client("admin").request(method, path)
    assert r.status_code == 405, r.text
    assert "access table" not in r.text


def test_health_stays_open_and_metrics_needs_a_viewer(setup: Setup) -> None:
    assert setup.client().get("/health").status_code == 200
    assert setup.client().get("/metrics").status_code == 401
    assert setup.client("viewer").get("/metrics").status_code == 200


def test_the_log_metric_fast_path_is_behind_the_gate(setup: Setup) -> None:
    body = {"run_id": "x", "key": "k", "value": 1.0, "timestamp": 0, "step": 0}
    for path in ("/api/2.0/mlflow/runs/log-metric", "/ajax-api/2.0/mlflow/runs/log-metric"):
        assert setup.client().post(path, json=body).status_code == 401
        assert setup.client("viewer").post(path, json=body).status_code == 403


def test_every_fast_path_route_is_behind_the_gate(setup: Setup) -> None:
    from loopline.server.fast_routes import ROUTES

    body = {"run_id": "x", "key": "k", "value": "v", "experiment_id": "0"}
    for method, path in ROUTES:
        if method == "GET":
            anonymous = setup.client().get(path, params={"run_id": "x", "experiment_id": "0"})
            assert anonymous.status_code == 401, path
        else:
            assert setup.client().post(path, json=body).status_code == 401, path
            assert setup.client("viewer").post(path, json=body).status_code == 403, path


def test_tokens_over_http_are_admin_only_audited_and_revocation_is_immediate(
    setup: Setup,
) -> None:
    admin = setup.client("admin")
    assert setup.client("editor").get("/api/v1/tokens").status_code == 403
    r = admin.post("/api/v1/tokens", json={"role": "viewer", "name": "grafana"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    grafana = TestClient(setup.app, headers={"Authorization": f"Bearer {token}"}, base_url=LOCAL)
    assert grafana.get("/api/v1/whoami").json() == {
        "auth": True,
        "name": "grafana",
        "role": "viewer",
    }
    listed = admin.get("/api/v1/tokens").json()
    assert {t["name"] for t in listed} == {"viewer", "editor", "admin", "grafana"}
    assert token not in str(listed)
    assert admin.delete("/api/v1/tokens/grafana").status_code == 200
    assert grafana.get("/api/v1/whoami").status_code == 401
    assert admin.delete("/api/v1/tokens/grafana").status_code == 409
    events = audit.events(setup.ctx.engine, object_type="token", object_id="grafana")
    assert [(e.action, e.actor) for e in events] == [
        ("token.create", "token:admin"),
        ("token.revoke", "token:admin"),
    ]


def test_without_auth_everything_is_open_but_the_token_api(tmp_path: Path) -> None:
    ctx = loopline.init(uri=f"sqlite:///{tmp_path / 'm.db'}", artifacts=str(tmp_path / "a"))
    client = TestClient(create_app(ctx), base_url=LOCAL)
    assert client.get("/api/v1/whoami").json() == {"auth": False, "name": None, "role": "admin"}
    assert client.post("/api/2.0/mlflow/experiments/search", json={}).status_code == 200
    r = client.post("/api/v1/tokens", json={"role": "admin"})
    assert r.status_code == 403
    assert "--auth" in r.json()["error"]["message"]
    ctx.close()


# -- the UI --------------------------------------------------------------------------------


def test_a_browser_logs_in_with_an_httponly_samesite_strict_cookie(setup: Setup) -> None:
    browser = setup.client()
    r = browser.get("/runs?filter=x")
    assert r.status_code == 401
    assert "text/html" in r.headers["content-type"]
    assert 'name="token"' in r.text and 'value="/runs?filter=x"' in r.text
    assert browser.get("/_ui/static/ui.css").status_code == 200  # the form's styles

    r = browser.post("/login", data={"token": "ll_wrong", "next": "/runs"})
    assert r.status_code == 401 and "not valid" in r.text
    r = browser.post("/login", data={"token": setup.tokens["viewer"], "next": "/runs"})
    assert r.status_code == 303 and r.headers["location"] == "/runs"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert browser.get("/runs").status_code == 200
    assert browser.post("/audit/verify").status_code == 200
    # The cookie opens the UI only: the API wants the header.
    assert browser.get("/api/v1/whoami").status_code == 401
    # A form posted from another site is refused even if a browser sent the cookie.
    r = browser.post("/audit/verify", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = browser.post("/logout")
    assert r.status_code == 303 and 'loopline_token=""' in r.headers["set-cookie"]


def test_a_logged_in_browser_downloads_the_artifacts_a_run_page_links(
    setup: Setup, tmp_path: Path
) -> None:
    # The run page linked the MLflow artifact route, which takes no cookie: every download
    # was a 401 for a browser logged in with --auth.
    (tmp_path / "report.html").write_text("<script>alert(1)</script>")
    with loopline.start_run(experiment="e") as run:
        run.log_artifact(str(tmp_path / "report.html"), artifact_path="out")
    browser = setup.client()
    r = browser.post("/login", data={"token": setup.tokens["viewer"], "next": "/"})
    assert r.status_code == 303
    links = re.findall(r'href="(/runs/[^"]+/artifact[^"]*)"', browser.get(f"/runs/{run.id}").text)
    assert len(links) >= 2  # out/report.html and loopline/environment.json
    for link in links:
        answer = browser.get(link.replace("&amp;", "&"))
        assert answer.status_code == 200, (link, answer.text[:300])
        assert answer.headers["content-disposition"].startswith("attachment;")
    assert setup.client().get(links[0]).status_code == 401  # the cookie is what let it in


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:8888"},  # another port of this machine: another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
    ids=["other-site", "opaque-origin", "other-port", "fetch-cross-site", "fetch-same-site"],
)
def test_login_and_logout_forms_posted_from_another_origin_are_refused(
    setup: Setup, headers: dict[str, str]
) -> None:
    # Login CSRF: a page on another site posted its own token to /login and the browser
    # got the attacker's cookie (what the user logged then went to the attacker's name);
    # or it posted /logout.
    browser = setup.client()
    r = browser.post("/login", data={"token": setup.tokens["viewer"]}, headers=headers)
    assert r.status_code == 403, r.text
    assert "set-cookie" not in r.headers and "another site" in r.text
    assert browser.post("/login", data={"token": setup.tokens["viewer"]}).status_code == 303
    r = browser.post("/logout", headers=headers)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    assert browser.get("/runs").status_code == 200  # still logged in


def test_login_from_the_servers_own_form_works(setup: Setup) -> None:
    browser = setup.client()
    own = {"Origin": LOCAL, "Sec-Fetch-Site": "same-origin"}
    r = browser.post("/login", data={"token": setup.tokens["viewer"]}, headers=own)
    assert r.status_code == 303, r.text
    r = browser.post("/logout", headers={**own, "Sec-Fetch-Site": "none"})
    assert r.status_code == 303


def test_a_host_name_not_allowed_is_refused_before_the_token_is_asked(setup: Setup) -> None:
    # DNS rebinding: a page of attacker.example calls this server by that name.
    for path in ("/api/v1/whoami", "/api/2.0/mlflow/experiments/search", "/runs", "/login"):
        r = setup.client("admin").get(path, headers={"Host": "attacker.example:5000"})
        assert r.status_code == 403, path
        assert "'attacker.example:5000'" in r.text and "--allowed-hosts" in r.text, path
    assert setup.client().get("/health", headers={"Host": "10.0.0.7:5000"}).status_code == 200


def test_login_never_redirects_off_the_server(setup: Setup) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        r = setup.client().post("/login", data={"token": setup.tokens["viewer"], "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/", target


def test_ui_pages_need_a_viewer_and_show_a_403_page_to_nobody_else(setup: Setup) -> None:
    ui = [(m, p) for m, p, need in RULES if not p.startswith(("/api", "/_ui")) and need != PUBLIC]
    assert ("POST", "/audit/verify") in ui and ("GET", "/") in ui
    for method, pattern in ui:
        if pattern in ("/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"):
            continue
        assert setup.client().request(method, _concrete(pattern)).status_code == 401, pattern
        status = setup.client("viewer").request(method, _concrete(pattern)).status_code
        assert status not in (401, 403), pattern


def test_changes_made_through_the_server_are_audited_as_the_token(setup: Setup) -> None:
    r = setup.client("editor").post("/api/2.0/mlflow/experiments/create", json={"name": "e1"})
    assert r.status_code == 200, r.text
    r = setup.client("editor").post("/api/v1/runs", json={"experiment": "e2"})
    assert r.status_code == 201, r.text
    r = setup.client("admin").delete(f"/api/v1/runs/{r.json()['id']}")
    assert r.status_code == 200, r.text
    actors = {(e.action, e.actor) for e in audit.events(setup.ctx.engine)}
    assert {a for _, a in actors if not _.startswith("token.")} == {
        "token:editor",
        "token:admin",
    }


def test_a_fast_path_write_is_audited_under_the_tokens_actor(setup: Setup) -> None:
    # The MLflow fast path runs its transaction in a worker thread; the actor the token gate
    # set for the request must still reach the audit log there.
    editor = setup.client("editor")
    r = editor.post("/api/2.0/mlflow/experiments/create", json={"name": "audited"})
    assert r.status_code == 200, r.text
    r = editor.post(
        "/api/2.0/mlflow/runs/create",
        json={"experiment_id": r.json()["experiment_id"], "start_time": 1},
    )
    assert r.status_code == 200, r.text
    run_id = r.json()["run"]["info"]["run_id"]
    events = audit.events(setup.ctx.engine, object_type="run", object_id=run_id)
    assert [(e.action, e.actor) for e in events] == [("run.create", "token:editor")]


def test_head_is_answered_as_get_with_the_same_role_and_no_body(setup: Setup) -> None:
    # FastAPI adds no HEAD to a GET route: HEAD /health and every UI page were a 405, and
    # load balancers and uptime checkers probe with HEAD. Each GET endpoint now answers
    # HEAD with the GET's status and headers, to every role alike, and no body.
    anonymous = setup.client()
    clients = {None: anonymous, **{role: setup.client(role) for role in auth.ROLES}}
    gets = [pattern for method, pattern in _endpoints(setup) if method == "GET"]
    assert {"/health", "/", "/runs", "/models", "/metrics"} <= set(gets)
    for pattern in gets:
        path = _concrete(pattern)
        for role, client in clients.items():
            got, head = client.get(path), client.head(path)
            where = f"HEAD {pattern} as {role}"
            assert head.status_code == got.status_code, (where, head.text)
            assert head.content == b"", where
            assert head.headers.get("content-type") == got.headers.get("content-type"), where
    health = anonymous.head("/health")
    assert health.status_code == 200
    assert int(health.headers["content-length"]) == len(anonymous.get("/health").content)
    assert anonymous.head("/runs").status_code == 401
    assert clients["viewer"].head("/runs").status_code == 200
    assert anonymous.head("/metrics").status_code == 401
    assert clients["viewer"].head("/metrics").status_code == 200
