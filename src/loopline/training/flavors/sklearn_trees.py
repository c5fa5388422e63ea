"""Check the node arrays of scikit-learn tree models loaded from a file, before any use.

skops can check that a loaded object is of an allowed type, not that its content is sound.
scikit-learn's trees (``sklearn.tree._tree.Tree``: decision trees, random forests, extra
trees, gradient boosting, isolation forests) and the predictors of histogram gradient
boosting (``TreePredictor``) keep child and feature indices, and the ``KDTree`` and
``BallTree`` of nearest-neighbours models keep row indices, that the compiled prediction
code follows without bounds checks. A file with one index changed loads without a word and
then crashes the process, or reads memory it should not, on its first prediction (skops
names both types as unsafe for that reason; scikit-learn issue 34558). So a model server
would go down on a model someone logged.

:func:`check_trees` walks the loaded model and checks every tree the prediction code would
follow: children point forward inside the tree (so a walk ends, at a leaf), features are
inside the input the tree receives, each node has one parent and ``max_depth`` is the
depth of the deepest, the node values have a value per output (one, in a regression
tree), categorical splits name a categorical feature and a bitset that exists.
A legitimate model passes; any other is refused with :class:`~loopline.errors.InvalidInput`
naming the tree and the node.

Example:
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> check_trees(DecisionTreeClassifier().fit([[0.0], [1.0]], [0, 1]))
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from loopline.errors import InvalidInput

FIELD = "model.skops"
HINT = "the file was altered after scikit-learn wrote it; do not load it"


def _refuse(message: str) -> InvalidInput:
    return InvalidInput(f"model.skops: {message}", field=FIELD, hint=HINT)


def walk(root: Any) -> Iterator[Any]:
    """Every object reachable from ``root`` through attributes, containers and object
    arrays, once each (a loaded model may share sub-objects).

    Example:
        >>> [type(o).__name__ for o in walk({"a": [1.5, None]})]
        ['dict', 'list']
    """
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, str | bytes | int | float):
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend(obj.ravel().tolist())
        elif isinstance(obj, functools.partial):  # its arguments live outside __dict__
            stack.extend((obj.func, *obj.args, *obj.keywords.values()))
        elif hasattr(obj, "__dict__") and not isinstance(obj, _OPAQUE):
            stack.extend(vars(obj).values())


#: Objects whose attributes are code, not model state.
_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)


def _members(estimators: Any) -> list[Any]:
    """The sub-estimators of an ensemble: a list, or (gradient boosting) an array of them."""
    if isinstance(estimators, np.ndarray):
        return list(estimators.ravel())
    out: list[Any] = []
    for item in estimators:
        out.extend(_members(item) if isinstance(item, list | tuple | np.ndarray) else [item])
    return out


def _first(bad: Any) -> int | None:
    """The first node a boolean array over the nodes marks, or None."""
    found = np.flatnonzero(bad)
    return int(found[0]) if found.size else None


def _width(obj: Any, what: str) -> int:
    width = getattr(obj, "n_features_in_", None)
    if not isinstance(width, int | np.integer) or width < 1:
        raise _refuse(f"{what} has no valid n_features_in_ ({width!r})")
    return int(width)


def _check_children(left: Any, right: Any, leaf: Any, n: int, what: str) -> None:
    """Inner nodes point forward inside the ``n`` nodes: every walk ends at a leaf."""
    at = np.arange(n)
    inner = ~leaf
    for side, child in (("left", left), ("right", right)):
        if (node := _first(inner & ((child <= at) | (child >= n)))) is not None:
            raise _refuse(
                f"{what}: node {node}'s {side} child is {int(child[node])}, not a later "
                f"node of the tree's {n}"
            )


def _check_features(feature: Any, inner: Any, width: int, what: str) -> None:
    if (node := _first(inner & ((feature < 0) | (feature >= width)))) is not None:
        raise _refuse(
            f"{what}: node {node} splits on feature {int(feature[node])}, outside the "
            f"{width} features the tree receives"
        )


def check_decision_tree(estimator: Any, what: str, width: int | None = None) -> None:
    """Check ``estimator.tree_`` (a fitted decision tree); ``width`` bounds its input
    further when an ensemble hands it rows without checking them.

    Example:
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> check_decision_tree(DecisionTreeRegressor().fit([[0.0], [1.0]], [0, 1]), "tree")
    """
    from sklearn.tree import DecisionTreeRegressor

    tree = estimator.tree_
    own = _width(estimator, what)
    if int(tree.n_features) != own:
        raise _refuse(f"{what} has {int(tree.n_features)} features, its estimator {own}")
    if width is not None and own > width:
        raise _refuse(f"{what} reads {own} features, its ensemble gives it {width}")
    _check_values(estimator, tree, what, isinstance(estimator, DecisionTreeRegressor))
    # Prediction starts at node 0 of a buffer sized by the stored node array (an empty
    # one is no buffer); node_count is stored apart and bounds the arrays read below
    n, capacity = int(tree.node_count), int(tree.capacity)
    if not 0 < n <= capacity:
        raise _refuse(f"{what} claims {n} nodes and holds {capacity}")
    left = np.asarray(tree.children_left)
    right = np.asarray(tree.children_right)
    leaf = left == -1  # scikit-learn's TREE_LEAF: a leaf has no children
    if (node := _first(leaf & (right != -1))) is not None:
        raise _refuse(f"{what}: node {node} has a right child and no left one")
    _check_children(left, right, leaf, n, what)
    _check_features(np.asarray(tree.feature), ~leaf, own, what)
    _check_depth(tree, left[~leaf], right[~leaf], n, what)


def _check_depth(tree: Any, left: Any, right: Any, n: int, what: str) -> None:
    """Every node but the root is the child of one node (children point forward, so all
    are reached, each by one path), and ``max_depth`` is the depth of the deepest.
    ``decision_path`` writes each row's path into a buffer of ``1 + max_depth`` entries per
    row without a bounds check: a file with ``max_depth`` 0 crashed it (SIGSEGV)."""
    parents = np.bincount(np.concatenate((left, right)), minlength=n)
    parents[0] += 1  # the root: no parent
    if (node := _first(parents != 1)) is not None:
        raise _refuse(f"{what}: node {node} is the child of {int(parents[node])} nodes, not 1")
    deepest = int(np.asarray(tree.compute_node_depths()).max()) - 1  # the root is 1
    if int(tree.max_depth) != deepest:
        raise _refuse(f"{what}: max_depth is {int(tree.max_depth)}, its nodes {deepest} deep")


def _check_values(estimator: Any, tree: Any, what: str, regression: bool) -> None:
    """The node values are (nodes, ``n_outputs``, ``max_n_classes``): one output per
    output of the estimator, and at least one value per output (one in a regression tree).
    scikit-learn checks that the stored values have that shape, not that the shape is
    sound: gradient boosting's stage loop and the partial dependence recursion read one
    value per node from the buffer, and with ``n_classes`` [0] (no values at all) they
    read the heap (a prediction of 5e240 or nan)."""
    outputs = int(tree.n_outputs)
    if outputs < 1 or outputs != getattr(estimator, "n_outputs_", None):
        raise _refuse(
            f"{what}: its tree has {outputs} outputs, its estimator "
            f"{getattr(estimator, 'n_outputs_', None)!r}"
        )
    most = int(tree.max_n_classes)
    if outputs == 1 and (most == 1 or (most > 1 and not regression)):
        return  # the common case, without building the n_classes array
    classes = np.asarray(tree.n_classes)
    if regression and (classes != 1).any():
        raise _refuse(f"{what}: a regression tree with n_classes {classes.tolist()}, not 1s")
    if classes.shape != (outputs,) or (classes < 1).any():
        raise _refuse(f"{what}: n_classes is {classes.tolist()} for {outputs} outputs")


def check_hist_gradient_boosting(estimator: Any, what: str) -> None:
    """Check the predictors, the bin mapper and the categorical preprocessing of a
    fitted ``HistGradientBoosting*`` model.

    Example:
        >>> from sklearn.ensemble import HistGradientBoostingRegressor
        >>> m = HistGradientBoostingRegressor(max_iter=2).fit([[0.0], [1.0]] * 20, [0, 1] * 20)
        >>> check_hist_gradient_boosting(m, "model")
    """
    width = _width(estimator, what)
    if getattr(estimator, "_in_fit", False):
        raise _refuse(f"{what} is marked as being fitted")
    is_categorical = np.asarray(getattr(estimator._bin_mapper, "is_categorical_", None))
    if is_categorical.shape != (width,):
        raise _refuse(f"{what}: the bin mapper knows {is_categorical.size} features, not {width}")
    _check_preprocessor(estimator._preprocessor, width, what)
    for i, iteration in enumerate(estimator._predictors):
        for k, predictor in enumerate(iteration):
            _check_predictor(predictor, width, is_categorical, f"{what}, tree {i}.{k}")


def _check_predictor(predictor: Any, width: int, is_categorical: Any, what: str) -> None:
    nodes = np.asarray(predictor.nodes)
    try:
        leaf = nodes["is_leaf"].astype(bool)
        left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
        feature = nodes["feature_idx"].astype(np.int64)
        categorical = nodes["is_categorical"].astype(bool) & ~leaf
        bitset = nodes["bitset_idx"].astype(np.int64)
    except (ValueError, KeyError, IndexError) as exc:
        raise _refuse(f"{what} has no node array scikit-learn reads: {exc}") from exc
    if nodes.ndim != 1 or len(nodes) == 0:
        raise _refuse(f"{what} has no nodes")
    _check_children(left, right, leaf, len(nodes), what)
    _check_features(feature, ~leaf, width, what)
    if categorical.any():
        if (
            node := _first(categorical & (is_categorical[np.clip(feature, 0, width - 1)] == 0))
        ) is not None:
            raise _refuse(f"{what}: node {node} splits feature {feature[node]} by category")
        for name in ("raw_left_cat_bitsets", "binned_left_cat_bitsets"):
            sets = np.asarray(getattr(predictor, name))
            # a bitset is 8 words of 32 bits, one bit per category 0..255
            if sets.ndim != 2 or sets.shape[1] != 8:
                raise _refuse(f"{what}: {name} has shape {sets.shape}, not (n, 8)")
            if (node := _first(categorical & ((bitset < 0) | (bitset >= len(sets))))) is not None:
                raise _refuse(f"{what}: node {node} names bitset {bitset[node]} of {len(sets)}")


def _check_preprocessor(pre: Any, width: int, what: str) -> None:
    """The categorical encoding scikit-learn puts in front of the predictors must hand
    them ``width`` columns. It is built of steps that keep one column per column they
    select: an ordinal encoder, a passthrough, and ``check_array`` in a function
    transformer (a function transformer may hold any allowed function, and ``numpy.mean``
    would give one column)."""
    if pre is None:
        return
    from sklearn.compose import ColumnTransformer

    if not isinstance(pre, ColumnTransformer):
        raise _refuse(f"{what}: the categorical preprocessing is a {type(pre).__name__}")
    if getattr(pre, "sparse_output_", False):
        raise _refuse(f"{what}: the categorical preprocessing gives a sparse matrix")
    given = _width(pre, f"{what}'s categorical preprocessing")
    out = 0
    for _name, step, columns in pre.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        if not _keeps_columns(step):
            raise _refuse(
                f"{what}: the categorical preprocessing holds a {type(step).__name__} "
                "scikit-learn does not put there"
            )
        picked = np.asarray(columns)
        if picked.dtype == bool:
            if picked.shape != (given,):
                raise _refuse(f"{what}: a column mask of {picked.size} for {given} columns")
            out += int(picked.sum())
        else:
            out += picked.size
    if out != width:
        raise _refuse(f"{what}: the categorical preprocessing gives {out} columns, not {width}")


def _keeps_columns(step: Any) -> bool:
    """Whether ``step`` gives one column per column it is given."""
    import functools

    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder
    from sklearn.utils.validation import check_array

    if isinstance(step, str):
        return step == "passthrough"
    if isinstance(step, OrdinalEncoder):
        return True
    if type(step) is FunctionTransformer and step.inverse_func is None:
        func = step.func
        if isinstance(func, functools.partial):
            func = func.func
        return func is check_array
    return False


def check_binary_tree(tree: Any, what: str) -> None:
    """Check a ``KDTree`` or ``BallTree`` (the index of a nearest-neighbours model).

    A query walks nodes ``2i+1`` and ``2i+2`` below each inner node and, at a leaf, the
    rows ``idx_array[idx_start:idx_end]`` of ``data``; none of it is bounds-checked.

    Example:
        >>> from sklearn.neighbors import KDTree
        >>> check_binary_tree(KDTree([[0.0], [1.0], [2.0]]), "index")
    """
    state = tree.__getstate__()
    data, idx, node_data, bounds = (np.asarray(a) for a in state[:4])
    n_levels, n_nodes, metric, weights = state[5], state[6], state[11], state[12]
    if data.ndim != 2 or data.shape[0] < 1:
        raise _refuse(f"{what}: its data has shape {data.shape}")
    n_samples, n_features = data.shape
    if idx.shape != (n_samples,) or ((idx < 0) | (idx >= n_samples)).any():
        raise _refuse(f"{what}: its row index does not point into its {n_samples} rows")
    if not (1 <= n_levels < 64 and n_nodes == 2**n_levels - 1 == len(node_data)):
        raise _refuse(f"{what}: {n_levels} levels, {n_nodes} nodes, {len(node_data)} stored")
    planes = 2 if type(tree).__name__ == "KDTree" else 1  # lower and upper bounds; centres
    if bounds.shape != (planes, n_nodes, n_features):
        raise _refuse(f"{what}: node bounds of shape {bounds.shape}")
    try:
        start = node_data["idx_start"].astype(np.int64)
        end = node_data["idx_end"].astype(np.int64)
        inner = node_data["is_leaf"] == 0
    except (ValueError, KeyError, IndexError) as exc:
        raise _refuse(f"{what} has no node array scikit-learn reads: {exc}") from exc
    if (node := _first((start < 0) | (start > end) | (end > n_samples))) is not None:
        raise _refuse(f"{what}: node {node} holds rows {start[node]}..{end[node]} of {n_samples}")
    if (node := _first(inner & (2 * np.arange(n_nodes) + 2 >= n_nodes))) is not None:
        raise _refuse(f"{what}: node {node} has no children to visit")
    if weights is not None and np.asarray(weights).shape != (n_samples,):
        raise _refuse(f"{what}: {np.asarray(weights).size} sample weights for {n_samples} rows")
    if type(metric).__name__.startswith("MinkowskiDistance"):
        w = np.asarray(metric.__getstate__()[1])
        if w.size not in (0, n_features):  # 0: unweighted
            raise _refuse(f"{what}: {w.size} Minkowski weights for {n_features} features")


def check_trees(model: Any, found: Sequence[Any] | None = None) -> None:
    """Check every tree in ``model`` (an estimator, pipeline or anything holding them;
    ``found``: the objects :func:`walk` gives for it, if the caller listed them already).

    Raises InvalidInput naming the tree and node when one would make scikit-learn read or
    jump outside its arrays.

    Example:
        >>> from sklearn.ensemble import RandomForestClassifier
        >>> check_trees(RandomForestClassifier(n_estimators=2).fit([[0.0], [1.0]], [0, 1]))
    """
    try:
        _check_all(list(walk(model)) if found is None else found)
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        # a part the prediction code needs is missing or of the wrong kind
        raise _refuse(f"a tree model in it is incomplete: {type(exc).__name__}: {exc}") from exc


def _check_all(found: Sequence[Any]) -> None:
    from sklearn.ensemble import BaseEnsemble
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import (
        BaseHistGradientBoosting,
    )
    from sklearn.neighbors import BallTree, KDTree
    from sklearn.tree import BaseDecisionTree

    bounded: dict[int, int] = {}  # tree id -> the width its ensemble hands it
    for obj in found:
        if isinstance(obj, BaseEnsemble) and hasattr(obj, "estimators_"):
            width = _width(obj, type(obj).__name__)
            subsets = getattr(obj, "estimators_features_", None)
            members = _members(obj.estimators_)
            for i, member in enumerate(members):
                limit = width
                if subsets is not None and i < len(subsets):
                    limit = min(width, len(subsets[i]))
                bounded[id(member)] = min(limit, bounded.get(id(member), limit))
    for number, obj in enumerate(found):
        if isinstance(obj, BaseDecisionTree) and hasattr(obj, "tree_"):
            check_decision_tree(obj, f"{type(obj).__name__} #{number}", bounded.get(id(obj)))
        elif isinstance(obj, BaseHistGradientBoosting) and hasattr(obj, "_predictors"):
            check_hist_gradient_boosting(obj, type(obj).__name__)
        elif isinstance(obj, KDTree | BallTree):
            check_binary_tree(obj, type(obj).__name__)
