"""Tables of the model registry and of logged models (stage 3).

Only the registry's store modules (:mod:`loopline.training.registry_models`,
:mod:`~loopline.training.registry_versions`, :mod:`~loopline.training.registry_aliases`,
:mod:`~loopline.training.registry_logged_models`) and
:mod:`loopline.training.logged_model_data` read or write them.
"""

from __future__ import annotations

import sqlalchemy as sa

from loopline.core.schema import metadata

logged_models = sa.Table(
    "logged_models",
    metadata,
    sa.Column("model_id", sa.String(64), primary_key=True),
    sa.Column("experiment_id", sa.String(64), nullable=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("source_run_id", sa.String(64), nullable=True, index=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("model_type", sa.String(128), nullable=True),
    sa.Column("artifact_location", sa.Text, nullable=False),
    sa.Column("flavor", sa.String(64), nullable=True),
    sa.Column("manifest_digest", sa.String(64), nullable=True),
    sa.Column("signature", sa.Text, nullable=True),
    sa.Column("creation_time", sa.BigInteger, nullable=False),
    sa.Column("last_updated_time", sa.BigInteger, nullable=False),
)

logged_model_tags = sa.Table(
    "logged_model_tags",
    metadata,
    sa.Column("model_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=True),
)

logged_model_params = sa.Table(
    "logged_model_params",
    metadata,
    sa.Column("model_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=True),
)

# The metric points runs linked to a logged model (MLflow 3), keyed as MLflow keys them;
# values stored as a run's are (NaN as 0 with is_nan, +/-inf as +/- the largest float).
logged_model_metrics = sa.Table(
    "logged_model_metrics",
    metadata,
    sa.Column("model_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("timestamp", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("step", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("value", sa.Double, nullable=False),
    sa.Column("is_nan", sa.Boolean, nullable=False),
    sa.Column("dataset_name", sa.String(500), nullable=True),
    sa.Column("dataset_digest", sa.String(128), nullable=True),
)

registered_models = sa.Table(
    "registered_models",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("creation_time", sa.BigInteger, nullable=False),
    sa.Column("last_updated_time", sa.BigInteger, nullable=False),
    # The highest version number ever given (0015): a deleted version's number is not reused.
    sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),
)

registered_model_tags = sa.Table(
    "registered_model_tags",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=True),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("source", sa.Text, nullable=True),
    sa.Column("run_id", sa.String(64), nullable=True, index=True),
    sa.Column("model_id", sa.String(64), nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("creation_time", sa.BigInteger, nullable=False),
    sa.Column("last_updated_time", sa.BigInteger, nullable=False),
)

model_version_tags = sa.Table(
    "model_version_tags",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=True),
)

model_aliases = sa.Table(
    "model_aliases",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("alias", sa.String(256), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

ALL_TABLES = (
    logged_models,
    logged_model_tags,
    logged_model_params,
    logged_model_metrics,
    registered_models,
    registered_model_tags,
    model_versions,
    model_version_tags,
    model_aliases,
)
