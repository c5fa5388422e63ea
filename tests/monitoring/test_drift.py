"""``ll.monitor.drift``: Evidently's test per column type and size, verdicts, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial import distance

import loopline as ll
from loopline.errors import InvalidInput, NotFound
from loopline.monitoring.drift import drift

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
    assert c["empty_now"].status == "skipped: all null in current"
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
    assert set(report.skipped_columns) == {"empty", "empty_now", "text", "when"}
    assert set(report.to_dict()["columns"]) == set(report.tested_columns)


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


def test_type_mismatch_is_a_skip_with_the_reason() -> None:
    ref = pd.DataFrame({"x": _num(100)})
    cur = pd.DataFrame({"x": ["a"] * 100})
    status = drift(ref, cur).columns["x"].status
    assert status.startswith("skipped: current column is") and "string" in status
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


def test_to_json_is_the_cli_shape() -> None:
    import json

    ref, cur = pd.DataFrame({"x": _num(500)}), pd.DataFrame({"x": _num(500, 1)})
    data = json.loads(drift(ref, cur).to_json())
    assert set(data) == {"drifted", "share_drifted", "columns"}
    assert set(data["columns"]["x"]) == {"test", "statistic", "p_value", "threshold", "drifted"}


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
