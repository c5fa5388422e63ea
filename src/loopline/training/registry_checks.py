"""What the model registry accepts: names, aliases, tags, descriptions, version sources and
version numbers, each refused with :class:`InvalidInput` naming the field.

Kept apart from the SQL because callers outside the registry check a name or a version
number without touching the database (deployments, gates, the loop, monitoring). Both the
Python SDK and the MLflow-compatible REST API are built on the registry's store functions
(:mod:`.registry_models`, :mod:`.registry_versions`, :mod:`.registry_aliases`,
:mod:`.registry_logged_models`), which check their input here, so both refuse what they
refuse:

* a tag key is checked as a run's (:func:`~loopline.tracking.validation.check_key`: 1-250
  characters, no control character, no absolute path or ``..`` segment) and its value too
  (at most 8,000 characters, no NUL);
* a version's source is an artifact URI of this server (:func:`check_model_source`):
  ``runs:/RUN_ID/PATH``, ``models:/...`` or ``mlflow-artifacts:/PATH``, at most 500
  characters, with no ``..`` segment in any reading; a local path or a ``file://`` URI
  names a file on some machine, not an artifact this server holds.

Example:
    >>> check_name("churn"), check_alias("champion"), require_version_number("3")
    ('churn', 'champion', 3)
"""

from __future__ import annotations

import re
from typing import Any

from loopline.core.artifact_paths import unsafe_reason
from loopline.core.columns import MAX_INTEGER, integer_value
from loopline.core.text import check_no_nul
from loopline.errors import InvalidInput
from loopline.tracking.validation import check_key, check_tag_value

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\- ]{0,255}$")
ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,255}$")
#: Longest model version source (MLflow's column: 500).
MAX_SOURCE_LENGTH = 500
#: The URIs a version's source may be: what the SDK (``models:/<model id>``) and the MLflow
#: client (``runs:/``, ``models:/``, the run's ``mlflow-artifacts:/`` location) register.
SOURCE_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def check_tag(key: Any, value: Any) -> str | None:
    """A registry tag's value as stored, if ``key`` and ``value`` pass a run tag's checks
    (:func:`~loopline.tracking.validation.check_key`, ``check_tag_value``); else
    :class:`InvalidInput` naming the tag.

    Example:
        >>> check_tag("team", "growth")
        'growth'
    """
    check_key(key, "tag")
    return check_tag_value(key, value)


def _checked_tags(tags: dict[str, str] | None) -> dict[str, str | None]:
    return {key: check_tag(key, value) for key, value in (tags or {}).items()}


def check_model_source(source: Any) -> str:
    """``source`` if it may be a model version's source: an artifact URI of this server
    (:data:`SOURCE_SCHEMES`) naming a path with no ``..`` segment, absolute part, control
    character or NUL in any reading (percent-decoded, NFKC), at most
    :data:`MAX_SOURCE_LENGTH` characters; else :class:`InvalidInput` naming ``source``.

    The download URI of a version is its source: ``file:///etc/passwd`` or
    ``mlflow-artifacts:/../../etc`` would point the MLflow client at a file outside every
    run (MLflow's server refuses both), and a source naming nothing breaks
    ``models:/NAME/latest`` only when it is loaded.

    Example:
        >>> check_model_source("runs:/0a1b2c/model")
        'runs:/0a1b2c/model'
        >>> try:
        ...     check_model_source("file:///etc/passwd")
        ... except InvalidInput as exc:
        ...     print(exc.field)
        source
    """
    reason: str | None
    if not isinstance(source, str) or not source:
        reason = "must be a non-empty string"
    elif len(source) > MAX_SOURCE_LENGTH:
        reason = f"is {len(source)} characters, over the limit of {MAX_SOURCE_LENGTH}"
    else:
        scheme = next((s for s in SOURCE_SCHEMES if source.startswith(s)), None)
        path = source[len(scheme) :] if scheme else ""
        if scheme is None:
            reason = "is not an artifact URI of this server (a local path or file:// URI is not)"
        elif not path.strip("/"):
            reason = "names no model"
        else:
            # An absolute path here is an authority ('mlflow-artifacts://host/...'): another
            # server's artifact, not this one's.
            reason = unsafe_reason(path)
    if reason is None:
        return str(source)
    shown = repr(source) if len(repr(source)) <= 80 else repr(source)[:77] + "..."
    raise InvalidInput(
        f"model version source {shown} {reason}",
        field="source",
        hint="register from runs:/RUN_ID/PATH, models:/MODEL_ID or the run's "
        "mlflow-artifacts:/EXPERIMENT/RUN_ID/artifacts/PATH",
    )


def check_name(name: str, field_name: str = "name") -> str:
    """Return a valid registry name or raise :class:`InvalidInput` naming the field.

    Example:
        >>> check_name("churn-model")
        'churn-model'
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"{field_name} {name!r} is not a valid model name",
            field=field_name,
            hint="use letters, digits, '.', '_', '-' or spaces, starting with a letter or digit",
        )
    return name


def check_alias(alias: str) -> str:
    """Return a valid alias or raise :class:`InvalidInput`.

    Aliases that look like version numbers (``v3``, ``3``) and ``latest`` (any case) are
    refused, as MLflow does: ``models:/NAME/latest`` must keep naming the newest version.

    Example:
        >>> check_alias("champion")
        'champion'
    """
    if (
        not isinstance(alias, str)
        or not ALIAS_RE.fullmatch(alias)
        or re.fullmatch(r"[vV]?\d+", alias)
    ):
        raise InvalidInput(
            f"alias {alias!r} is not valid",
            field="alias",
            hint="an alias starts with a letter or '_' and is not a version number like 'v3'",
        )
    if alias.lower() == "latest":
        raise InvalidInput(
            f"alias {alias!r} is reserved: models:/NAME/latest names the newest version",
            field="alias",
            hint="pick another name, such as 'champion'",
        )
    return alias


def _check_description(description: str | None) -> None:
    if description is not None:
        check_no_nul(description, "description")


def version_number(ref: object) -> int | None:
    """``ref`` as a model version number (see :func:`~loopline.core.columns.integer_value`),
    else None.

    Example:
        >>> version_number("3"), version_number(3), version_number("champion")
        (3, 3, None)
    """
    return integer_value(ref)


def require_version_number(ref: object, field: str = "version") -> int:
    """:func:`version_number`, or :class:`InvalidInput` naming ``field``.

    Example:
        >>> require_version_number("12")
        12
    """
    number = version_number(ref)
    if number is None:
        raise InvalidInput(
            f"{field} {ref!r} is not a version number",
            field=field,
            hint=f"give the model version as a whole number up to {MAX_INTEGER}, such as 3",
        )
    return number
