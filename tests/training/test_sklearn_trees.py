"""Tree models loaded from a file: every legitimate kind loads and predicts as it was saved;
a file whose node arrays were altered is refused before the model is used.

Each altered file points scikit-learn's compiled prediction code, which does not check
bounds, outside its arrays: it would read memory it should not or crash. Before these
checks such files loaded without a word; a changed child index (decision tree and
histogram gradient boosting) and a changed row index (KDTree, BallTree) were seen to kill
the process with SIGSEGV on the first prediction. None of them is ever predicted here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import (
    AdaBoostClassifier,
    BaggingClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils.validation import check_array

import loopline as ll
from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.training.flavors import get_flavor
from loopline.training.flavors.sklearn_flavor import TREE_TYPES

RNG = np.random.default_rng(7)
X = pd.DataFrame(RNG.random((240, 4)), columns=["a", "b", "c", "d"])
Y3 = (X["a"] * 3).astype(int)  # three classes
Y2 = (X["a"] + X["b"] > 1).astype(int)
CATS = X.assign(d=pd.Categorical(RNG.choice(["x", "y", "z"], len(X))))


def _hist_categorical() -> Any:
    return HistGradientBoostingClassifier(max_iter=8, categorical_features="from_dtype").fit(
        CATS, (CATS["d"] == "x") | (CATS["a"] > 0.5)
    )


LEGITIMATE: dict[str, tuple[Callable[[], Any], pd.DataFrame]] = {
    "decision-tree": (lambda: DecisionTreeClassifier(max_depth=6).fit(X, Y3), X),
    "regression-tree": (lambda: DecisionTreeRegressor(max_depth=5).fit(X, X["a"]), X),
    "random-forest": (lambda: RandomForestClassifier(n_estimators=5).fit(X, Y2), X),
    "extra-trees": (lambda: ExtraTreesRegressor(n_estimators=5).fit(X, X["b"]), X),
    "gradient-boosting-3-classes": (
        lambda: GradientBoostingClassifier(n_estimators=5).fit(X, Y3),
        X,
    ),
    "adaboost": (lambda: AdaBoostClassifier(n_estimators=5).fit(X, Y2), X),
    "bagging-feature-subsets": (
        lambda: BaggingClassifier(DecisionTreeClassifier(), n_estimators=4, max_features=2).fit(
            X, Y2
        ),
        X,
    ),
    "isolation-forest-feature-subsets": (
        lambda: IsolationForest(n_estimators=5, max_features=2, random_state=0).fit(X),
        X,
    ),
    "hist-gradient-boosting": (
        lambda: HistGradientBoostingClassifier(max_iter=10).fit(X, Y3),
        X,
    ),
    "hist-gradient-boosting-regressor": (
        lambda: HistGradientBoostingRegressor(max_iter=10).fit(X, X["c"]),
        X,
    ),
    "hist-gradient-boosting-categorical": (_hist_categorical, CATS),
    "nearest-neighbours-kd-tree": (
        lambda: KNeighborsClassifier(algorithm="kd_tree", leaf_size=5).fit(X, Y3),
        X,
    ),
    "nearest-neighbours-ball-tree-weighted-minkowski": (
        lambda: KNeighborsRegressor(
            algorithm="ball_tree", metric="minkowski", p=3, metric_params={"w": np.arange(1.0, 5.0)}
        ).fit(X, X["a"]),
        X,
    ),
    "nearest-neighbours-auto": (lambda: KNeighborsClassifier().fit(X, Y2), X),
    "pruned-tree": (lambda: DecisionTreeClassifier(ccp_alpha=0.01).fit(X, Y3), X),
    "best-first-tree": (lambda: DecisionTreeRegressor(max_leaf_nodes=20).fit(X, X["a"]), X),
    "multi-output-tree": (
        lambda: DecisionTreeClassifier(max_depth=4).fit(X, np.c_[Y2, Y3]),
        X,
    ),
    "multi-output-forest-regressor": (
        lambda: RandomForestRegressor(n_estimators=3, max_depth=4).fit(X, X[["a", "b"]]),
        X,
    ),
    "pipeline-one-hot-then-tree": (
        lambda: make_pipeline(
            make_column_transformer((OneHotEncoder(), ["d"]), remainder="passthrough"),
            DecisionTreeClassifier(max_depth=4),
        ).fit(CATS, Y2),
        CATS,
    ),
}


def _save(model: Any, folder: Path) -> tuple[Any, dict[str, bytes]]:
    flavor = get_flavor("sklearn")
    folder.mkdir()
    saved = flavor.save(model, folder)
    return saved, {rel: (folder / rel).read_bytes() for rel in saved.files}


@pytest.mark.parametrize("kind", sorted(LEGITIMATE))
def test_every_kind_of_tree_model_loads_and_predicts_as_saved(kind: str, tmp_path: Path) -> None:
    make, data = LEGITIMATE[kind]
    model = make()
    saved, files = _save(model, tmp_path / "m")
    loaded = get_flavor("sklearn").load(files, saved)
    np.testing.assert_array_equal(loaded.predict(data), model.predict(data))


# -- altered files ----------------------------------------------------------------------


def _tree_state(tree: Any, change: Callable[[dict[str, Any]], None]) -> None:
    """Change a fitted ``Tree`` as a crafted file would carry it (via its own state)."""
    state = tree.__getstate__()
    state["nodes"] = state["nodes"].copy()
    change(state)
    tree.__setstate__(state)


def _first_inner(nodes: Any, field: str = "left_child") -> int:
    return int(np.flatnonzero(nodes[field] > 0)[0])


def _left_child_far_away(state: dict[str, Any]) -> None:
    nodes = state["nodes"]
    nodes["left_child"][_first_inner(nodes)] = 10_000_000


def _right_child_back_to_the_root(state: dict[str, Any]) -> None:
    nodes = state["nodes"]
    nodes["right_child"][_first_inner(nodes, "right_child")] = 0


def _feature_past_the_input(state: dict[str, Any]) -> None:
    nodes = state["nodes"]
    nodes["feature"][_first_inner(nodes)] = 4


def _max_depth_zero(state: dict[str, Any]) -> None:
    """decision_path writes 1 + max_depth nodes a row: this crashed it (SIGSEGV)."""
    state["max_depth"] = 0


def _two_parents(state: dict[str, Any]) -> None:
    """The root's right child becomes its left child's left child (still a later node)."""
    nodes = state["nodes"]
    nodes["right_child"][0] = nodes["left_child"][nodes["left_child"][0]]


def _no_nodes(state: dict[str, Any]) -> None:
    state["nodes"] = state["nodes"][:0]
    state["values"] = state["values"][:0]
    state["node_count"] = 0


def _altered_tree(change: Callable[[dict[str, Any]], None]) -> Any:
    model = DecisionTreeClassifier(max_depth=4).fit(X, Y3)
    _tree_state(model.tree_, change)
    return model


def reshaped_values(estimator: Any, n_classes: list[int]) -> None:
    """Give ``estimator`` a tree of the same nodes holding ``n_classes`` values per output
    (as many outputs as items), as a crafted file would: the values scikit-learn checks
    against that shape have it."""
    old = estimator.tree_
    state = old.__getstate__()
    counts = np.asarray(n_classes, dtype=np.intp)
    state["values"] = np.zeros((len(state["nodes"]), len(counts), max(n_classes)))
    tree = type(old)(old.n_features, counts, len(counts))
    tree.__setstate__(state)
    estimator.tree_ = tree


def _values(make: Callable[[], Any], n_classes: list[int]) -> Any:
    model = make()
    for tree in model.estimators_ if hasattr(model, "estimators_") else [model]:
        reshaped_values(tree, n_classes)
    return model


def _forest_member_wider_than_the_forest() -> Any:
    narrow = X[["a", "b"]]
    forest = RandomForestClassifier(n_estimators=3).fit(narrow, Y2)
    wide = DecisionTreeClassifier(max_depth=4).fit(X, Y2)  # reads 4 features; forest gives 2
    forest.estimators_[1] = wide
    return forest


def _boosted_tree_in_a_pipeline() -> Any:
    pipe = make_pipeline(GradientBoostingClassifier(n_estimators=3)).fit(X, Y3)
    _tree_state(pipe[-1].estimators_[2, 1].tree_, _left_child_far_away)
    return pipe


def _hist(change: Callable[[Any, Any], None], categorical: bool = False) -> Any:
    model = (
        _hist_categorical()
        if categorical
        else HistGradientBoostingClassifier(max_iter=5).fit(X, Y2)
    )
    predictor = model._predictors[-1][0]
    predictor.nodes = predictor.nodes.copy()
    change(model, predictor)
    return model


def _hist_left_far_away(model: Any, predictor: Any) -> None:
    predictor.nodes["left"][0] = 1_000_000


def _hist_feature_past_the_input(model: Any, predictor: Any) -> None:
    predictor.nodes["feature_idx"][0] = 9


def _hist_categorical_split_on_a_numeric_feature(model: Any, predictor: Any) -> None:
    nodes = predictor.nodes
    inner = int(np.flatnonzero(~nodes["is_leaf"].astype(bool))[0])
    nodes["is_categorical"][inner] = 1
    nodes["feature_idx"][inner] = 0  # "a" is a number


def _hist_bitset_past_the_end(model: Any, predictor: Any) -> None:
    nodes = predictor.nodes
    split = np.flatnonzero(nodes["is_categorical"].astype(bool) & ~nodes["is_leaf"].astype(bool))
    nodes["bitset_idx"][split[0]] = 500


def _hist_preprocessing_drops_a_column(model: Any, predictor: Any) -> None:
    numerical = model._preprocessor.transformers_[1]
    name, step, columns = numerical
    mask = np.asarray(columns).copy()
    mask[np.flatnonzero(mask)[0]] = False
    model._preprocessor.transformers_[1] = (name, step, mask)


def _hist_preprocessing_averages(model: Any, predictor: Any) -> None:
    from sklearn.preprocessing import FunctionTransformer

    name, _step, columns = model._preprocessor.transformers_[1]
    model._preprocessor.transformers_[1] = (name, FunctionTransformer(np.mean), columns)


def _index(change: Callable[[list[Any]], None], algorithm: str = "kd_tree", **kw: Any) -> Any:
    """A nearest-neighbours model whose KDTree / BallTree state was changed."""
    model = KNeighborsClassifier(algorithm=algorithm, leaf_size=5, **kw).fit(X, Y2)
    state = list(model._tree.__getstate__())
    change(state)
    model._tree.__setstate__(tuple(state))
    return model


def _row_far_away(state: list[Any]) -> None:
    state[1] = state[1].copy()
    state[1][0] = 100_000_000


def _leaf_past_the_rows(state: list[Any]) -> None:
    state[2] = state[2].copy()
    state[2]["idx_end"][-1] = len(state[0]) + 40


def _inner_node_at_the_bottom(state: list[Any]) -> None:
    state[2] = state[2].copy()
    state[2]["is_leaf"][-1] = 0


def _short_weights(state: list[Any]) -> None:
    from sklearn.metrics import DistanceMetric

    state[11] = DistanceMetric.get_metric("minkowski", p=3, w=np.ones(2))


ALTERED: dict[str, tuple[Callable[[], Any], str]] = {
    "kd-tree-row-far-away": (
        lambda: _index(_row_far_away),
        r"KDTree: its row index does not point into its 240 rows",
    ),
    "ball-tree-leaf-past-the-rows": (
        lambda: _index(_leaf_past_the_rows, "ball_tree"),
        r"BallTree: node \d+ holds rows \d+\.\.280 of 240",
    ),
    "kd-tree-inner-node-at-the-bottom": (
        lambda: _index(_inner_node_at_the_bottom),
        r"node \d+ has no children to visit",
    ),
    "ball-tree-short-minkowski-weights": (
        lambda: _index(_short_weights, "ball_tree", metric="minkowski", p=3),
        r"2 Minkowski weights for 4 features",
    ),
    "left-child-far-away": (
        lambda: _altered_tree(_left_child_far_away),
        r"left child is 10000000, not a later node",
    ),
    "right-child-loops-back": (
        lambda: _altered_tree(_right_child_back_to_the_root),
        r"right child is 0, not a later node",
    ),
    "feature-past-the-input": (
        lambda: _altered_tree(_feature_past_the_input),
        r"splits on feature 4, outside the 4 features",
    ),
    "no-nodes": (lambda: _altered_tree(_no_nodes), r"claims 0 nodes and holds 0"),
    "max-depth-below-the-deepest-node": (
        lambda: _altered_tree(_max_depth_zero),
        r"DecisionTreeClassifier #0: max_depth is 0, its nodes 2 deep",
    ),
    "node-with-two-parents": (
        lambda: _altered_tree(_two_parents),
        r"node 2 is the child of 2 nodes, not 1",
    ),
    "regression-tree-without-values": (
        lambda: _values(lambda: DecisionTreeRegressor(max_depth=4).fit(X, X["a"]), [0]),
        r"DecisionTreeRegressor #\d+: a regression tree with n_classes \[0\], not 1s",
    ),
    "forest-regression-trees-of-two-values": (
        lambda: _values(lambda: RandomForestRegressor(n_estimators=2).fit(X, X["a"]), [2]),
        r"a regression tree with n_classes \[2\]",
    ),
    "classifier-tree-of-two-outputs-for-one": (
        lambda: _values(lambda: DecisionTreeClassifier(max_depth=4).fit(X, Y3), [3, 3]),
        r"its tree has 2 outputs, its estimator 1",
    ),
    "classifier-tree-without-values-for-an-output": (
        lambda: _values(lambda: DecisionTreeClassifier(max_depth=4).fit(X, np.c_[Y2, Y3]), [2, 0]),
        r"n_classes is \[2, 0\] for 2 outputs",
    ),
    "forest-member-wider-than-forest": (
        _forest_member_wider_than_the_forest,
        r"reads 4 features, its ensemble gives it 2",
    ),
    "boosted-tree-in-a-pipeline": (_boosted_tree_in_a_pipeline, r"left child is 10000000"),
    "hist-left-far-away": (lambda: _hist(_hist_left_far_away), r"tree 4\.0: node 0's left child"),
    "hist-feature-past-the-input": (
        lambda: _hist(_hist_feature_past_the_input),
        r"node 0 splits on feature 9, outside the 4 features",
    ),
    "hist-categorical-split-on-a-number": (
        lambda: _hist(_hist_categorical_split_on_a_numeric_feature),
        r"splits feature 0 by category",
    ),
    "hist-bitset-past-the-end": (
        lambda: _hist(_hist_bitset_past_the_end, categorical=True),
        r"names bitset 500 of",
    ),
    "hist-preprocessing-drops-a-column": (
        lambda: _hist(_hist_preprocessing_drops_a_column, categorical=True),
        r"categorical preprocessing gives 3 columns, not 4",
    ),
    "hist-preprocessing-averages": (
        lambda: _hist(_hist_preprocessing_averages, categorical=True),
        r"holds a FunctionTransformer scikit-learn does not put there",
    ),
}


@pytest.mark.parametrize("kind", sorted(ALTERED))
def test_an_altered_tree_is_refused_when_loaded_naming_the_node(kind: str, tmp_path: Path) -> None:
    make, message = ALTERED[kind]
    saved, files = _save(make(), tmp_path / "m")
    with pytest.raises(InvalidInput, match=message) as info:
        get_flavor("sklearn").load(files, saved)
    assert info.value.field == "model.skops"
    assert "do not load it" in (info.value.hint or "")


def test_naming_the_tree_types_as_trusted_skips_the_checks(tmp_path: Path) -> None:
    """The way out if a future scikit-learn stores its trees differently: the caller
    vouches for the file. (The model loaded here is never used: it would crash.)"""
    saved, files = _save(_altered_tree(_left_child_far_away), tmp_path / "m")
    loaded = get_flavor("sklearn").load(files, saved, trusted_types=sorted(TREE_TYPES))
    assert isinstance(loaded, DecisionTreeClassifier)


# -- functools.partial: only around check_array -------------------------------------------


def _outer_partial() -> Any:
    return partial(np.mean, axis=1, keepdims=True)


def _nested_partial() -> Any:
    """check_array outside (accepted), numpy.mean inside, as an argument."""
    return partial(check_array, estimator=partial(np.mean, axis=1, keepdims=True))


@pytest.mark.parametrize("make", [_outer_partial, _nested_partial], ids=["outer", "nested"])
def test_a_partial_of_another_function_is_refused_after_loading(
    make: Callable[[], Any], tmp_path: Path
) -> None:
    """numpy.mean is on the allow-list, but a model holding a partial of it is not one
    scikit-learn writes: only the HistGradientBoosting preprocessing's check_array is."""
    data = X.to_numpy()
    model = make_pipeline(FunctionTransformer(make()), LinearRegression()).fit(data, X["a"])
    saved, files = _save(model, tmp_path / "m")
    with pytest.raises(InvalidInput, match=r"functools\.partial\(numpy\.mean") as info:
        get_flavor("sklearn").load(files, saved)
    assert info.value.field == "trusted_types"
    loaded = get_flavor("sklearn").load(files, saved, trusted_types=["functools.partial"])
    np.testing.assert_allclose(loaded.predict(data), model.predict(data))


def test_a_model_on_category_columns_is_registered_loaded_and_predicts(
    embedded_ctx: Context,
) -> None:
    """HistGradientBoosting fitted on category columns (scikit-learn's default,
    categorical_features="from_dtype") needed trusted_types to load, which the model
    server cannot pass: it could not be served."""
    model = _hist_categorical()
    with ll.start_run(experiment="trees") as run:
        run.log_model(model, "model", input_example=CATS.head(5))
    version = ll.registry.register(run, "by-category").version
    loaded = ll.registry.load(f"models:/by-category/{version}")
    rows = CATS.head(20)
    records = [{**{c: float(r[c]) for c in "abc"}, "d": str(r["d"])} for _, r in rows.iterrows()]
    np.testing.assert_array_equal(loaded.predict(records), model.predict(rows))
