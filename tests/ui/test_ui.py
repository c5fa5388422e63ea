"""The web UI in a real browser: Debian's Chromium driven by Playwright, against a real
``loopline server`` on a store filled through the SDK (see :mod:`tests.ui.fill`).

One browser and one server for the module; each test gets a fresh browser context that
records console errors, page errors, failed requests, 4xx/5xx answers, dialogs (an
``alert`` would mean an escaping bug) and any request that leaves the server (nothing may
be fetched from elsewhere). Each test saves a screenshot under ``tests/ui/screenshots/``.

Needs ``apt-get install chromium`` and ``pip install playwright`` (never ``playwright
install``: the browser is Debian's).
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import loopline
from tests.server.conftest import start_server, stop_server
from tests.ui.fill import (
    ALERTS,
    LIVE,
    LONG_NAME,
    LONG_TEXT,
    MONITORING,
    SERVING,
    XSS_NAME,
    Filled,
    fill,
    has_module,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"


def _missing(what: str) -> None:
    """Skip when a browser prerequisite is missing; fail where the suite must be whole."""
    if os.environ.get("LOOPLINE_REQUIRE_SERVICES") == "1" or os.environ.get("CI"):
        pytest.fail(what)
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, once for the module."""
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        _missing("playwright is not installed: pip install playwright (not `playwright install`)")
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Filled]]:
    """A filled SQLite store and a ``loopline server`` process on it."""
    root = tmp_path_factory.mktemp("ui-store")
    uri, artifacts, home = f"sqlite:///{root / 'meta.db'}", str(root / "artifacts"), root / "home"
    ctx = loopline.init(uri=uri, artifacts=artifacts, home=str(home))
    try:
        filled = fill(ctx)
    finally:
        ctx.close()
    proc, url = start_server(uri, artifacts, {"LOOPLINE_HOME": str(home)})
    try:
        yield url, filled
    finally:
        stop_server(proc)


@dataclass
class UI:
    """A page on the server, and everything that went wrong while it was used."""

    page: Page
    base: str
    problems: list[str] = field(default_factory=list)

    def open(self, path: str) -> None:
        """Load ``path`` and wait until its scripts ran."""
        response = self.page.goto(self.base + path, wait_until="load")
        assert response is not None and response.status == 200, f"{path}: {response}"

    def shot(self, name: str) -> None:
        """Save a full-page screenshot as ``screenshots/<name>.png``."""
        SCREENSHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def charts_drawn(self) -> int:
        """How many charts uPlot drew; every declared chart must have been drawn."""
        self.page.wait_for_load_state("load")
        declared = self.page.locator("figure.chart").count()
        drawn = self.page.locator("figure.chart.drawn .uplot canvas").count()
        assert drawn == declared, f"{drawn} of {declared} charts drawn"
        return drawn


@pytest.fixture
def ui(browser: Browser, server: tuple[str, Filled]) -> Iterator[UI]:
    """A fresh browser context that records every problem; none may be left at the end."""
    base = server[0]
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    ui = UI(page, base)

    def outside(route: Any) -> None:
        ui.problems.append(f"request outside the server: {route.request.url}")
        route.abort()

    context.route(re.compile(r"^(?!" + re.escape(base) + r"/).*"), outside)
    page.on(
        "console",
        lambda m: ui.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda exc: ui.problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda r: ui.problems.append(f"failed request: {r.url}"))
    page.on(
        "response",
        lambda r: ui.problems.append(f"{r.status} for {r.url}") if r.status >= 400 else None,
    )

    def on_dialog(dialog: Any) -> None:
        ui.problems.append(f"dialog opened: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        yield ui
    finally:
        context.close()
    assert ui.problems == []


def test_every_page_loads_without_errors(ui: UI, server: tuple[str, Filled]) -> None:
    f = server[1]
    a, b = f.run_ids["logreg-lr0.1"], f.run_ids["forest-lr0.3"]
    pages: dict[str, tuple[str, int | None]] = {
        "experiments": ("/", 0),
        "runs": ("/runs", 0),
        "run": (f"/runs/{a}", 2),
        "run-xss": (f"/runs/{f.xss_run_id}", 0),
        "run-diverged": (f"/runs/{f.diverged_run_id}", 3),
        "compare": (f"/compare?run={a}&run={b}", 2),
        "datasets": ("/datasets", 0),
        "dataset": ("/datasets/churn-data", 0),
        "dataset-diff": ("/datasets/churn-data/diff?a=1&b=2", 0),
        "models": ("/models", 0),
        "model": ("/models/churn", 0),
        "model-version": ("/models/churn/versions/2", 0),
        "deployments": ("/deployments", 0),
        "monitoring": ("/monitoring", None),  # live metrics of churn, if logged
        "audit": ("/audit", 0),
    }
    if has_module(SERVING):
        pages["deployment"] = ("/deployments/churn", 1)
    for name, (path, charts) in pages.items():
        ui.open(path)
        assert ui.page.title().endswith(" · Loopline"), name
        drawn = ui.charts_drawn()  # every declared chart drawn
        assert charts is None or drawn == charts, name
        ui.shot(f"page-{name}")
        assert ui.problems == [], name
    ui.open(f"/runs/{f.xss_run_id}")
    assert ui.page.locator("h1").inner_text().startswith(XSS_NAME)  # shown as text


def test_charts_draw_a_metric_that_went_to_inf_and_steps_up_to_2_63(
    ui: UI, server: tuple[str, Filled]
) -> None:
    ui.open(f"/runs/{server[1].diverged_run_id}")
    assert ui.charts_drawn() == 3
    # Its last loss, -inf, is named so (it read -1.798e+308, the number it is stored as).
    row = ui.page.locator("#metrics tr:has(th:text-is('loss'))")
    assert "-inf" in row.inner_text().split()

    def chart(title: str) -> Any:
        figure = ui.page.locator(f"figure.chart:has(figcaption:text-is('{title}'))")
        return figure.evaluate(
            "f => ({y: [f.uplot.scales.y.min, f.uplot.scales.y.max],"
            " ticks: f.uplot.axes[0]._values})"
        )

    # The store keeps inf as the largest float: drawn, the axis spanned 1e308 and the chart
    # came out empty. The finite points set the scale.
    loss = chart("loss")
    assert loss["y"][0] is not None and loss["y"][1] is not None, loss
    assert 0 < loss["y"][0] <= 0.25 and 1 <= loss["y"][1] < 2, loss
    # Steps past a million are written short (8e+18): in full they ran into each other.
    ticks = chart("seen")["ticks"]
    assert ticks and all(len(t) <= 6 for t in ticks), ticks
    assert any(t.endswith("e+18") for t in ticks), ticks
    # Finite values up to 1.7e308: uPlot ticks in steps of at most 5e31 and places a point
    # by its distance from the scale's minimum, which overflowed: no ticks, no line. Drawn
    # in units of 1e308, labelled in the data's numbers.
    huge = ui.page.locator("figure.chart:has(figcaption:text-is('huge'))").evaluate(
        "f => ({unit: f.unit, ticks: f.uplot.axes[1]._values,"
        " pos: f.uplot.data[1].map(v => f.uplot.valToPos(v, 'y'))})"
    )
    assert huge["unit"] == 1e308, huge
    assert len(huge["pos"]) == 4 and all(math.isfinite(p) for p in huge["pos"]), huge
    ticks = [float(t) for t in huge["ticks"]]  # written short, as 1.5e+308
    assert 3 <= len(ticks) <= 12 and all(len(t) <= 9 for t in huge["ticks"]), huge
    assert min(ticks) <= -1e308 and max(ticks) >= 1.5e308, huge
    ui.shot("run-diverged")
    # Against a run whose loss is finite: -inf, and no difference taken from it.
    f = server[1]
    ui.open(f"/compare?run={f.run_ids['logreg-lr0.1']}&run={f.diverged_run_id}")
    cells = ui.page.locator("#metric-deltas tr:has(th:text-is('loss')) td")
    assert cells.nth(1).inner_text().split()[0] == "-inf"
    assert cells.nth(1).locator(".delta").count() == 0


def test_a_chart_draws_every_point_of_a_metric_that_repeats_an_x_value(
    ui: UI, server: tuple[str, Filled]
) -> None:
    # The browser merged series onto one slot per distinct x, keeping the last value: 30
    # points logged in 3 ms were drawn as 3, and the spike among them not at all.
    ui.open(f"/runs/{server[1].repeats_run_id}")
    assert ui.charts_drawn() == 2

    def data(title: str) -> Any:
        figure = ui.page.locator(f"figure.chart:has(figcaption:text-is('{title}'))")
        return figure.evaluate("f => f.uplot.data")

    xs, ys = data("burst")
    assert len(xs) == 30 and max(ys) == 50.0, (xs, ys)
    assert xs == sorted(xs) and len(set(xs)) == 3
    xs, ys = data("per_step")
    assert xs == [s for s in range(5) for _ in range(3)]
    assert ys == [float(10 * s + k) for s in range(5) for k in range(3)]
    ui.shot("run-repeats")


def test_long_user_text_wraps_inside_the_window(ui: UI, server: tuple[str, Filled]) -> None:
    # A long name or message without a space (a path, a hash) widened the page past the
    # window - 40,000 pixels for an alert's 5,000 characters: every table ran off the right.
    f = server[1]
    pages = {
        f"/runs/{f.long_run_id}": LONG_NAME,
        "/runs": LONG_NAME,
        f"/compare?run={f.run_ids['logreg-lr0.1']}&run={f.long_run_id}": LONG_TEXT,
    }
    if has_module(ALERTS):
        pages["/monitoring"] = LONG_TEXT
    for path, text in pages.items():
        ui.open(path)
        width = ui.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1300, (path, width)  # the viewport's width
        assert text in ui.page.locator("main").inner_text(), path  # all of it, wrapped


def test_runs_filter_narrows_the_table(ui: UI) -> None:
    ui.open("/runs")
    rows = ui.page.locator("#runs tbody tr")
    everything = rows.count()
    ui.page.fill("#filter", "params.model = 'forest' and metrics.auc > 0.8")
    ui.page.press("#filter", "Enter")
    ui.page.wait_for_url(re.compile(r"filter="))
    names = sorted(rows.locator("td:nth-child(2) a").all_inner_texts())
    assert names == ["forest-lr0.3", "forest-lr1.0"]
    assert everything > len(names)
    ui.page.click("a.sort:text('auc')")  # order by the auc column, highest first
    ui.page.wait_for_url(re.compile(r"order_by="))
    assert rows.locator("td:nth-child(2) a").all_inner_texts() == ["forest-lr1.0", "forest-lr0.3"]
    ui.shot("runs-filtered")

    with ui.page.expect_response(re.compile(r"/runs\?")) as answer:
        ui.page.fill("#filter", "metrics.auc > high")
        ui.page.press("#filter", "Enter")
    assert answer.value.status == 400
    error = ui.page.locator("#filter-error")
    assert "position 14" in error.inner_text()
    assert error.locator("mark").inner_text() == "h"
    # The 400 is the expected answer to a bad filter. Chromium reports it twice (the
    # response and a console line that can arrive a moment later): drop only those.
    ui.page.wait_for_timeout(200)
    ui.problems[:] = [p for p in ui.problems if "400" not in p]
    ui.shot("runs-filter-error")


def test_compare_draws_both_runs_charts(ui: UI, server: tuple[str, Filled]) -> None:
    ui.open("/runs?filter=params.lr+%3D+%270.1%27")
    button = ui.page.locator("#compare-button")
    assert button.is_disabled()
    for name in ("logreg-lr0.1", "forest-lr0.1"):
        ui.page.locator(f"tr:has(a:text-is('{name}')) input[type=checkbox]").check()
    assert button.is_enabled()
    button.click()
    ui.page.wait_for_url(re.compile(r"/compare\?"))
    assert ui.charts_drawn() == 2  # auc and loss
    for title in ("auc", "loss"):
        legend = ui.page.locator(f"figure.chart:has(figcaption:text-is('{title}')) .u-legend")
        series = legend.locator(".u-series").all_inner_texts()
        assert len(series) == 3, series  # the x axis, then one line per run
        assert any("logreg-lr0.1" in s for s in series)
        assert any("forest-lr0.1" in s for s in series)
    assert "model" in ui.page.locator("#params-differ").inner_text()
    assert "baseline" in ui.page.locator("#compare-runs").inner_text()
    ui.shot("compare")


def test_dataset_pages_show_schema_stats_and_diff(ui: UI) -> None:
    ui.open("/datasets")
    ui.page.click("#datasets a:text-is('churn-data')")
    ui.page.wait_for_url(re.compile(r"/datasets/churn-data$"))
    schema = ui.page.locator("#schema tbody tr")
    assert schema.locator("th").all_inner_texts() == ["tenure", "spend", "plan", "label"]
    tenure = schema.first.locator("td").all_inner_texts()
    assert tenure[0] == "double" and tenure[1] == "600"  # type, count
    assert all(re.fullmatch(r"-?[\d.e+-]+", cell) for cell in tenure[3:7])  # min max mean std
    assert ui.page.locator("#versions tbody tr").count() == 2
    assert ui.page.locator("#readers li").count() >= 1
    ui.shot("dataset")
    ui.page.click("#diff-form button")
    ui.page.wait_for_url(re.compile(r"/diff\?"))
    moved = ui.page.locator("#stat-changes tbody th").all_inner_texts()
    assert "tenure" in moved
    ui.shot("dataset-diff")


def test_models_page_shows_aliases_and_lineage(ui: UI) -> None:
    ui.open("/models")
    churn = ui.page.locator("#models tr:has(a:text-is('churn'))")
    assert "@champion → v1" in churn.inner_text()
    assert "@challenger → v2" in churn.inner_text()
    churn.locator("a:text-is('churn')").click()
    ui.page.wait_for_url(re.compile(r"/models/churn$"))
    aliases = ui.page.locator("#aliases").inner_text()
    assert "@champion" in aliases and "@challenger" in aliases
    graph = ui.page.locator("svg.lineage")
    assert graph.locator("g.node-dataset").count() == 2  # churn-data@1 and @2
    assert graph.locator("g.node-run").count() == 2
    assert graph.locator("g.node-version").count() == 2
    assert graph.locator("path.edge").count() >= 4
    assert graph.locator("g.node-dataset text.label").all_text_contents() == [
        "churn-data@2",
        "churn-data@1",
    ]
    if has_module(SERVING):
        assert graph.locator("g.node-deployment").count() == 1
        labels = graph.locator("text.edge-label").all_text_contents()
        assert sorted(labels) == ["canary 10 %", "stable"]
    ui.shot("model")
    graph.locator("g.node-version a").first.click()  # v2, the challenger
    ui.page.wait_for_url(re.compile(r"/versions/2$"))
    ui.shot("model-version")


def test_audit_verify_reports_intact(ui: UI) -> None:
    ui.open("/audit")
    assert ui.page.locator("#audit tbody tr").count() > 10
    ui.page.click("#verify")
    ui.page.wait_for_url(re.compile(r"/audit/verify$"))
    result = ui.page.locator("#verify-result")
    assert result.inner_text().startswith("Intact")
    ui.shot("audit-verify")


@pytest.mark.skipif(not has_module(SERVING), reason=f"{SERVING} is not installed yet")
def test_deployments_page_shows_canary_split(ui: UI) -> None:
    ui.open("/deployments")
    row = ui.page.locator("tr[data-deployment='churn']")
    assert row.locator(".split-legend .stable").inner_text() == "v1 · 90 %"
    assert row.locator(".split-legend .candidate").inner_text() == "v2 · 10 %"
    assert row.locator("ol.steps li.current").inner_text() == "10 %"
    ui.shot("deployments")
    row.locator("a:text-is('churn')").click()
    ui.page.wait_for_url(re.compile(r"/deployments/churn$"))
    assert ui.charts_drawn() == 1  # the candidate's share of traffic over time
    assert ui.page.locator("#canary-steps li").all_inner_texts() == ["10 %", "50 %", "100 %"]
    ui.shot("deployment-canary")
    ui.open("/deployments/fraud")
    assert "p99 latency regression" in ui.page.locator("#history tr.rollback").inner_text()
    ui.shot("deployment-rollback")


@pytest.mark.skipif(not has_module(MONITORING), reason=f"{MONITORING} is not installed yet")
def test_monitoring_page_draws_drift_plots(ui: UI) -> None:
    ui.open("/monitoring")
    ui.page.fill("input[name=reference]", "churn-data@1")
    ui.page.fill("input[name=current]", "churn-data@2")
    ui.page.click("#drift-form button")
    ui.page.wait_for_url(re.compile(r"current="))
    assert "Dataset drift" in ui.page.locator("#drift-verdict").inner_text()
    plots = ui.page.locator("#drift-plots figure.chart.drawn")
    assert plots.count() == 4  # one distribution plot per column
    ui.charts_drawn()
    bars = plots.filter(has=ui.page.locator("figcaption:text-is('tenure')")).locator(".u-series")
    assert [t.strip() for t in bars.all_inner_texts()] == ["reference %", "current %"]
    ui.shot("monitoring-drift")


@pytest.mark.skipif(
    not (has_module(LIVE) and has_module(ALERTS)), reason=f"{LIVE} or {ALERTS} is not installed yet"
)
def test_monitoring_page_shows_live_metrics_and_alerts(ui: UI) -> None:
    ui.open("/monitoring?model=churn&window=100")
    live = ui.page.locator("#live-charts figure.chart.drawn")
    titles = live.locator("figcaption").all_inner_texts()
    assert titles[:2] == ["requests per window", "latency p99"]
    assert "live accuracy" in titles
    requests = live.filter(has=ui.page.locator("figcaption:text-is('requests per window')"))
    series = requests.locator(".u-series .u-label").all_inner_texts()
    assert series == ["time (UTC)", "v1", "v2"]  # the x axis, then a line per served version
    ui.charts_drawn()
    assert "accuracy < 0.9" in ui.page.locator("#alerts").inner_text()
    ui.shot("monitoring-live")


def _html(body: str, route: Any) -> None:
    route.fulfill(body=body, content_type="text/html")


def test_a_browser_logs_in_and_out_and_no_other_site_can_do_it_for_it(
    browser: Browser, tmp_path: Path
) -> None:
    # The login and logout forms refuse posts from another origin (login CSRF); the
    # server's own forms, by any of its loopback names, must keep working.
    from loopline.core import auth

    uri, artifacts = f"sqlite:///{tmp_path / 'meta.db'}", str(tmp_path / "artifacts")
    ctx = loopline.init(uri=uri, artifacts=artifacts)
    try:
        token = auth.create_token(ctx.engine, "viewer", name="browser", actor="test").token
    finally:
        ctx.close()
    proc, url = start_server(uri, artifacts, {"LOOPLINE_AUTH": "1"})
    try:
        for base in (url, url.replace("127.0.0.1", "localhost")):
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{base}/runs")
            page.fill("#token", token)
            with page.expect_navigation():
                page.click("button:has-text('Log in')")
            assert page.url == f"{base}/runs"
            assert page.locator("h1").first.inner_text() == "Runs"
            assert [c["name"] for c in context.cookies()] == ["loopline_token"]
            page.goto(f"{base}/login")
            with page.expect_navigation():
                page.click("button:has-text('Log out')")
            assert page.url == f"{base}/login"
            assert context.cookies() == []
            # Another site's page posting its token to this server's login form.
            form = (
                f'<form method="post" action="{base}/login"><input name="token" '
                f'value="{token}"><button>go</button></form>'
            )
            context.route("http://evil.example/", functools.partial(_html, form))
            page.goto("http://evil.example/")
            with page.expect_response(f"{base}/login") as answer:
                page.click("text=go")
            assert answer.value.status == 403
            assert context.cookies() == []
            context.close()
    finally:
        stop_server(proc)


def test_a_rebound_page_can_neither_read_nor_write_the_server(
    browser: Browser, server: tuple[str, Filled]
) -> None:
    # DNS rebinding, as a browser sees it: attacker.example resolves to 127.0.0.1, so its
    # page's requests to attacker.example:PORT are same-origin and reach this server.
    base = server[0]
    port = base.rsplit(":", 1)[1]
    evil = f"http://attacker.example:{port}"
    rules = "--host-resolver-rules=MAP attacker.example 127.0.0.1"
    # Another Chromium of the same Playwright, with the name mapped.
    rebound = browser.browser_type.launch(
        executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, rules]
    )
    try:
        page = rebound.new_page()
        # The attacker's document, loaded from this machine (/health answers any Host,
        # for probes; Chromium would keep a page loaded from elsewhere from calling a
        # loopback address, other browsers do not).
        page.goto(f"{evil}/health")
        statuses = page.evaluate(
            """async () => {
                const read = await fetch('/api/v1/experiments/by-name?name=Default');
                const write = await fetch('/api/2.0/mlflow/runs/create', {
                    method: 'POST', headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({experiment_id: '0'})});
                const ui = await fetch('/runs');
                return [read.status, write.status, ui.status, (await write.json()).message];
            }"""
        )
    finally:
        rebound.close()
    assert statuses[:3] == [403, 403, 403], statuses
    assert f"'attacker.example:{port}'" in statuses[3]
