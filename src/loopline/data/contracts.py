"""Data contracts: what a table must look like, inferred from data, kept as YAML, checked.

Used as ``ll.contracts``::

    contract = ll.contracts.infer(train_df, name="churn")
    contract.to_yaml("churn.contract.yaml")          # a file a person reads and edits
    contract = ll.contracts.Contract.from_yaml("churn.contract.yaml")
    report = contract.validate(batch_df)
    report.raise_for_violations()                    # ContractViolation listing them all

A contract names every column with its dtype (a pandas dtype string such as ``int64``,
``float64``, ``str``, ``bool``, ``category``, ``datetime64[ns]``) and optionally:
``nullable`` (false: no nulls), ``min``/``max`` (numbers; not NaN), ``allowed`` (the set of
values, each of a type the dtype holds: no ``'1'`` for an ``int64`` column), ``unique``; and
a row-count range. A missing column and an extra column are violations:
a model trained on 50 features never silently gets 48.

Validation is built on pandera: the contract becomes a ``pandera.DataFrameSchema`` run
with ``lazy=True`` so that *every* violation is collected, not just the first; pandera's
failure cases become :class:`Violation` objects (column, rule, expected, actual and a few
example rows). When a column has the wrong dtype its range and value checks are skipped
(comparing words with a number says nothing new); the ``dtype`` violation lists the
values that do not fit. ``unique`` ignores nulls (they are the ``nullable`` rule's job).

The code lives in modules with one job each, and this module hands on their public
names (``ll.contracts``): :mod:`loopline.data.contract_rules` (:class:`ColumnRule`,
:class:`RowRule`), :mod:`loopline.data.contract_validation` (:class:`Contract`),
:mod:`loopline.data.contract_report` (:class:`ValidationReport`, :class:`Violation`,
:class:`ContractViolations`) and :mod:`loopline.data.contract_inference` (:func:`infer`).

Example:
    >>> import pandas as pd
    >>> c = infer(pd.DataFrame({"age": [20, 30, 40], "plan": ["a", "b", "a"]}))
    >>> c.validate(pd.DataFrame({"age": [20, 99], "plan": ["a", "z"]})).ok
    False
"""

from __future__ import annotations

from loopline.data.contract_inference import infer
from loopline.data.contract_report import ContractViolations, ValidationReport, Violation
from loopline.data.contract_rules import ColumnRule, RowRule
from loopline.data.contract_validation import Contract

__all__ = [
    "ColumnRule",
    "Contract",
    "ContractViolations",
    "RowRule",
    "ValidationReport",
    "Violation",
    "infer",
]
