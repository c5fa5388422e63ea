"""What ``loopline server`` sends besides the data: no page that needs a CDN, nosniff."""

from __future__ import annotations

import httpx


def test_no_api_browser_pages_load_from_a_cdn(server_url: str) -> None:
    # /docs and /redoc were Swagger UI and ReDoc pages loading their scripts from
    # cdn.jsdelivr.net: blank without network, and a third party's code on this origin.
    with httpx.Client(base_url=server_url, timeout=30) as client:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            r = client.get(path)
            assert r.status_code == 404, path
            assert "jsdelivr" not in r.text and "<script" not in r.text, path
        r = client.get("/docs")
        assert "/openapi.json" in r.json()["error"]["hint"]
        assert client.get("/openapi.json").json()["openapi"].startswith("3.")


def test_answers_say_nosniff(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=30) as client:
        created = client.post("/api/2.0/mlflow/runs/create", json={"experiment_id": "0"})
        run_id = created.json()["run"]["info"]["run_id"]
        answers = {
            "static file": client.get("/_ui/static/ui.css"),
            "page": client.get("/"),
            "health": client.get("/health"),
            "fast path": created,
            "fast path error": client.post(
                "/api/2.0/mlflow/runs/log-metric",
                json={"run_id": "0" * 32, "key": "a", "value": 1, "timestamp": 1},
            ),
            "route": client.get(f"/api/v1/runs/{run_id}"),
            "route error": client.get("/api/v1/runs/nope"),
            "no route": client.get("/api/v1/nothing-here"),
            "validation error": client.post("/api/v1/runs", json={"experiment": 1}),
        }
        for what, answer in answers.items():
            assert answer.headers.get("x-content-type-options") == "nosniff", (what, answer)
        assert answers["fast path error"].status_code == 404
        assert answers["route error"].status_code == 404
        # Once per answer, also where the page set it already.
        assert answers["page"].headers.get_list("x-content-type-options") == ["nosniff"]


def test_head_answers_health_and_the_pages_like_get_without_a_body(server_url: str) -> None:
    # A load balancer's or uptime checker's HEAD /health was a 405 (FastAPI adds no HEAD
    # to a GET route), and so was HEAD on every UI page.
    with httpx.Client(base_url=server_url, timeout=30) as client:
        for path in ("/health", "/", "/runs", "/models", "/deployments", "/metrics"):
            got, head = client.get(path), client.head(path)
            assert got.status_code == 200, path
            assert head.status_code == 200, (path, head.status_code)
            assert head.content == b"", path
            assert head.headers["content-type"] == got.headers["content-type"], path
        assert client.head("/health").headers["content-length"] == str(
            len(client.get("/health").content)
        )
        assert client.head("/api/v1/nothing-here").status_code == 404
