"""Checks of the SciPy objects a scikit-learn model may hold anywhere: B-splines and sparse
matrices.

skops rebuilds both without calling their constructors, and SciPy's compiled code follows
their knots, coefficients and index arrays without bounds checks. They are apart from the
estimator checks because the walk (:func:`~.sklearn_arrays.check_arrays`) meets them on
their own, inside any estimator, and the estimator checks call them too
(``SplineTransformer``'s splines, libsvm's and nearest neighbours' sparse rows).

Example:
    >>> import scipy.sparse as sp
    >>> check_sparse_matrix(sp.coo_matrix([[0.0, 2.0]]), "matrix")
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loopline.training.flavors.sklearn_array_primitives import (
    _F64,
    _array,
    _degree,
    _int,
    _refuse,
    _within,
)

#: The largest B-spline degree accepted. Evaluating a spline costs the square of its degree
#: per point, and a file bounds the degree only by the length of its knots: a degree of a
#: million hung ``transform``. scikit-learn's SplineTransformer defaults to 3.
MAX_SPLINE_DEGREE = 100


# -- splines ------------------------------------------------------------------------------


def check_bspline(spline: Any, what: str) -> None:
    """Check a SciPy ``BSpline`` as its constructor would (skops does not call it): SciPy's
    compiled evaluation trusts ``k``, the knots ``t`` and the coefficients ``c`` to agree
    (a negative ``k`` aborted the process, short coefficients were read past their end).

    Example:
        >>> from scipy.interpolate import BSpline
        >>> check_bspline(BSpline([0.0, 0.0, 1.0, 1.0], [1.0, 2.0], 1), "spline")
    """
    k = _degree(spline.k, what, "k", MAX_SPLINE_DEGREE)
    knots = _array(spline._t, what, "t", ndim=1, dtypes=_F64)
    n = knots.size - k - 1  # the number of coefficients the knots define
    if n < k + 1:
        raise _refuse(f"{what}: {knots.size} knots for degree {k}, not at least {2 * k + 2}")
    if not np.isfinite(knots).all() or (knots[1:] < knots[:-1]).any():
        raise _refuse(f"{what}: its knots are not finite and non-decreasing")
    if knots[n] <= knots[k]:
        raise _refuse(f"{what}: its knots span an empty interval")
    coefficients = _array(
        spline._c, what, "c", dtypes=(np.dtype(np.float64), np.dtype(np.complex128))
    )
    if coefficients.ndim < 1 or coefficients.shape[0] < n:
        raise _refuse(f"{what}: c has shape {coefficients.shape}, not ({n}, ...)")
    extrapolate = spline.extrapolate
    if not (isinstance(extrapolate, bool | np.bool_) or extrapolate == "periodic"):
        raise _refuse(f"{what}: extrapolate is {extrapolate!r}")
    _int(spline.axis, what, "axis", 0, coefficients.ndim - 1)


# -- sparse matrices ----------------------------------------------------------------------


def check_sparse_matrix(matrix: Any, what: str) -> None:
    """Check the structure of a SciPy sparse matrix: SciPy's compiled routines (products,
    ``toarray``, sums) follow its index arrays without bounds checks, and loading it checks
    only their lengths. skops stores CSR, CSC, BSR, COO and DIA (SciPy's ``save_npz``
    formats; LIL and DOK it can neither save nor load), and the file, not the type it names
    and the caller trusts, decides which of them is built.

    Example:
        >>> import scipy.sparse as sp
        >>> check_sparse_matrix(sp.csr_matrix([[0.0, 1.0]]), "matrix")
    """
    if hasattr(matrix, "check_format"):  # the compressed formats: CSR, CSC, BSR
        try:
            matrix.check_format(full_check=True)
        except ValueError as exc:
            raise _refuse(f"{what}: {exc}") from exc
    elif getattr(matrix, "format", None) == "coo":
        n_rows, n_cols = matrix.shape
        _within(matrix.row, 0, n_rows, what, "row")
        _within(matrix.col, 0, n_cols, what, "col")
    elif getattr(matrix, "format", None) == "dia":
        _check_dia(matrix, what)


def _check_dia(matrix: Any, what: str) -> None:
    """No offset of a DIA matrix, added to its number of rows and columns, overflows the
    offsets' integer type.

    SciPy's compiled product with a vector and its ``sum`` compute ``rows + offset`` and
    differences of such bounds in that type: an offset near its limit (2**31 - 1 for the
    int32 offsets of any matrix smaller than that) overflowed it, and the loop then read
    and wrote far outside ``data`` (SIGSEGV). Diagonals merely outside the shape, which
    SciPy accepts and skips, still pass.
    """
    n_rows, n_cols = (_int(n, what, "shape", 0) for n in matrix.shape)
    offsets = _array(matrix.offsets, what, "offsets", ndim=1, integer=True)
    data = _array(matrix.data, what, "data", ndim=2)
    if data.shape[0] != offsets.size:
        raise _refuse(f"{what}: data holds {data.shape[0]} diagonals, offsets {offsets.size}")
    margin = int(np.iinfo(offsets.dtype).max) - n_rows - n_cols
    if margin < 0:
        raise _refuse(f"{what}: shape {matrix.shape} overflows offsets of {offsets.dtype}")
    _within(offsets, -margin, margin + 1, what, "offsets")
