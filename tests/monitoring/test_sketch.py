"""``DriftSketch``: fixed bins, counts that add up, the same tests as on the binned data."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from loopline.errors import InvalidInput
from loopline.monitoring import stattests as st
from loopline.monitoring.drift import drift
from loopline.monitoring.sketch import DriftSketch


def _frames(n: int, shift: float, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(
        {
            "x": rng.normal(5, 2, n),
            "plan": rng.choice(["basic", "pro", "team"], n, p=[0.5, 0.3, 0.2]),
            "few": rng.integers(0, 3, n).astype(float),
        }
    )
    cur = pd.DataFrame(
        {
            "x": rng.normal(5 + 2 * shift, 2, n),
            "plan": rng.choice(["basic", "pro", "team", "vip"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "few": rng.integers(0, 3, n).astype(float),
        }
    )
    return ref, cur


def _binned(edges: list[float], values: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(np.asarray(edges), values, side="right")
    return np.bincount(idx, minlength=len(edges) + 1)


def test_sketch_equals_the_direct_computation_on_binned_data() -> None:
    ref, cur = _frames(5000, 0.3)
    sketch = DriftSketch.from_reference(ref, bins=20)
    for start in range(0, 5000, 1000):  # logged in batches
        sketch.update(cur.iloc[start : start + 1000])
    report = sketch.drift()
    # numeric: the counts are a histogram on the reference's quantile edges
    edges = sketch.edges("x")
    assert edges is not None and len(edges) == 19
    assert edges == pytest.approx(np.quantile(ref["x"], np.arange(1, 20) / 20), rel=1e-2)
    r, c = _binned(edges, ref["x"].to_numpy()), _binned(edges, cur["x"].to_numpy())
    assert sketch.counts("x") == (r.tolist(), c.tolist())
    x = report.columns["x"]
    assert x.test == "wasserstein_binned" and x.drifted
    assert x.psi == pytest.approx(st.psi(r, c))
    lo, hi = min(ref["x"].min(), cur["x"].min()), max(ref["x"].max(), cur["x"].max())
    full = np.concatenate([[lo], edges, [hi]])
    expected = st.binned_wasserstein(r, c, full) / np.std(ref["x"])
    assert x.statistic == pytest.approx(expected)
    exact = stats.wasserstein_distance(ref["x"], cur["x"]) / np.std(ref["x"])
    assert x.statistic == pytest.approx(exact, abs=0.05)  # an approximation of the exact value
    # categorical: reference levels + "other" (the unseen "vip")
    rc, cc = sketch.counts("plan")
    levels = ["basic", "pro", "team"]
    assert rc == [int((ref["plan"] == v).sum()) for v in levels] + [0]
    assert cc == [int((cur["plan"] == v).sum()) for v in levels] + [
        int((cur["plan"] == "vip").sum())
    ]
    plan = report.columns["plan"]
    assert plan.test == "jensenshannon"
    assert plan.statistic == pytest.approx(distance.jensenshannon(rc, cc))
    assert plan.psi == pytest.approx(st.psi(np.array(rc), np.array(cc)))
    # few-valued numeric: value by value, as the direct computation
    few_direct = drift(ref[["few"]], cur[["few"]]).columns["few"]
    few = report.columns["few"]
    assert (few.test, few.statistic) == (few_direct.test, pytest.approx(few_direct.statistic))


def test_small_reference_uses_chi_square_and_binned_ks() -> None:
    ref, cur = _frames(800, 0.5)
    sketch = DriftSketch.from_reference(ref, bins=16).update(cur)
    report = sketch.drift()
    r, c = (np.array(v) for v in sketch.counts("x"))
    x = report.columns["x"]
    assert x.test == "ks_binned" and x.drifted
    assert (x.statistic, x.p_value) == pytest.approx(st.binned_ks(r, c))
    plan = report.columns["plan"]
    assert plan.test == "chisquare" and plan.drifted and plan.p_value == 0.0  # "vip" is new
    # Without the new level: SciPy's chi-square on the same counts.
    window = sketch.window().update(cur[cur["plan"] != "vip"])
    rc, cc = (np.array(v[:3]) for v in window.counts("plan"))
    res = stats.chisquare(cc, rc * cc.sum() / rc.sum())
    got = window.drift().columns["plan"]
    assert (got.statistic, got.p_value) == (pytest.approx(res.statistic), pytest.approx(res.pvalue))


def test_no_drift_on_the_same_distribution() -> None:
    ref, _ = _frames(20_000, 0.0, seed=1)
    same, _ = _frames(20_000, 0.0, seed=2)
    assert DriftSketch.from_reference(ref).update(same).drift().drifted_columns == []


def test_json_round_trip_and_merge_of_windows_equal_one_big_update() -> None:
    ref, cur = _frames(6000, 0.2)
    sketch = DriftSketch.from_reference(ref)
    stored = [
        sketch.window().update(cur.iloc[i : i + 2000]).to_json() for i in range(0, 6000, 2000)
    ]
    merged = DriftSketch.merge([DriftSketch.from_json(s) for s in stored])
    whole = sketch.window().update(cur)
    assert merged.n_current == whole.n_current == 6000
    for name in whole.columns:
        assert merged.counts(name) == whole.counts(name)
    assert merged.drift().to_dict() == whole.drift().to_dict()
    assert DriftSketch.from_json(merged.to_json()).drift().to_dict() == merged.drift().to_dict()


def test_memory_does_not_grow_with_traffic() -> None:
    ref, cur = _frames(3000, 0.0)
    sketch = DriftSketch.from_reference(ref)
    size = len(sketch.to_json())
    rng = np.random.default_rng(5)
    for _ in range(20):
        batch = cur.copy()
        batch["plan"] = [f"new-{v}" for v in rng.integers(0, 10_000, len(batch))]  # unseen levels
        sketch.update(batch)
    assert sketch.n_current == 60_000
    assert len(sketch.counts("plan")[1]) == 4  # 3 levels + other
    assert len(sketch.to_json()) < size + 400  # only the counts' digits grew


def test_max_levels_pools_rare_reference_levels_into_other() -> None:
    ref = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["c"] * 20})
    sketch = DriftSketch.from_reference(ref, max_levels=2)
    assert sketch.counts("c")[0] == [50, 30, 20]
    sketch.update(pd.DataFrame({"c": ["c", "d", "a"]}))
    assert sketch.counts("c")[1] == [1, 0, 2]


def test_bad_inputs() -> None:
    ref, cur = _frames(500, 0.0)
    a = DriftSketch.from_reference(ref)
    b = DriftSketch.from_reference(cur)
    with pytest.raises(InvalidInput, match="different references"):
        DriftSketch.merge([a, b])
    with pytest.raises(InvalidInput, match="at least one sketch"):
        DriftSketch.merge([])
    with pytest.raises(InvalidInput, match="not a Loopline drift sketch"):
        DriftSketch.from_json('{"format": 99}')
    with pytest.raises(InvalidInput, match="not a Loopline drift sketch"):
        DriftSketch.from_json("nope")
    tampered = a.to_json().replace('"n_reference":500', '"n_reference":501')
    with pytest.raises(InvalidInput, match="fingerprint"):
        DriftSketch.from_json(tampered)
    with pytest.raises(InvalidInput, match="'bins' parameter"):
        DriftSketch.from_reference(ref, bins=1)


def test_empty_window_missing_columns_and_skipped_columns() -> None:
    ref = pd.DataFrame({"x": np.arange(100.0), "nothing": [np.nan] * 100, "c": ["a", "b"] * 50})
    sketch = DriftSketch.from_reference(ref)
    assert sketch.columns == ["x", "c"]
    empty = sketch.drift()
    assert empty.columns["x"].status == "skipped: no current rows"
    assert not empty.trigger()  # no rows is not enough data, not drift
    assert empty.columns["nothing"].status == "skipped: all null in reference"
    window = sketch.window().update(pd.DataFrame({"x": np.arange(50.0)}))
    report = window.drift()
    assert report.missing_columns == ["c"] and "x" in report.columns


def test_integers_past_2_53_are_sketched() -> None:
    ids = pd.DataFrame({"id": np.arange(10**17, 10**17 + 3000, dtype=np.int64)})
    sketch = DriftSketch.from_reference(ids)
    assert sketch.window().update(ids).drift().columns["id"].statistic == 0.0
    assert sketch.window().update(ids.iloc[:500]).drift().drifted_columns == ["id"]


def test_a_window_all_null_or_of_another_type_is_broken_and_triggers() -> None:
    # The loop's path: a window whose feature is all null was "skipped: no current
    # values" (no trigger), and one of text in a numeric feature raised InvalidInput.
    ref, _ = _frames(2000, 0.0)
    sketch = DriftSketch.from_reference(ref)
    nulls = ref.iloc[:300].assign(x=np.nan, plan=None)
    report = sketch.window().update(nulls).drift()
    for name in ("x", "plan"):
        assert report.columns[name].status == "broken: all null in current"
        assert report.columns[name].missing_current == 1.0
    assert report.trigger(columns=["x"]) and report.trigger(columns=["plan"])
    assert not report.trigger(columns=["few"])
    text = sketch.window().update(ref.iloc[:300].assign(x="50.1"))
    assert text.drift().broken_columns == {
        "x": "broken: current column is large_string, reference is numeric"
    }
    # Stored and merged windows keep it, with the rows it concerns.
    good = sketch.window().update(ref.iloc[300:600])
    merged = DriftSketch.merge([DriftSketch.from_json(text.to_json()), good])
    assert merged.drift().broken_columns == {
        "x": "broken: current column is large_string in 300 rows, reference is numeric"
    }
    # A window of text-typed nulls is all null, not another type.
    typed = sketch.window().update(ref.iloc[:300].assign(x=pd.Series([None] * 300, dtype=str)))
    assert typed.drift().columns["x"].status == "broken: all null in current"


def test_a_sketch_stored_before_type_changes_were_counted_still_loads() -> None:
    ref, cur = _frames(500, 0.0)
    window = DriftSketch.from_reference(ref).update(cur)
    data = orjson.loads(window.to_json())
    for col in data["columns"].values():
        del col["cur_wrong"], col["cur_wrong_type"]
    old = DriftSketch.from_json(orjson.dumps(data))
    assert old.drift().to_dict() == window.drift().to_dict()


def test_missing_shares_and_their_rise_match_the_direct_computation() -> None:
    ref, cur = _frames(3000, 0.0)
    ref.loc[:299, "x"] = np.nan  # 10 % missing in the reference
    cur.loc[:1799, "x"] = np.nan  # 60 % now
    cur.loc[:29, "plan"] = None  # 1 %
    sketch = DriftSketch.from_reference(ref).update(cur.iloc[:1500]).update(cur.iloc[1500:])
    report, direct = sketch.drift(), drift(ref, cur)
    for name in ("x", "plan", "few"):
        got, want = report.columns[name], direct.columns[name]
        assert (got.missing_reference, got.missing_current, got.missing_drifted) == (
            want.missing_reference, want.missing_current, want.missing_drifted,
        )  # fmt: skip
    assert report.columns["x"].missing_drifted and not report.columns["plan"].missing_drifted
    assert report.trigger_reasons(["x"]) == {"x": "missing values rose from 10.0% to 60.0%"}
    # Rows of batches without the column are missing values too.
    partial = DriftSketch.from_reference(ref).update(cur.drop(columns=["plan"])).update(cur)
    assert partial.drift().columns["plan"].missing_current == pytest.approx(0.505)
