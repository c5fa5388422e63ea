"""The newest migration's revision id, in a module that imports nothing.

:func:`loopline.core.db_migrations.ensure_schema` compares the database with it without importing
Alembic, and the quick re-add of ``loopline data add`` (:mod:`loopline.data.quick_readd`)
without importing SQLAlchemy either. ``tests/core/test_db.py`` keeps it equal to Alembic's
own head: bump it with every new migration.

Example:
    >>> HEAD_REVISION[:4].isdigit()
    True
"""

from __future__ import annotations

HEAD_REVISION = "0026_scrub_online_passwords"
