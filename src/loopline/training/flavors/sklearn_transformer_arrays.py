"""Array checks of scikit-learn's transformers: encoders, vectorizers, feature hashers,
polynomial features and spline transformers.

Their ``transform`` builds its output from stored codes, column numbers, degrees and
counts (often as a sparse matrix SciPy does not check, or an uninitialised array it fills
in part), so each stored number must agree with the others as ``fit`` left them. One
group of :mod:`.sklearn_arrays`, apart from the predictors
(:mod:`.sklearn_predictor_arrays`) because they share nothing but the primitives.

Example:
    >>> from sklearn.preprocessing import OneHotEncoder
    >>> check_one_hot_encoder(OneHotEncoder().fit([["a"], ["b"]]), "OneHotEncoder")
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from loopline.training.flavors.sklearn_array_primitives import (
    _INT32_MAX,
    _array,
    _degree,
    _int,
    _is_int,
    _refuse,
    _width,
    _within,
)
from loopline.training.flavors.sklearn_scipy_arrays import MAX_SPLINE_DEGREE, check_bspline

#: The largest PolynomialFeatures degree accepted. ``transform`` loops over the degrees
#: even past the last one that adds a column (with ``interaction_only``, every degree above
#: the number of features), and on sparse input multiplies a column per factor of every
#: term: a file with degree 10**9 and the 8 columns of 3 features hung the process, and
#: scikit-learn's own degree 1000 on one sparse column took 68 s.
MAX_POLYNOMIAL_DEGREE = 100


# -- encoders and vectorizers -------------------------------------------------------------


def check_one_hot_encoder(encoder: Any, what: str) -> None:
    """Check a fitted ``OneHotEncoder``: every code it can give a feature lands in that
    feature's block of output columns.

    ``transform`` encodes feature ``i`` as a position in ``categories_[i]`` (a binary search
    for numbers, so they must be sorted), groups infrequent categories through
    ``_default_to_infrequent_mappings[i]``, removes column ``_drop_idx_after_grouping[i]``,
    then builds a sparse matrix with ``_n_features_outs[i]`` columns per feature from those
    codes, which SciPy does not check.

    Example:
        >>> from sklearn.preprocessing import OneHotEncoder
        >>> check_one_hot_encoder(OneHotEncoder(drop="first").fit([["a"], ["b"]]), "enc")
    """
    width = _width(encoder, what)
    categories = encoder.categories_
    if not isinstance(categories, list) or len(categories) != width:
        raise _refuse(f"{what}: categories_ is not a list of {width} arrays")
    sizes = []
    for i, cats in enumerate(categories):
        cats = _array(cats, what, f"categories_[{i}]", ndim=1)
        if cats.size == 0:
            raise _refuse(f"{what}: categories_[{i}] is empty")
        if cats.dtype.kind not in "OUS":
            # numbers are encoded by a binary search: sorted, NaN (if seen) last
            body = cats[:-1] if cats.dtype.kind in "fcmM" and np.isnan(cats[-1]) else cats
            if not (body[1:] > body[:-1]).all():  # also false where NaN is compared
                raise _refuse(f"{what}: categories_[{i}] is not sorted (NaN last)")
        sizes.append(int(cats.size))
    groups = list(sizes)  # output columns per feature before dropping
    enabled = encoder._infrequent_enabled
    if not isinstance(enabled, bool | np.bool_):
        raise _refuse(f"{what}: _infrequent_enabled is {enabled!r}")
    if enabled:
        _check_infrequent(encoder, sizes, groups, what)
    outs = list(groups)
    dropped = encoder._drop_idx_after_grouping
    if dropped is not None:
        dropped = _array(dropped, what, "_drop_idx_after_grouping", shape=(width,))
        for i, drop in enumerate(dropped.tolist()):
            if drop is not None:
                _int(drop, what, f"_drop_idx_after_grouping[{i}]", 0, groups[i] - 1)
                outs[i] -= 1
    _check_public_drop(encoder.drop_idx_, dropped, sizes, what)
    stored = encoder._n_features_outs
    if not isinstance(stored, list) or [int(n) if _is_int(n) else n for n in stored] != outs:
        raise _refuse(f"{what}: _n_features_outs is {stored!r}, its categories give {outs}")


def _check_infrequent(encoder: Any, sizes: list[int], groups: list[int], what: str) -> None:
    """Infrequent categories of feature ``i`` map onto ``groups[i]`` codes (set here)."""
    indices = encoder._infrequent_indices
    mappings = encoder._default_to_infrequent_mappings
    for name, value in (
        ("_infrequent_indices", indices),
        ("_default_to_infrequent_mappings", mappings),
    ):
        if not isinstance(value, list) or len(value) != len(sizes):
            raise _refuse(f"{what}: {name} is not a list of {len(sizes)} entries")
    for i, (rare, mapping) in enumerate(zip(indices, mappings, strict=True)):
        if rare is None and mapping is None:
            continue
        if rare is None or mapping is None:
            raise _refuse(f"{what}: feature {i} has infrequent categories and no mapping")
        rare = _array(rare, what, f"_infrequent_indices[{i}]", ndim=1, integer=True)
        if rare.size == 0:
            raise _refuse(f"{what}: _infrequent_indices[{i}] is empty")
        _within(rare, 0, sizes[i], what, f"_infrequent_indices[{i}]")
        name = f"_default_to_infrequent_mappings[{i}]"
        mapping = _array(mapping, what, name, integer=True, shape=(sizes[i],))
        groups[i] = sizes[i] - rare.size + 1  # the infrequent ones share one column
        _within(mapping, 0, groups[i], what, name)


def _check_public_drop(public: Any, dropped: Any, sizes: list[int], what: str) -> None:
    """``drop_idx_`` names the same features' categories as the internal drop indices."""
    if public is None or dropped is None:
        if public is not dropped:
            raise _refuse(f"{what}: drop_idx_ and _drop_idx_after_grouping disagree")
        return
    public = _array(public, what, "drop_idx_", shape=dropped.shape)
    for i, (outer, inner) in enumerate(zip(public.tolist(), dropped.tolist(), strict=True)):
        if (outer is None) != (inner is None):
            raise _refuse(f"{what}: drop_idx_[{i}] and _drop_idx_after_grouping[{i}] disagree")
        if outer is not None:
            _int(outer, what, f"drop_idx_[{i}]", 0, sizes[i] - 1)


def check_vocabulary(vectorizer: Any, what: str) -> None:
    """Check the vocabulary of a fitted ``DictVectorizer``, ``CountVectorizer`` or
    ``TfidfVectorizer``: it numbers each of its ``len(vocabulary_)`` columns once.

    ``transform`` builds a sparse matrix of that many columns from the numbers it looks up,
    which SciPy does not check; a number outside was written out of bounds by ``toarray()``
    or read out of bounds by the model that follows.

    Example:
        >>> from sklearn.feature_extraction.text import CountVectorizer
        >>> check_vocabulary(CountVectorizer().fit(["red fox", "red hen"]), "CountVectorizer")
    """
    from sklearn.feature_extraction import DictVectorizer

    vocabulary = vectorizer.vocabulary_
    if not isinstance(vocabulary, dict):
        raise _refuse(f"{what}: vocabulary_ is a {type(vocabulary).__name__}, not a dict")
    n = len(vocabulary)
    columns = np.array(list(vocabulary.values()))
    if n and (columns.dtype.kind not in "iu" or columns.shape != (n,)):
        raise _refuse(f"{what}: vocabulary_ maps terms to {columns.dtype}, not column numbers")
    _within(columns, 0, n, what, "vocabulary_")
    if n and np.unique(columns).size != n:
        raise _refuse(f"{what}: vocabulary_ gives two terms the same column")
    if isinstance(vectorizer, DictVectorizer):
        names = vectorizer.feature_names_
        if not isinstance(names, list) or len(names) != n:
            raise _refuse(f"{what}: feature_names_ does not name the {n} columns of vocabulary_")


def check_multilabel_binarizer(binarizer: Any, what: str) -> None:
    """Check the class-to-column cache of a ``MultiLabelBinarizer``, if it holds one.

    The first ``transform`` caches ``classes_`` as a dict of columns, saved with the model,
    and later ones build a sparse matrix of ``len(dict)`` columns from its values, which
    SciPy does not check: a value outside was written out of bounds by the dense output's
    ``toarray()`` (SIGSEGV).

    Example:
        >>> from sklearn.preprocessing import MultiLabelBinarizer
        >>> m = MultiLabelBinarizer().fit([["a", "b"], ["c"]])
        >>> _ = m.transform([["a"]])
        >>> check_multilabel_binarizer(m, "MultiLabelBinarizer")
    """
    cache = getattr(binarizer, "_cached_dict", None)  # a private name
    if cache is None:
        return  # built from classes_ on the first transform
    classes = _array(binarizer.classes_, what, "classes_", ndim=1).tolist()
    if not isinstance(cache, dict) or cache != {c: i for i, c in enumerate(classes)}:
        raise _refuse(f"{what}: _cached_dict does not map classes_ to their positions")


def check_feature_hasher(hasher: Any, what: str) -> None:
    """Check ``n_features`` of a ``FeatureHasher`` or ``HashingVectorizer``: the hashing
    code takes each hash modulo it in C (0 stops the process with SIGFPE), and it is not
    validated again at ``transform``.

    Example:
        >>> from sklearn.feature_extraction import FeatureHasher
        >>> check_feature_hasher(FeatureHasher(n_features=8), "FeatureHasher")
    """
    _int(hasher.n_features, what, "n_features", 1, _INT32_MAX)


def check_target_encoder(encoder: Any, what: str) -> None:
    """Check a fitted ``TargetEncoder``: one encoding per feature (per feature and class for
    a multiclass target).

    ``transform`` allocates its output uninitialised, one column per feature (times the
    classes), and fills one column per encoding: with fewer encodings the rest of the
    output was whatever memory the process had freed there before (another request's data,
    in a server).

    Example:
        >>> from sklearn.preprocessing import TargetEncoder
        >>> m = TargetEncoder().fit([["a"], ["b"]] * 5, [0.0, 1.0] * 5)
        >>> check_target_encoder(m, "TargetEncoder")
    """
    width = _width(encoder, what)
    kind = encoder.target_type_
    if kind not in ("binary", "multiclass", "continuous"):
        raise _refuse(f"{what}: target_type_ is {kind!r}")
    per_feature = len(encoder.classes_) if kind == "multiclass" else 1
    encodings = encoder.encodings_
    if not isinstance(encodings, list) or len(encodings) != width * per_feature:
        n = len(encodings) if isinstance(encodings, list) else type(encodings).__name__
        raise _refuse(
            f"{what}: encodings_ holds {n} encodings, not {width * per_feature} "
            f"({width} features, {per_feature} per feature)"
        )


# -- polynomial features ------------------------------------------------------------------


def check_polynomial_features(transformer: Any, what: str) -> None:
    """Check a fitted ``PolynomialFeatures``: its degree is at most
    :data:`MAX_POLYNOMIAL_DEGREE`, and ``_n_out_full`` counts the terms it gives.

    On dense input ``transform`` allocates ``_n_out_full`` columns uninitialised and fills
    one per term: with more columns than terms the rest of the output was whatever memory
    the process had freed there before (another request's data, in a server).

    Example:
        >>> from sklearn.preprocessing import PolynomialFeatures
        >>> check_polynomial_features(PolynomialFeatures(3).fit([[0.0, 1.0]]), "poly")
    """
    width = _width(transformer, what)
    degree = transformer.degree
    # private names of scikit-learn >= 1.0; a degree is an int or (min, max)
    default = degree[-1] if isinstance(degree, tuple) and degree else degree
    top = _degree(
        getattr(transformer, "_max_degree", default), what, "_max_degree", MAX_POLYNOMIAL_DEGREE
    )
    interaction_only = transformer.interaction_only
    include_bias = transformer.include_bias
    for name, flag in (("interaction_only", interaction_only), ("include_bias", include_bias)):
        if not isinstance(flag, bool | np.bool_):
            raise _refuse(f"{what}: {name} is {flag!r}")
    if not hasattr(transformer, "_n_out_full"):
        return  # a scikit-learn that sizes its output otherwise
    if interaction_only:  # products of distinct features: i of them, i <= degree
        terms = sum(math.comb(width, i) for i in range(1, min(top, width) + 1))
    else:  # monomials of degree 1 to top in width variables
        terms = math.comb(width + top, top) - 1
    terms += 1 if include_bias else 0
    stored = transformer._n_out_full
    if not _is_int(stored) or stored != terms:
        raise _refuse(
            f"{what}: _n_out_full is {stored!r}, its {width} features and degree {top} give {terms}"
        )


# -- splines ------------------------------------------------------------------------------


def check_spline_transformer(transformer: Any, what: str) -> None:
    """Check a fitted ``SplineTransformer``: one spline per feature, each of the
    transformer's degree, with the knots and coefficients ``fit`` gives it.

    Example:
        >>> from sklearn.preprocessing import SplineTransformer
        >>> m = SplineTransformer(n_knots=3, degree=2).fit([[0.0], [1.0], [2.0]])
        >>> check_spline_transformer(m, "SplineTransformer")
    """
    from scipy.interpolate import BSpline

    width = _width(transformer, what)
    splines = transformer.bsplines_
    if not isinstance(splines, list) or len(splines) != width:
        raise _refuse(f"{what}: bsplines_ is not a list of {width} splines")
    degree = _degree(transformer.degree, what, "degree", MAX_SPLINE_DEGREE)
    total = _int(transformer.n_features_out_, what, "n_features_out_", 0)
    if not transformer.include_bias:
        total += width  # transform drops the last spline of each feature
    if total % width:
        raise _refuse(f"{what}: n_features_out_ is not a whole number of splines per feature")
    per_feature = total // width
    periodic = transformer.extrapolation == "periodic"
    # fit wraps the first `degree` coefficients around for periodic splines
    knots = per_feature + degree + 1 + (degree if periodic else 0)
    extrapolate = transformer.extrapolation in ("periodic", "continue")
    for i, spline in enumerate(splines):
        name = f"{what}: bsplines_[{i}]"
        if not isinstance(spline, BSpline):
            raise _refuse(f"{name} is a {type(spline).__name__}")
        check_bspline(spline, name)
        if spline.k != degree:
            raise _refuse(f"{name} has degree {spline.k}, the transformer {degree}")
        if spline._t.shape != (knots,):
            raise _refuse(f"{name} has {spline._t.size} knots, not {knots}")
        if spline._c.shape != (knots - degree - 1, per_feature):
            raise _refuse(
                f"{name}: c has shape {spline._c.shape}, not {(knots - degree - 1, per_feature)}"
            )
        if spline.extrapolate != extrapolate:
            raise _refuse(f"{name}: extrapolate is {spline.extrapolate!r}, not {extrapolate}")
