"""A list page of the UI costs the same number of queries however long its list is.

In process (the app on the test's store, its SQL counted on the engine): a page that read
its rows one at a time (the tags of each experiment, the tags and aliases of each model
version, the aliases and latest version of each model) grew by a query or three per row.
"""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression

import loopline as ll
from loopline.core.context import Context
from loopline.server.app import create_app
from loopline.tracking.api import get_run
from loopline.tracking.experiments import set_experiment_tag

with warnings.catch_warnings():
    # Starlette asks for its httpx fork ("httpx2"); the test client works the same on httpx.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

#: The server answers loopback names only (TestClient's default, "testserver", is refused).
LOCAL = "http://127.0.0.1:5000"


@contextmanager
def counted(ctx: Context) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements run on ``ctx``'s engine inside the block, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def count(*args: Any) -> None:
        seen.append((str(args[2]), args[3]))

    sa.event.listen(ctx.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(ctx.engine, "before_cursor_execute", count)


def _queries(client: TestClient, ctx: Context, path: str) -> int:
    client.get(path)  # warm: first-use lookups (schema checks, caches) are not the page's
    with counted(ctx) as seen:
        answer = client.get(path)
    assert answer.status_code == 200, (path, answer.text[:300])
    return len(seen)


def _add(ctx: Context, start: int, stop: int, run_id: str) -> None:
    """Experiments ``e{i}`` with a tag, versions of ``m0`` with an alias, models ``m{i+1}``
    with an alias."""
    for i in range(start, stop):
        with ll.start_run(experiment=f"e{i}") as run:
            run.log_metric("m", 1.0)
        set_experiment_tag(ctx.engine, run.experiment_id, "team", f"t{i}")
        mv = ll.registry.register(get_run(run_id), "m0")
        ll.registry.set_alias("m0", f"a{i}", mv.version)
        other = ll.registry.register(get_run(run_id), f"m{i + 1}")
        ll.registry.set_alias(f"m{i + 1}", "champion", other.version)


def test_list_pages_cost_the_same_queries_for_3_rows_as_for_20(embedded_ctx: Context) -> None:
    frame = pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20) % 2})
    with ll.start_run(experiment="train") as run:
        run.log_model(LogisticRegression().fit(frame[["x"]], frame["y"]), "model")
    pages = ["/", "/models", "/models/m0"]
    client = TestClient(create_app(embedded_ctx), base_url=LOCAL)
    _add(embedded_ctx, 0, 3, run.id)
    few = {p: _queries(client, embedded_ctx, p) for p in pages}
    _add(embedded_ctx, 3, 20, run.id)
    many = {p: _queries(client, embedded_ctx, p) for p in pages}
    assert many == few
    page = client.get("/models/m0").text
    # Each version's row still shows its own alias.
    rows = re.findall(r'<td><a href="/models/m0/versions/(\d+)">.*?</td>\s*<td>(.*?)</td>', page)
    shown = {int(v): re.findall(r"@(\w+)", cell) for v, cell in rows}
    assert shown == {v: [f"a{v - 1}"] for v in range(1, 21)}, shown
    assert "@champion" in client.get("/models").text


def test_a_dataset_page_reads_the_files_of_the_versions_it_shows_only(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    # The page read the manifest of every version to count each one's files: 30 versions of
    # a 3,000-file folder took 1.5 s, and the diff page read them all to list the numbers.
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        (folder / f"f{i}.txt").write_text(str(i))
    for v in range(4):
        (folder / f"extra{v}.txt").write_text(str(v))
        ll.datasets.register("images", folder)
    client = TestClient(create_app(embedded_ctx), base_url=LOCAL)
    for path, shown in [("/datasets/images", 1), ("/datasets/images?version=2", 1),
                        ("/datasets/images/diff?a=1&b=4", 2)]:  # fmt: skip
        client.get(path)
        with counted(embedded_ctx) as seen:
            answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
        manifests = [params for sql, params in seen if "FROM dataset_files" in sql]
        assert len(manifests) == shown and all(len(p) == 1 for p in manifests), (path, seen)
    page = client.get("/datasets/images").text
    counts = re.findall(r'<td class="num">(\d+)</td>\s*<td><time', page)
    assert counts == ["9", "8", "7", "6"], counts  # each version's own file count


def test_a_dataset_of_many_versions_is_paged_newest_first(embedded_ctx: Context) -> None:
    # Every version was one row and two <option>s of the diff form: 600 versions made a
    # page of 300 KB, and it grew with each version kept.
    for i in range(60):
        ll.datasets.register("daily", pd.DataFrame({"x": [float(i)]}))
    client = TestClient(create_app(embedded_ctx), base_url=LOCAL)

    def numbers(page: str) -> list[int]:
        found = re.findall(r'<td><a href="/datasets/daily[^"]*">(\d+)</a></td>', page)
        return [int(n) for n in found]

    first = client.get("/datasets/daily").text
    assert numbers(first) == list(range(60, 35, -1))
    assert "<option" not in first and 'name="a" min="1" max="60" value="59"' in first
    older = re.search(r'<a href="([^"]+)" rel="next">older versions', first)
    assert older is not None
    second = client.get(html.unescape(older.group(1))).text
    assert numbers(second) == list(range(35, 10, -1))
    last = client.get("/datasets/daily", params={"page": 3}).text
    assert numbers(last) == list(range(10, 0, -1)) and 'rel="next"' not in last
    assert "list ends before it" in client.get("/datasets/daily", params={"page": 9}).text
    # A version on another page is shown and the page stays.
    chosen = client.get("/datasets/daily", params={"version": 3, "page": 3}).text
    assert "daily@3" in chosen and numbers(chosen) == list(range(10, 0, -1))
    diff = client.get("/datasets/daily/diff", params={"a": 1, "b": 60}).text
    assert "<option" not in diff and 'name="b" min="1" max="60" value="60"' in diff
    assert client.get("/datasets/daily", params={"page": 0}).status_code == 422
