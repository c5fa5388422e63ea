"""Every UI route answers 200 from a real ``loopline server`` and escapes what users named.

No browser: plain HTTP against the server process, on SQLite and on PostgreSQL, with the
store filled through the SDK (see :mod:`tests.ui.fill`). The list of URLs must cover every
route of :data:`loopline.server.ui.routes.router`, so a new page cannot go untested.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from markupsafe import escape

import loopline as ll
from loopline.core.context import Context
from loopline.server.ui.routes import router
from tests.server.conftest import start_server, stop_server
from tests.ui.fill import XSS_EXPERIMENT, XSS_NAME, XSS_PARAM, Filled, churn_frame, fill


@pytest.fixture
def served(ctx: Context) -> Iterator[tuple[str, Filled]]:
    """A filled store on each backend and a server on it."""
    filled = fill(ctx)
    proc, url = start_server(ctx.settings.metadata_uri, ctx.settings.artifacts_uri)
    try:
        yield url, filled
    finally:
        stop_server(proc)


def urls(f: Filled) -> dict[str, str]:
    """A URL for every route template of the UI router."""
    a, b = f.run_ids["logreg-lr0.1"], f.run_ids["forest-lr0.1"]
    return {
        "/": "/",
        "/runs": "/runs?filter=params.model+%3D+%27forest%27&order_by=metrics.auc+DESC",
        "/compare": f"/compare?run={a}&run={b}&run={f.xss_run_id}",
        "/runs/{run_id}": f"/runs/{f.xss_run_id}",
        "/datasets": "/datasets",
        "/datasets/{name}": "/datasets/churn-data?version=1",
        "/datasets/{name}/diff": "/datasets/churn-data/diff?a=1&b=2",
        "/models": "/models",
        "/models/{name}": "/models/churn",
        "/models/{name}/versions/{version}": "/models/churn/versions/2",
        "/deployments": "/deployments",
        "/deployments/{name}": "/deployments/churn",
        "/monitoring": "/monitoring?reference=churn-data%401&current=churn-data%402",
        "/audit": "/audit",
    }


def test_every_ui_route_answers_200_and_escapes_user_text(served: tuple[str, Filled]) -> None:
    url, filled = served
    pages = urls(filled)
    routes = {getattr(r, "path", "") for r in router.routes}
    # Not pages: verify is a POST, an artifact is a download (test_artifact_links_download).
    assert set(pages) == routes - {"/audit/verify", "/runs/{run_id}/artifact"}, (
        "add the new route to urls()"
    )
    with httpx.Client(base_url=url, timeout=60) as client:
        bodies = {}
        for template, path in pages.items():
            response = client.get(path)
            assert response.status_code == 200, f"{path}: {response.text[:500]}"
            assert response.headers["content-type"].startswith("text/html")
            assert "script-src 'self'" in response.headers["content-security-policy"]
            bodies[template] = response.text
        verify = client.post("/audit/verify")
        assert verify.status_code == 200 and "Intact" in verify.text
        bodies["/audit/verify"] = verify.text
        # Without --auth too, another site's page cannot make the server walk the chain.
        for header in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            refused = client.post("/audit/verify", headers=header)
            assert refused.status_code == 403, header
            assert "posted from another site" in refused.text and "Intact" not in refused.text
        same = client.post(
            "/audit/verify", headers={"Origin": url, "Sec-Fetch-Site": "same-origin"}
        )
        assert same.status_code == 200 and "Intact" in same.text

        # What users typed never comes back as markup, only as text.
        for template, body in bodies.items():
            assert "<script>alert" not in body, template
            assert "<img src=x" not in body, template
            assert "<b>bold</b>" not in body, template
        for template in ("/runs/{run_id}", "/compare"):
            assert escape(XSS_NAME) in bodies[template], template
            assert escape(XSS_EXPERIMENT) in bodies[template], template
        assert escape(XSS_PARAM) in bodies["/runs/{run_id}"]
        assert escape("<b>bold</b>") in bodies["/runs/{run_id}"]
        assert escape(XSS_EXPERIMENT) in client.get("/").text
        # The only scripts are the server's own files (no inline script, nothing remote).
        for template, body in bodies.items():
            for tag in re.findall(r"<script\b[^>]*>", body):
                assert 'type="application/json"' in tag or re.search(
                    r'src="/_ui/static/[^"]+"', tag
                ), (template, tag)

        # Static files are served from the package, the licence beside the library.
        for asset in ("ui.js", "ui.css", "vendor/uplot-1.6.32/uPlot.iife.min.js",
                      "vendor/uplot-1.6.32/LICENSE"):  # fmt: skip
            assert client.get(f"/_ui/static/{asset}").status_code == 200, asset


def test_artifact_links_download_the_file_as_an_attachment(
    served: tuple[str, Filled], tmp_path: Path
) -> None:
    url, _ = served
    odd = tmp_path / "a b#?%&<x>.html"
    odd.write_text("<script>alert(1)</script>")
    with ll.start_run(experiment="artifacts") as run:
        run.log_artifact(str(odd), artifact_path="out dir")
    run_id = run.id
    with httpx.Client(base_url=url, timeout=60) as client:
        page = client.get(f"/runs/{run_id}").text
        links = re.findall(r'<a href="([^"]+)" download>([^<]+)</a>', page)
        assert len(links) == 2, page[:2000]  # the file and loopline/environment.json
        for href, shown in links:
            href = html.unescape(href)
            # A page of the UI (the API takes no login cookie, see test_auth_routes).
            assert href.startswith(f"/runs/{run_id}/artifact?path="), href
            answer = client.get(href)
            assert answer.status_code == 200, (href, answer.text[:300])
            expected = client.get(
                f"/api/v1/runs/{run_id}/artifacts/content", params={"path": html.unescape(shown)}
            )
            assert answer.content == expected.content
            name = html.unescape(shown).rsplit("/", 1)[-1]
            assert answer.headers["content-disposition"] == (
                f"attachment; filename*=utf-8''{quote(name, safe='')}"
            )
            # Saved, never rendered as a page of this server (an HTML artifact, say).
            assert answer.headers["content-type"] == "application/octet-stream"
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in answer.headers["content-security-policy"]
        missing = client.get(f"/runs/{run_id}/artifact", params={"path": "nope.txt"})
        assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
        outside = client.get(f"/runs/{run_id}/artifact", params={"path": "../../meta.db"})
        assert outside.status_code == 422 and "text/html" in outside.headers["content-type"]


def test_empty_states_and_errors_are_html_pages(embedded_ctx: Context) -> None:
    settings = embedded_ctx.settings
    proc, url = start_server(settings.metadata_uri, settings.artifacts_uri)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            # A new store: every list page says what is missing and how to add it.
            empty = {
                "/runs": "No runs yet.",
                "/datasets": "No datasets yet.",
                "/models": "No registered models yet.",
                "/deployments": "No deployments yet.",
                "/monitoring": "No table datasets yet",
                "/audit": "No audit events yet: registering a dataset",
            }
            for path, text in empty.items():
                response = client.get(path)
                assert response.status_code == 200, path
                assert text in response.text, path
            assert "Default" in client.get("/").text
            # A filter that matches nothing says so ("No audit events yet" is a new store).
            nothing = client.get("/audit", params={"actor": "nobody"}).text
            assert "No audit events match." in nothing

            ll.datasets.register("churn-data", churn_frame(50, seed=0))
            missing = client.get("/runs/0123456789abcdef0123456789abcdef")
            assert missing.status_code == 404
            assert "text/html" in missing.headers["content-type"]
            assert "does not exist" in missing.text and "loopline runs ls" in missing.text

            bad_filter = client.get("/runs", params={"filter": "metrics.auc > 'high'"})
            assert bad_filter.status_code == 400
            assert "position 14" in bad_filter.text and "<mark>" in bad_filter.text

            assert client.get("/models/nope").status_code == 404
            assert client.get("/datasets/churn-data", params={"version": 9}).status_code == 404
            assert client.get("/runs", params={"per_page": "lots"}).status_code == 422
            assert client.get("/compare", params={"run": "x"}).status_code == 422
            assert client.get("/deployments/nope").status_code == 404
            nothing = client.get("/compare", params={"run": ["nope", "nope2"]})
            assert nothing.status_code == 404 and "none of the runs" in nothing.text
            # Numbers past what a query binds are a 422, not a 500 (OverflowError).
            for path, params in [
                ("/models", {"page": 2**63 - 1}),
                ("/audit", {"before": 2**63}),
                ("/", {"page_token": "eyJvZmZzZXQiOjkyMjMzNzIwMzY4NTQ3NzU4MDh9"}),
            ]:
                assert client.get(path, params=params).status_code in (400, 422), path
            # Too many terms for one query: a 400 naming the limit, not "unavailable, retry".
            many = " and ".join(["metrics.a > 0"] * 70)
            refused = client.get("/runs", params={"filter": many})
            assert refused.status_code == 400 and "MAX_FILTER_TERMS" in refused.text
            # A time outside the calendar still renders (it failed every runs page).
            with ll.start_run(experiment="far") as far:
                far.log_metric("m", 1.0, timestamp=10**16)
            from loopline.tracking import run_state

            run_state.update_run(embedded_ctx.engine, far.id, end_time=10**16)
            for path in ("/runs", f"/runs/{far.id}"):
                shown = client.get(path)
                assert shown.status_code == 200, (path, shown.text[:300])
            assert "outside the calendar" in client.get(f"/runs/{far.id}").text
            # "Name contains" takes '_' and '%' as themselves, not as wildcards.
            assert "No registered models" in client.get("/models", params={"q": "_"}).text
            # The drift form takes dataset versions only, never a path on the server.
            drift = client.get(
                "/monitoring", params={"reference": "/etc/passwd", "current": "churn-data@1"}
            )
            assert drift.status_code == 400 and "root:" not in drift.text
            assert "not a valid dataset name" in drift.text
    finally:
        stop_server(proc)


def test_the_drift_table_shows_a_broken_column_as_drift(ctx: Context) -> None:
    # A column all null in the current data triggers drift; the table showed its status in
    # grey, as a column skipped on purpose.
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    ll.datasets.register("b-ref", pd.DataFrame({"x": rng.normal(size=300), "y": rng.random(300)}))
    ll.datasets.register("b-cur", pd.DataFrame({"x": [np.nan] * 300, "y": rng.random(300)}))
    proc, url = start_server(ctx.settings.metadata_uri, ctx.settings.artifacts_uri)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            page = client.get("/monitoring", params={"reference": "b-ref@1", "current": "b-cur@1"})
        assert page.status_code == 200, page.text[:300]
        # A column without a plot (broken here) has no link to one.
        row = re.search(r'<tr>\s*<th scope="row">x</th>.*?</tr>', page.text, re.S)
        assert row is not None, page.text[:2000]
        assert '<span class="badge blocked">broken</span>' in row.group(0), row.group(0)
        assert "all null in current" in row.group(0)
    finally:
        stop_server(proc)


def test_the_diff_of_a_table_and_a_files_version_says_the_kinds_differ(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    # The page showed empty rows and columns, as if nothing but files had changed.
    ll.datasets.register("mixed", churn_frame(20, seed=0))
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    ll.datasets.register("mixed", tmp_path / "files")
    ll.datasets.register("mixed", churn_frame(25, seed=1))
    settings = embedded_ctx.settings
    proc, url = start_server(settings.metadata_uri, settings.artifacts_uri)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            page = client.get("/datasets/mixed/diff", params={"a": 1, "b": 2})
            tables = client.get("/datasets/mixed/diff", params={"a": 1, "b": 3})
        assert page.status_code == 200, page.text[:300]
        assert "mixed@1 is a table dataset and mixed@2 a files one" in page.text
        assert tables.status_code == 200 and 'id="kind-changed"' not in tables.text
        assert 'id="diff-summary"' in tables.text
    finally:
        stop_server(proc)


def test_the_drift_table_links_each_column_to_its_own_plot_and_shows_what_the_cli_shows(
    embedded_ctx: Context,
) -> None:
    # Plots were numbered by rank among the plotted columns, rows by rank among all: after
    # a broken column (no plot) every link went to the next column's plot or to nothing.
    # The table also left out what `loopline drift` prints: the missing share on both sides
    # (its rise counts as drift), the columns only in the current data, "(constant)".
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 400
    ref = pd.DataFrame(
        {
            "broken": rng.normal(size=n),
            "x": rng.normal(size=n),
            "holes": rng.normal(size=n),
            "const": [1] * n,
        }
    )
    holes = rng.normal(size=n)
    holes[: n // 2] = np.nan
    cur = pd.DataFrame(
        {
            "broken": [np.nan] * n,
            "x": rng.normal(size=n),
            "holes": holes,
            "const": [1] * n,
            "extra": rng.normal(size=n),
        }
    )
    ll.datasets.register("links-ref", ref)
    ll.datasets.register("links-cur", cur)
    settings = embedded_ctx.settings
    proc, url = start_server(settings.metadata_uri, settings.artifacts_uri)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            page = client.get(
                "/monitoring", params={"reference": "links-ref@1", "current": "links-cur@1"}
            ).text
    finally:
        stop_server(proc)
    links = re.findall(r'<th scope="row"><a href="#([^"]+)">([^<]+)</a></th>', page)
    assert {name for _, name in links} == {"x", "holes", "const"}, links
    for anchor, name in links:
        figure = re.search(rf'<figure [^>]*id="{anchor}"[^>]*>\s*<figcaption>([^<]*)<', page)
        assert figure is not None, (anchor, page[-3000:])
        assert figure.group(1) == name
    assert '<th scope="row">broken</th>' in page  # no plot, so no link
    holes_row = re.search(r'<th scope="row"><a [^>]*>holes</a></th>.*?</tr>', page, re.S)
    assert holes_row is not None
    assert "0.0 % → 50.0 %" in holes_row.group(0) and "badge blocked" in holes_row.group(0)
    assert 'id="missing-rose"' in page and "holes (0.0 % → 50.0 %)" in page
    assert "Only in the current data (not tested): extra" in page
    const_row = re.search(r'<th scope="row"><a [^>]*>const</a></th>.*?</tr>', page, re.S)
    assert const_row is not None and "(constant)" in const_row.group(0)


def test_an_empty_runs_page_says_why_and_a_run_page_says_it_lists_some_children(
    embedded_ctx: Context,
) -> None:
    # "No runs yet." stood for every empty page without a filter: past the last page, an
    # experiment deleted with its runs, "Show: deleted" with nothing deleted. A parent of
    # 150 trials listed 100 children as if they were all.
    from loopline.tracking.experiments import set_experiment_lifecycle
    from loopline.tracking.query import encode_page_token

    settings = embedded_ctx.settings
    proc, url = start_server(settings.metadata_uri, settings.artifacts_uri)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            fresh = client.get("/runs").text
            assert "No runs yet. Log one from Python with" in html.unescape(fresh)

            with ll.start_run(experiment="gone") as gone:
                gone.log_metric("m", 1.0)
            set_experiment_lifecycle(embedded_ctx.engine, gone.experiment_id, "deleted")
            page = client.get("/runs", params={"experiment": gone.experiment_id}).text
            assert "Experiment gone is deleted, and its runs with it" in html.unescape(page)
            every = client.get("/runs", params={"experiment": gone.experiment_id, "view": "all"})
            assert f"/runs/{gone.id}" in every.text

            with ll.start_run(experiment="tuning", name="parent") as parent:
                for i in range(101):
                    with ll.start_run(name=f"trial-{i}"):
                        pass
            assert f"/runs/{gone.id}" in client.get("/runs", params={"view": "deleted"}).text
            none_deleted = client.get(
                "/runs", params={"view": "deleted", "experiment": parent.experiment_id}
            ).text
            assert "No deleted runs in tuning." in none_deleted

            past = client.get("/runs", params={"page_token": encode_page_token(5000)}).text
            assert "No runs on this page: the list ends before it." in past
            assert 'href="/runs">← first page</a>' in past

            run_page = client.get(f"/runs/{parent.id}").text
            assert run_page.count('<li><a href="/runs/') >= 100
            shown = r'id="more-children">Showing the first 100 child runs: <a href="([^"]+)"'
            more = re.search(shown, run_page)
            assert more is not None, run_page[-3000:]
            listed = client.get(html.unescape(more.group(1)), params={"per_page": 200}).text
            assert len(re.findall(r'<td><a href="/runs/[0-9a-f]{32}">trial-', listed)) == 101
    finally:
        stop_server(proc)


def test_the_experiments_page_searches_names_and_pages_back_one_page(
    embedded_ctx: Context,
) -> None:
    # 130 experiments were three pages to walk forward, with "first page" as the only way
    # back and no way to look one up by name; the runs table named a run's experiment
    # without a link to it.
    from loopline.tracking.experiments import get_or_create_experiment

    for i in range(120):
        get_or_create_experiment(embedded_ctx.engine, f"exp-{i:03d}")
    get_or_create_experiment(embedded_ctx.engine, "Churn_v2 (März)")
    with ll.start_run(experiment="exp-007") as run:
        run.log_metric("m", 1.0)
    settings = embedded_ctx.settings
    proc, url = start_server(settings.metadata_uri, settings.artifacts_uri)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            first = client.get("/").text
            assert "experiments 1\u201350" in first and 'rel="prev"' not in first
            nxt = re.search(r'<a href="([^"]+)" rel="next">', first)
            assert nxt is not None
            second = client.get(html.unescape(nxt.group(1))).text
            assert "experiments 51\u2013100" in second
            back = re.search(r'<a href="([^"]+)" rel="prev">', second)
            assert back is not None and html.unescape(back.group(1)) == "/"
            nxt = re.search(r'<a href="([^"]+)" rel="next">', second)
            assert nxt is not None
            third = client.get(html.unescape(nxt.group(1))).text
            back = re.search(r'<a href="([^"]+)" rel="prev">', third)
            assert back is not None
            assert "experiments 51\u2013100" in client.get(html.unescape(back.group(1))).text

            found = client.get("/", params={"q": "churn_v2 (mär"}).text  # any case
            assert "Churn_v2 (März)" in html.unescape(found) and "exp-000" not in found
            assert "exp-0" not in client.get("/", params={"q": "_"}).text  # '_' is itself
            none = client.get("/", params={"q": "nothing like it"}).text
            assert "No experiment&#39;s name contains nothing like it." in none

            runs = client.get("/runs").text
            assert f'<a href="/runs?experiment={run.experiment_id}">exp-007</a>' in runs
    finally:
        stop_server(proc)


def test_a_run_of_300_params_folds_most_and_the_runs_table_reads_like_the_cli(
    embedded_ctx: Context,
) -> None:
    # 300 params pushed the metric charts 7,000 px down the run's page. The runs table
    # rounded metrics to 4 digits where `loopline runs ls`, the run page and the compare
    # page show 6: two runs sorted by auc read the same value.
    with ll.start_run(experiment="wide", name="wide") as run:
        run.log_params({f"p{i:03d}": i for i in range(300)})
        for step in range(3):
            run.log_metric("auc", 0.987654 - step * 1e-6, step=step)
    with ll.start_run(experiment="wide", name="close") as close:
        close.log_metric("auc", 0.987651)
    settings = embedded_ctx.settings
    proc, url = start_server(settings.metadata_uri, settings.artifacts_uri)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            page = client.get(f"/runs/{run.id}").text
            table = client.get("/runs", params={"order_by": "metrics.auc DESC"}).text
    finally:
        stop_server(proc)
    folded = page.index('<details id="more-params"><summary>270 more parameters</summary>')
    assert page.index(">p029<") < folded < page.index(">p030<") < page.index(">p299<")
    cells = re.findall(r'<td class="num">(0\.98765\d)</td>', table)
    assert cells == ["0.987652", "0.987651"], cells


def test_live_metrics_in_windows_of_100_requests_score_the_newest_20_windows(
    embedded_ctx: Context,
) -> None:
    # The page read the newest 100,000 prediction rows whatever the window: in windows of
    # 100 requests that was 1,000 windows, each scored with scikit-learn, a page of 26 s.
    import numpy as np

    from loopline.monitoring.labels import log_labels
    from loopline.monitoring.prediction_log import PredictionLogger

    rng = np.random.default_rng(0)
    ids = [f"r{i}" for i in range(4000)]
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for rid in ids:
            logger.log(rid, "m", 1, [{"x": float(rng.normal())}], [int(rng.random() < 0.5)], 2.0)
        logger.flush()
    log_labels(ids, [int(rng.random() < 0.5) for _ in ids], model="m")
    settings = embedded_ctx.settings
    proc, url = start_server(settings.metadata_uri, settings.artifacts_uri)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            page = client.get("/monitoring", params={"model": "m", "window": "100"}).text
            hourly = client.get("/monitoring", params={"model": "m", "window": "hour"}).text
    finally:
        stop_server(proc)
    assert "newest 2,000 rows" in page and "<summary>20 newest windows</summary>" in page
    requests = re.search(r'<script type="application/json" id="live-1">(.*?)</script>', page)
    assert requests is not None
    assert len(json.loads(requests.group(1))["series"][0]["x"]) == 20
    assert "newest 20,000 rows" in hourly


def test_a_small_relative_change_on_the_compare_page_is_not_shown_as_zero(
    embedded_ctx: Context,
) -> None:
    # A change of 0.01 % read "(+0.0 %)", as if the metric had not moved.
    ids = []
    for auc, loss in ((0.9, 0.5), (0.90009, 0.506)):
        with ll.start_run(experiment="close") as run:
            run.log_metrics({"auc": auc, "loss": loss})
        ids.append(run.id)
    settings = embedded_ctx.settings
    proc, url = start_server(settings.metadata_uri, settings.artifacts_uri)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            page = client.get("/compare", params={"run": ids}).text
    finally:
        stop_server(proc)
    table = page[page.index('id="metric-deltas"') :]
    cell = r'<th scope="row">(\w+)</th>.*?class="delta[^"]*">([^<]*)</span>'
    deltas = dict(re.findall(cell, table, re.S))
    assert deltas == {"auc": "+9e-05 (+0.01 %)", "loss": "+0.006 (+1.2 %)"}, deltas
