"""Tables of the delivery stage (stage 4): gate verdicts.

Only :mod:`loopline.delivery.gates` reads or writes them. The migration ``0007_serving``
creates exactly these tables (``tests/delivery/test_tables.py`` compares the two).

* ``gate_verdicts`` - one row per evaluation of a challenger model version: blessed or not,
  why, the metrics of challenger and champion, the thresholds used and the held-out data.

Example:
    >>> gate_verdicts.c.blessed.type.python_type
    <class 'bool'>
"""

from __future__ import annotations

import sqlalchemy as sa

from loopline.core.schema import metadata

gate_verdicts = sa.Table(
    "gate_verdicts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("blessed", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("champion_version", sa.Integer, nullable=True),
    sa.Column("dataset", sa.String(300), nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("thresholds", sa.Text, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Index("ix_gate_verdicts_name_version", "name", "version"),
)
