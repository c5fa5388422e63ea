"""``ll.monitor.drift``: Evidently's test per column type and size, verdicts, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial import distance

import loopline as ll
from loopline.errors import InvalidInput, NotFound
from loopline.monitoring.drift import drift, missing_rose
from tests.conftest import run_python

RNG = np.random.default_rng(11)


def _num(n: int, shift: float = 0.0) -> np.ndarray:
    return RNG.normal(10 + shift, 2, size=n)


@pytest.fixture(autouse=True)
def _same_draws_in_any_order() -> None:
    """Each test starts drawing where the module's import left ``RNG``: its data must not
    depend on which tests ran before it in the process (pytest-xdist's work stealing changes
    that from run to run)."""
    RNG.bit_generator.state = _STATE_AFTER_IMPORT


@pytest.mark.parametrize(
    ("ref", "cur", "kind", "test"),
    [
        (_num(1000), _num(800), "numeric", "ks"),
        (_num(1001), _num(800), "numeric", "wasserstein"),
        (RNG.integers(0, 4, 500).astype(float), RNG.integers(0, 4, 500).astype(float),
         "numeric", "chisquare"),
        (RNG.integers(0, 2, 500).astype(float), RNG.integers(0, 2, 500).astype(float),
         "numeric", "z"),
        (RNG.integers(0, 5, 5000).astype(float), RNG.integers(0, 5, 5000).astype(float),
         "numeric", "jensenshannon"),
        (RNG.choice(list("abc"), 1000), RNG.choice(list("abc"), 900), "categorical", "chisquare"),
        (RNG.choice(["yes", "no"], 1000), RNG.choice(["yes", "no"], 900), "categorical", "z"),
        (RNG.choice(list("abcd"), 1001), RNG.choice(list("abcd"), 900), "categorical",
         "jensenshannon"),
        (RNG.integers(0, 10, 2000), RNG.integers(0, 10, 2000), "categorical", "jensenshannon"),
        (RNG.integers(0, 50, 2000), RNG.integers(0, 50, 2000), "numeric", "wasserstein"),
        (RNG.choice([True, False], 300), RNG.choice([True, False], 300), "categorical", "z"),
    ],
    ids=[
        "numeric-1000-rows-ks", "numeric-1001-rows-wasserstein", "numeric-4-values-chisquare",
        "numeric-2-values-z", "numeric-5-values-large-js", "categorical-small-chisquare",
        "binary-small-z", "categorical-large-js", "int-10-levels-is-categorical",
        "int-50-levels-is-numeric", "bool-is-categorical",
    ],
)  # fmt: skip
def test_evidently_default_test_per_type_and_size(
    ref: np.ndarray, cur: np.ndarray, kind: str, test: str
) -> None:
    report = drift(pd.DataFrame({"c": ref}), pd.DataFrame({"c": cur}))
    col = report.columns["c"]
    assert (col.kind, col.test) == (kind, test)
    expected_threshold = 0.05 if test in ("ks", "chisquare", "z") else 0.1
    assert col.threshold == expected_threshold
    assert (col.p_value is None) == (test in ("wasserstein", "jensenshannon"))


def test_values_match_scipy_on_the_evidently_bins() -> None:
    ref, cur = _num(3000), _num(2500, shift=0.4)
    report = drift(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}))
    w = report.columns["x"]
    assert w.statistic == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref))
    # JS and PSI use Sturges bins over both samples (more than 20 distinct reference values).
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    r = np.histogram(ref, edges)[0] / ref.size
    c = np.histogram(cur, edges)[0] / cur.size
    js = drift(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), stattest="jensenshannon")
    assert js.columns["x"].statistic == pytest.approx(distance.jensenshannon(r, c))
    assert w.psi == pytest.approx(float(np.sum((r - c) * np.log(r / c))))
    small = drift(pd.DataFrame({"x": ref[:500]}), pd.DataFrame({"x": cur[:400]}))
    ks = stats.ks_2samp(ref[:500], cur[:400])
    assert small.columns["x"].statistic == pytest.approx(ks.statistic)
    assert small.columns["x"].p_value == pytest.approx(ks.pvalue)


def test_categorical_values_match_scipy() -> None:
    ref = RNG.choice(list("abcd"), 800, p=[0.4, 0.3, 0.2, 0.1])
    cur = RNG.choice(list("abcde"), 700, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    col = drift(pd.DataFrame({"c": ref}), pd.DataFrame({"c": cur})).columns["c"]
    assert col.test == "chisquare" and col.drifted  # "e" is new: infinite chi-square, p = 0
    assert col.p_value == 0.0
    keys = ["a", "b", "c", "d"]
    ref2 = RNG.choice(keys, 900, p=[0.4, 0.3, 0.2, 0.1])
    cur2 = RNG.choice(keys, 700, p=[0.35, 0.3, 0.2, 0.15])
    col2 = drift(pd.DataFrame({"c": ref2}), pd.DataFrame({"c": cur2})).columns["c"]
    rc = np.array([(ref2 == k).sum() for k in keys])
    cc = np.array([(cur2 == k).sum() for k in keys])
    res = stats.chisquare(cc, rc * cc.sum() / rc.sum())
    assert col2.statistic == pytest.approx(res.statistic)
    assert col2.p_value == pytest.approx(res.pvalue)


def test_no_drift_between_two_samples_of_one_distribution() -> None:
    def frame(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "x": RNG.normal(size=n),
                "y": RNG.exponential(size=n),
                "plan": RNG.choice(["basic", "pro", "team"], n, p=[0.6, 0.3, 0.1]),
            }
        )

    for n in (5000, 50_000):
        report = drift(frame(n), frame(n))
        assert report.drifted_columns == [] and not report.drifted and not report.trigger()


def test_drift_found_on_shifted_data_and_the_dataset_verdict_is_evidently_share() -> None:
    n = 5000
    ref = pd.DataFrame({f"x{i}": RNG.normal(size=n) for i in range(4)})
    cur = pd.DataFrame({f"x{i}": RNG.normal(0.5 if i < 2 else 0, 1, size=n) for i in range(4)})
    report = drift(ref, cur)
    assert report.drifted_columns == ["x0", "x1"]
    assert report.share_drifted == 0.5 and report.drifted  # share >= 0.5
    cur["x1"] = RNG.normal(size=n)
    one = drift(ref, cur)
    assert one.share_drifted == 0.25 and not one.drifted
    assert one.trigger() and one.trigger(columns=["x0", "x2"])
    assert not one.trigger(columns=["x2", "x3"])
    assert not one.trigger(share=0.5) and one.trigger(share=0.5, columns=["x0", "x3"])


def test_five_of_twenty_five_drifted_columns_is_no_dataset_drift_but_triggers() -> None:
    n = 3000
    ref = pd.DataFrame({f"f{i:02d}": RNG.normal(size=n) for i in range(25)})
    cur = pd.DataFrame({f"f{i:02d}": RNG.normal(1.0 if i < 5 else 0, 1, size=n) for i in range(25)})
    report = ll.monitor.drift(ref, cur)
    assert len(report.drifted_columns) == 5 and report.share_drifted == 0.2
    assert not report.drifted
    assert report.trigger() and report.trigger(columns=["f00", "f10"])


def test_columns_argument_limits_the_check() -> None:
    ref = pd.DataFrame({"a": _num(2000), "b": _num(2000)})
    cur = pd.DataFrame({"a": _num(2000, 3), "b": _num(2000)})
    report = drift(ref, cur, columns=["b"])
    assert list(report.columns) == ["b"] and not report.drifted
    with pytest.raises(InvalidInput, match="not in the reference data: zzz"):
        drift(ref, cur, columns=["zzz"])


def test_stattest_psi_and_threshold_override() -> None:
    ref, cur = pd.DataFrame({"x": _num(3000)}), pd.DataFrame({"x": _num(3000, 0.3)})
    psi = drift(ref, cur, stattest="psi").columns["x"]
    assert psi.test == "psi" and psi.statistic == psi.psi and psi.threshold == 0.1
    loose = drift(ref, cur, threshold=10.0).columns["x"]
    assert loose.test == "wasserstein" and loose.threshold == 10.0 and not loose.drifted
    with pytest.raises(InvalidInput, match="'stattest' parameter"):
        drift(ref, cur, stattest="anderson")
    with pytest.raises(InvalidInput, match="'threshold' parameter"):
        drift(ref, cur, threshold=-1)
    for bad in (True, float("inf"), float("nan")):  # True was 1.0: every p-value test drifted
        with pytest.raises(InvalidInput, match="'threshold' parameter"):
            drift(ref, cur, threshold=bad)
    with pytest.raises(InvalidInput, match="'drift_share' parameter"):
        drift(ref, cur, drift_share=True)


def test_mismatched_columns_are_reported_and_shared_ones_tested() -> None:
    ref = pd.DataFrame({"a": _num(1500), "b": _num(1500), "gone": _num(1500)})
    cur = pd.DataFrame({"b": _num(1500, 2), "a": _num(1500), "new": _num(1500)})
    report = drift(ref, cur)
    assert list(report.columns) == ["a", "b"]
    assert report.missing_columns == ["gone"] and report.extra_columns == ["new"]
    assert report.drifted_columns == ["b"]
    assert report.trigger(columns=["a", "gone"])  # a missing feature always triggers
    with pytest.raises(InvalidInput, match="not in the reference"):
        report.trigger(columns=["nope"])
    detailed = report.to_dict(detailed=True)
    assert detailed["missing_columns"] == ["gone"] and detailed["extra_columns"] == ["new"]


def test_all_null_constant_text_and_unsupported_columns_do_not_crash() -> None:
    n = 1500
    ref = pd.DataFrame(
        {
            "empty": [np.nan] * n,
            "empty_now": _num(n),
            "const": [3.0] * n,
            "const_cat": ["x"] * n,
            "const_moved": [1.0] * n,
            "text": [f"comment {i}" for i in range(n)],
            "when": pd.date_range("2024-01-01", periods=n, freq="h"),
            "ok": _num(n),
        }
    )
    cur = ref.copy()
    cur["empty_now"] = np.nan
    cur["const_moved"] = 2.0
    report = drift(ref, cur)
    c = report.columns
    assert c["empty"].status == "skipped: all null in reference"
    assert c["empty_now"].status == "broken: all null in current"  # it was "skipped"
    assert (c["const"].status, c["const"].drifted, c["const"].test) == (
        "constant",
        False,
        "jensenshannon",
    )
    assert (c["const_cat"].status, c["const_cat"].drifted) == ("constant", False)
    assert c["const_moved"].drifted and c["const_moved"].status == "ok"
    assert c["text"].status.startswith("skipped: text")
    assert c["when"].status.startswith("skipped: unsupported type timestamp")
    assert report.tested_columns == ["const", "const_cat", "const_moved", "ok"]
    assert report.share_drifted == 0.25
    assert set(report.skipped_columns) == {"empty", "text", "when"}
    assert report.broken_columns == {"empty_now": "broken: all null in current"}
    assert set(report.to_dict()["columns"]) == set(report.tested_columns)
    assert set(report.to_dict()["not_tested"]) == {"empty", "empty_now", "text", "when"}
    # The broken column triggers (with the drifted one); those skipped on purpose do not.
    assert report.trigger_reasons() == {
        "empty_now": "all null in current",
        "const_moved": "jensenshannon 0.833 >= 0.1",
    }


def test_a_column_of_mixed_python_types_is_skipped_with_the_reason() -> None:
    ref = pd.DataFrame({"mixed": [1, "a", 2.5] * 10, "x": _num(30)})
    report = drift(ref, ref)
    assert report.columns["mixed"].status.startswith("skipped: column 'mixed' of the reference")
    assert report.tested_columns == ["x"]


def test_infinities_and_nulls_are_dropped() -> None:
    x = _num(2000)
    dirty = np.concatenate([x, [np.inf, -np.inf, np.nan] * 10])
    col = drift(pd.DataFrame({"x": dirty}), pd.DataFrame({"x": x})).columns["x"]
    assert (col.n_reference, col.n_current, col.statistic) == (2000, 2000, 0.0)


def test_single_row_tables() -> None:
    one = pd.DataFrame({"x": [1.5], "c": pd.Categorical(["a"]), "s": ["a"]})
    report = drift(one, one)
    assert report.columns["x"].test == "z" and not report.columns["x"].drifted
    assert report.columns["c"].status == "constant" and not report.drifted
    # Evidently's rule: a string column with more than half distinct values is text.
    assert report.columns["s"].status.startswith("skipped: text")
    other = drift(one, pd.DataFrame({"x": [2.5], "c": pd.Categorical(["b"])}))
    assert other.columns["x"].p_value is not None and 0 < other.columns["x"].p_value < 1
    assert other.missing_columns == ["s"]


def test_type_mismatch_is_broken_with_the_reason() -> None:
    ref = pd.DataFrame({"x": _num(100)})
    cur = pd.DataFrame({"x": ["a"] * 100})
    status = drift(ref, cur).columns["x"].status
    assert status.startswith("broken: current column is") and "string" in status
    assert status.endswith("reference is numeric")


def test_sources_pandas_arrow_parquet_csv_give_the_same_verdicts(tmp_path: Path) -> None:
    ref = pd.DataFrame({"x": _num(2000), "c": RNG.choice(list("abc"), 2000)})
    cur = pd.DataFrame({"x": _num(2000, 1), "c": RNG.choice(list("abc"), 2000)})
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_csv(tmp_path / "cur.csv", index=False)
    a = drift(ref, cur).to_dict()
    b = drift(pa.Table.from_pandas(ref), pa.Table.from_pandas(cur)).to_dict()
    c = drift(tmp_path / "ref.parquet", str(tmp_path / "cur.csv")).to_dict()
    assert a == b
    assert a["columns"].keys() == c["columns"].keys()
    for name in a["columns"]:
        assert c["columns"][name]["statistic"] == pytest.approx(a["columns"][name]["statistic"])


def test_missing_files_and_bad_sources_have_clear_errors(tmp_path: Path) -> None:
    ref = pd.DataFrame({"x": [1.0]})
    with pytest.raises(NotFound, match="there is no file"):
        drift(tmp_path / "nope.parquet", ref)
    with pytest.raises(NotFound, match="neither an existing file nor a dataset"):
        drift("not a ref!", ref)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InvalidInput, match="neither a Parquet nor a CSV"):
        drift(tmp_path / "notes.txt", ref)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidInput, match="not a readable Parquet file"):
        drift(tmp_path / "broken.parquet", ref)
    with pytest.raises(InvalidInput, match="cannot compute drift on a list"):
        drift([1, 2], ref)


_DRIFT_ON_A_VERSION = """
import sys
import pandas as pd
import loopline as ll
from loopline.data.dataset_reads import get
from loopline.data.dataset_registration import register
from loopline.monitoring.drift import drift
ll.init(home=sys.argv[1])
register("d", pd.DataFrame({"x": [float(i) for i in range(50)]}))
report = drift(get("d"), get("d"))
print("loopline.data.datasets" in sys.modules, sorted(report.columns))
"""


def test_a_dataset_version_is_a_source_where_ll_datasets_was_never_imported(
    tmp_path: Path,
) -> None:
    # A DatasetVersion is told by its module being loaded; the class lives in
    # loopline.data.dataset_version, which code can load without ll.datasets.
    done = run_python(_DRIFT_ON_A_VERSION, str(tmp_path / "h"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "['x']"]


def test_to_json_is_the_cli_shape() -> None:
    import json

    ref, cur = pd.DataFrame({"x": _num(500)}), pd.DataFrame({"x": _num(500, 1)})
    data = json.loads(drift(ref, cur).to_json())
    assert list(data) == ["drifted", "share_drifted", "columns", "not_tested"]
    assert list(data["columns"]["x"]) == [
        "test", "statistic", "p_value", "threshold", "drifted",
        "missing_reference", "missing_current", "missing_drifted",
    ]  # fmt: skip


# Last, after every draw made at import (the parametrized samples above).
_STATE_AFTER_IMPORT = RNG.bit_generator.state


def test_integers_past_2_53_are_tested_as_numbers() -> None:
    # Ids and nanosecond times as int64 (or uint64) are not exactly float64; the drift of
    # their distribution does not need them to be (an ArrowInvalid escaped before).
    ids = np.arange(10**17, 10**17 + 3000, dtype=np.int64)
    big = np.arange(2**63, 2**63 + 3000, dtype=np.uint64)
    ref = pd.DataFrame({"id": ids, "u": big})
    report = drift(ref, ref.iloc[:1000])
    want = stats.wasserstein_distance(ids.astype(float), ids[:1000].astype(float))
    assert report.columns["id"].statistic == pytest.approx(want / ids.astype(float).std())
    assert report.columns["id"].drifted and report.columns["u"].drifted
    assert not drift(ref, ref).columns["u"].drifted


# -- columns the current data broke, missing values, an empty window ----------------------


def _spend(n: int = 500) -> pd.DataFrame:
    return pd.DataFrame({"spend": np.random.default_rng(3).normal(50, 10, n)})


@pytest.mark.parametrize(
    ("current", "status"),
    [
        ([np.nan] * 300, "broken: all null in current"),
        ([None] * 300, "broken: all null in current"),
        ([np.inf] * 300, "broken: all null in current"),  # infinities count as missing
        (pd.Series([None] * 300, dtype="string"), "broken: all null in current"),
        (["50.1"] * 300, "broken: current column is large_string, reference is numeric"),
        ([True, False] * 150, "broken: current column is bool, reference is numeric"),
        ([1.0, "a"] * 150, "broken: column 'spend' of the current table mixes types"),
    ],
    ids=["nan", "none", "inf", "null-strings", "text", "bool", "mixed"],
)
def test_a_feature_all_null_or_of_another_type_is_broken_and_triggers(
    current: Any, status: str
) -> None:
    # It was skipped: trigger() was False, --json left the column out, and the loop, whose
    # features are exactly such columns, never fired.
    report = ll.monitor.drift(_spend(), pd.DataFrame({"spend": current}))
    col = report.columns["spend"]
    assert col.status.startswith(status) and col.broken and not col.tested
    assert report.trigger(columns=["spend"]) and report.trigger(share=1.0, columns=["spend"])
    assert report.trigger()  # every column the tables share
    assert report.broken_columns == {"spend": col.status}
    assert report.trigger_reasons(["spend"]) == {"spend": col.status.removeprefix("broken: ")}
    assert report.to_dict()["not_tested"] == {"spend": col.status}
    assert not report.drifted and report.drifted_columns == []  # Evidently's verdict: none


def test_a_categorical_feature_all_null_is_broken_and_other_levels_are_drift() -> None:
    ref = pd.DataFrame({"plan": ["basic", "pro"] * 250})
    gone = ll.monitor.drift(ref, pd.DataFrame({"plan": [None] * 300}))
    assert gone.columns["plan"].status == "broken: all null in current"
    assert gone.trigger(columns=["plan"])
    # A categorical column of another type is tested: its levels are new, so it drifts.
    coded = ll.monitor.drift(ref, pd.DataFrame({"plan": [0, 1] * 150}))
    assert coded.columns["plan"].tested and coded.drifted_columns == ["plan"]


def test_skips_on_purpose_never_trigger() -> None:
    n = 500
    ref = pd.DataFrame(
        {
            "x": _num(n),
            "customer_id": [f"c{i}" for i in range(n)],  # text: skipped whatever comes
            "never": [np.nan] * n,  # no values in the reference: nothing to compare with
            "left_out": _num(n),
        }
    )
    cur = pd.DataFrame(
        {"x": _num(300), "customer_id": [None] * 300, "never": [np.nan] * 300,
         "left_out": [np.nan] * 300}
    )  # fmt: skip
    report = drift(ref, cur, columns=["x", "customer_id", "never"])  # left_out excluded
    assert report.columns["customer_id"].status.startswith("skipped: text")
    assert report.columns["never"].status == "skipped: all null in reference"
    assert "left_out" not in report.columns and report.broken_columns == {}
    assert not report.trigger() and not report.trigger(columns=["customer_id", "never"])


def test_a_sparse_feature_without_values_in_a_small_window_is_no_significant_change() -> None:
    # 0.5 % of the reference has a value: 300 rows without one is what chance gives
    # (1.5 expected), not a broken feed; the verdict says so and nothing triggers.
    values = np.full(2000, np.nan)
    values[:10] = 1.0 + np.arange(10)
    report = drift(pd.DataFrame({"coupon": values}), pd.DataFrame({"coupon": [np.nan] * 300}))
    col = report.columns["coupon"]
    assert col.status == (
        "skipped: all null in current, no significant change from the reference (99.5% missing)"
    )
    assert (col.missing_reference, col.missing_current, col.missing_drifted) == (
        0.995, 1.0, False
    )  # fmt: skip
    assert not report.trigger() and report.broken_columns == {}


def test_an_empty_current_table_is_not_enough_data_and_does_not_trigger() -> None:
    # As the loop's window below min_rows ("not enough traffic yet"): no rows, no verdict.
    ref = pd.DataFrame({"spend": _num(500), "plan": ["a", "b"] * 250})
    report = drift(ref, ref.iloc[:0])
    assert report.n_current == 0 and report.tested_columns == []
    assert {c.status for c in report.columns.values()} == {"skipped: no current rows"}
    assert report.skipped_columns == report.not_tested and report.broken_columns == {}
    assert not report.trigger() and not report.trigger(share=0.1)
    # A feature the empty table does not even have is still missing: that triggers.
    assert drift(ref, ref.iloc[:0][["plan"]]).trigger(columns=["spend"])


def test_share_of_missing_values_is_reported_and_a_large_rise_triggers() -> None:
    rng = np.random.default_rng(8)
    ref = pd.DataFrame({"spend": rng.normal(50, 10, 2000), "age": rng.normal(40, 9, 2000)})
    spend = rng.normal(50, 10, 2000)
    spend[rng.random(2000) < 0.6] = np.nan  # 60 % null; the rest as before
    age = rng.normal(40, 9, 2000)
    age[:40] = np.nan  # 2 %: the Jensen-Shannon distance of the shares is 0.08
    report = drift(ref, pd.DataFrame({"spend": spend, "age": age}))
    s, a = report.columns["spend"], report.columns["age"]
    assert not s.drifted and report.drifted_columns == []  # the values have not moved
    assert s.missing_reference == 0.0 and s.missing_current == pytest.approx(0.6, abs=0.03)
    assert s.missing_drifted and not a.missing_drifted and a.missing_current == 0.02
    assert report.trigger(columns=["spend"]) and not report.trigger(columns=["age"])
    assert report.trigger(share=0.5) and not report.trigger(share=0.6)
    why = report.trigger_reasons()
    assert list(why) == ["spend"] and why["spend"].startswith("missing values rose from 0.0% to")
    detailed = report.to_dict(detailed=True)["columns"]["spend"]
    assert detailed["missing_drifted"] is True and detailed["missing_reference"] == 0.0
    # Fewer missing values is better data, not a trigger.
    better = drift(pd.DataFrame({"spend": spend}), ref[["spend"]]).columns["spend"]
    assert better.missing_current == 0.0 and not better.missing_drifted


@pytest.mark.parametrize("ref_rows", [300, 1000, 1001, 5000], ids=lambda n: f"ref-{n}")
def test_missing_rose_is_the_default_test_of_a_two_level_column(ref_rows: int) -> None:
    # "missing or not" as a categorical column of two levels: z-test (p < 0.05) up to 1,000
    # reference rows, Jensen-Shannon distance (>= 0.1) above; only a rise counts.
    for ref_share in (0.0, 0.05, 0.3):
        for cur_share in (0.0, 0.01, 0.03, 0.07, 0.12, 0.2, 0.35, 0.6, 1.0):
            cur_rows = 400
            r, c = round(ref_share * ref_rows), round(cur_share * cur_rows)
            if ref_rows <= 1000:  # the pooled z-test is the 2x2 chi-square without correction
                table = [[r, ref_rows - r], [c, cur_rows - c]]
                both = 0 < r + c < ref_rows + cur_rows
                p = stats.chi2_contingency(table, correction=False).pvalue if both else 1.0
                expected = bool(p < 0.05)
            else:
                d = distance.jensenshannon([r, ref_rows - r], [c, cur_rows - c])
                expected = bool(d >= 0.1)
            rose = c / cur_rows > r / ref_rows
            assert missing_rose(r, ref_rows, c, cur_rows) == (expected and rose), (r, c)
