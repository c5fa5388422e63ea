"""features: no password in the materialization log written before it was hidden

Revision ID: 0026_scrub_online_passwords
Revises: 0025_prediction_batches_schema
Create Date: 2026-12-05

``feature_materializations.online_store`` records where each materialization wrote. Before
``loopline.config.display_uri`` hid them, a Redis online store's URL was stored as given,
password and all (``redis://:s3cret@cache:6379/0``), and ``loopline features`` showed it
again. The upgrade rewrites such rows as ``display_uri`` writes new ones: the user part's
password and the values of secret query parameters become ``***``. A row without a
password is left as it is.

The downgrade changes nothing: the passwords are gone, and a shown URL never needed one.
The redaction is a copy of ``display_uri``'s (a migration must not change when the live
code does).
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0026_scrub_online_passwords"
down_revision = "0025_prediction_batches_schema"
branch_labels = None
depends_on = None

_SECRET_QUERY = re.compile(
    r"([?&](?:password|passwd|pwd|sslpassword|secret|token)=)[^&#]*", re.IGNORECASE
)


def _hidden(uri: str) -> str:
    """``uri`` with its password and secret query values as ``***`` (``display_uri``'s rule)."""
    scheme, sep, rest = uri.partition("://")
    if sep:
        end = min((i for i in (rest.find(c) for c in "?#") if i >= 0), default=len(rest))
        userinfo, at, after = rest[:end].rpartition("@")
        user, colon, _password = userinfo.partition(":")
        if at and colon and "/" not in user:
            rest = f"{user}:***@{after}{rest[end:]}"
        uri = f"{scheme}://{rest}"
    return _SECRET_QUERY.sub(r"\1***", uri)


def upgrade() -> None:
    conn = op.get_bind()
    table = sa.table("feature_materializations", sa.column("id"), sa.column("online_store"))
    rows = conn.execute(sa.select(table.c.id, table.c.online_store)).all()
    for row_id, stored in rows:
        hidden = _hidden(stored)
        if hidden != stored:
            conn.execute(table.update().where(table.c.id == row_id).values(online_store=hidden))


def downgrade() -> None:
    pass
