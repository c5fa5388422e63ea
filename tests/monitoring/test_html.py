"""``DriftReport.to_html``: one self-contained page with a plot per tested column."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopline.errors import InvalidInput
from loopline.monitoring.drift import drift
from loopline.monitoring.sketch import DriftSketch


def _report_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(4)
    n = 3000
    ref = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "plan": rng.choice(["basic", "pro", "<b>team</b>"], n),
            "few": rng.integers(0, 4, n).astype(float),
            "comment": [f"free text {i}" for i in range(n)],
            "gone": rng.normal(size=n),
        }
    )
    cur = ref.drop(columns=["gone"]).assign(age=rng.normal(45, 10, n), extra=1.0)
    return ref, cur


def test_html_is_self_contained_with_a_plot_per_tested_column(tmp_path: Path) -> None:
    ref, cur = _report_frames()
    report = drift(ref, cur)
    path = report.to_html(tmp_path / "drift.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    svgs = re.findall(r'<figure id="col-([^"]+)"><h2>.*?<svg ', text)
    assert svgs == ["age", "plan", "few"]  # one plot per tested column; text is skipped
    assert text.count("<svg") == 3 and text.count("<rect") > 3 * 2
    # Nothing to fetch: no scripts, no external stylesheets, images or fonts.
    assert "<script" not in text and "<link" not in text
    assert not re.search(r"(src|href)=\"https?:", text)
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # The table has every column with its test, and the mismatch is shown.
    for name in ("age", "plan", "few", "comment", "gone", "extra"):
        assert name in text
    assert "wasserstein" in text and "skipped: text" in text
    assert "missing from current" in text and "only in current" in text
    assert "&lt;b&gt;team&lt;/b&gt;" in text and "<b>team</b>" not in text  # escaped


def test_html_of_a_sketch_report(tmp_path: Path) -> None:
    ref, cur = _report_frames()
    sketch = DriftSketch.from_reference(ref.drop(columns=["gone"])).update(cur)
    text = sketch.drift().to_html(tmp_path / "s.html").read_text()
    assert text.count("<svg") == 3 and "wasserstein_binned" in text


def test_html_to_a_path_that_cannot_be_written_is_invalid_input(tmp_path: Path) -> None:
    report = drift(*_report_frames())
    for target, why in [
        (tmp_path, "it is a folder"),
        (tmp_path / "none" / "x.html", f"the folder {tmp_path / 'none'} does not exist"),
        (Path("/proc/x.html"), "No such file or directory"),
    ]:
        with pytest.raises(InvalidInput, match=f"cannot write the HTML report to .*: {why}") as e:
            report.to_html(target)
        assert e.value.field == "path"


def test_html_shows_broken_columns_and_missing_values_as_drift(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({"spend": rng.normal(50, 10, 2000), "age": rng.normal(40, 9, 2000)})
    age = rng.normal(40, 9, 2000)
    age[:1200] = np.nan
    cur = pd.DataFrame({"spend": [np.nan] * 2000, "age": age})
    text = drift(ref, cur).to_html(tmp_path / "d.html").read_text()
    assert '<span class="verdict yes">broken: all null in current</span>' in text
    assert "Not tested, counts as drift: <b>spend (all null in current)</b>" in text
    assert '<span class="verdict yes">0.0% &rarr; 60.0%</span>' in text
    assert "Missing values rose (counts as drift): <b>age</b>" in text
    empty = drift(ref, cur.iloc[:0]).to_html(tmp_path / "e.html").read_text()
    assert "The current data has no rows: no column was tested (not enough data)." in empty
