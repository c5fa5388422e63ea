"""The OpenAPI description of ``loopline serve`` (``GET /openapi.json``).

The prediction API has no framework to describe it, so it is written here by hand, one
path per served deployment, with that deployment's input columns and types (from its
stable version's signature) as the request schema: a client generator or a fuzzer sees
exactly what the server accepts. The description follows the routes: deploying, promoting
or rolling back changes it within one poll interval.

Example:
    >>> spec = describe({})
    >>> spec["openapi"], sorted(spec["paths"])[:2]
    ('3.1.0', ['/health', '/livez'])
"""

from __future__ import annotations

from typing import Any

from loopline import __version__
from loopline.core.columns import MAX_REQUEST_ID_CHARS
from loopline.monitoring.limits import MAX_LABEL_CHARS, MAX_LABELS, MAX_ROW

#: JSON Schema of each signature column type.
_TYPES: dict[str, dict[str, Any]] = {
    "float": {"type": "number"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "string": {"type": "string"},
}
_ERROR = {"$ref": "#/components/schemas/Error"}
_ERRORS = {
    "400": "The body is not JSON",
    "404": "No such model is served here",
    "405": "Wrong method",
    "413": "The body is over --max-body-mb",
    "415": "The body is not sent as JSON (Content-Type: application/json), or is compressed",
    "422": "The body does not fit the model's signature (or the labels' rules); `field` "
    "names the column or field",
    "500": "The model raised (and no fallback version answered)",
    "503": "The model is deployed, but this server could not load it (the error is named); "
    "for labels, those for requests another worker answered could not be stored for it: "
    "none was scored, send them again",
    "504": "The model did not answer in time (and no fallback version answered)",
}
_HEALTH = {
    "type": "object",
    "required": ["status"],
    "additionalProperties": False,
    "properties": {"status": {"enum": ["ok", "starting", "unavailable"]}},
}
_ALIVE = {
    "type": "object",
    "required": ["status"],
    "additionalProperties": False,
    "properties": {"status": {"const": "alive"}},
}
_COMPONENTS: dict[str, Any] = {
    "schemas": {
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                        "hint": {"type": "string"},
                    },
                }
            },
        },
        "Prediction": {
            "type": "object",
            "required": ["predictions", "model_version", "request_id"],
            "properties": {
                "predictions": {"type": "array"},
                "model_version": {"type": "string"},
                "request_id": {"type": "string"},
            },
        },
        "Feedback": {
            "type": "object",
            "required": ["matched", "unmatched", "pending"],
            "properties": {
                "matched": {"type": "integer", "minimum": 0},
                "unmatched": {"type": "integer", "minimum": 0},
                "pending": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "labels for requests this worker does not remember, "
                    "passed on to the worker or replica that answered them",
                },
            },
        },
    }
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json(_ERROR, _ERRORS[code]) for code in codes}


def _column(spec: Any) -> dict[str, Any]:
    if spec.type == "category":  # one of the categories the model was trained with
        return {"enum": [*spec.categories, *([None] if spec.nullable else [])]}
    schema = dict(_TYPES.get(spec.type, {}))
    if spec.nullable and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


def _predict_body(signature: Any) -> dict[str, Any]:
    """The three request shapes, typed by ``signature`` (any columns when it is None)."""
    if signature is None:
        record: dict[str, Any] = {"type": "object", "minProperties": 1}
        row: dict[str, Any] = {"type": "array", "minItems": 1}
        columns: dict[str, Any] = {"type": "array", "items": {"type": "string"}, "minItems": 1}
        by_column: dict[str, Any] = {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "array", "minItems": 1},
        }
    else:
        cols = {c.name: _column(c) for c in signature.inputs}
        record = {
            "type": "object",
            "properties": cols,
            "required": list(cols),
            "additionalProperties": False,
        }
        by_column = {
            "type": "object",
            "properties": {
                n: {"type": "array", "items": spec, "minItems": 1} for n, spec in cols.items()
            },
            "required": list(cols),
            "additionalProperties": False,
        }
        items = list(cols.values())
        row = {
            "type": "array",
            "prefixItems": items,
            "minItems": len(items),
            "maxItems": len(items),
        }
        columns = {"type": "array", "items": {"enum": list(cols)}, "const": list(cols)}
    key = {"type": "string", "description": "Makes A/B routing sticky for this caller."}
    return {
        "oneOf": [
            {
                "type": "object",
                "required": ["instances"],
                "additionalProperties": False,
                "properties": {
                    "instances": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"oneOf": [record, row]},
                    },
                    "key": key,
                },
            },
            {
                "type": "object",
                "required": ["dataframe_split"],
                "additionalProperties": False,
                "properties": {
                    "dataframe_split": {
                        "type": "object",
                        "required": ["columns", "data"],
                        "additionalProperties": False,
                        "properties": {
                            "columns": columns,
                            "data": {"type": "array", "minItems": 1, "items": row},
                            "index": {
                                "type": "array",
                                "description": "pandas' row labels, one per row; not used",
                            },
                        },
                    },
                    "key": key,
                },
            },
            {
                "type": "object",
                "required": ["inputs"],
                "additionalProperties": False,
                "properties": {
                    "inputs": {
                        "description": "MLflow's tensor input: rows as in instances, or each "
                        "column's values (all of one length)",
                        "oneOf": [
                            {"type": "array", "minItems": 1, "items": {"oneOf": [record, row]}},
                            by_column,
                        ],
                    },
                    "key": key,
                },
            },
        ]
    }


def _feedback_body() -> dict[str, Any]:
    """The body :func:`~loopline.serving.feedback.read_feedback` takes."""
    one = {
        "type": "object",
        "required": ["request_id", "label"],
        "additionalProperties": False,
        "properties": {
            "request_id": {"type": "string", "minLength": 1, "maxLength": MAX_REQUEST_ID_CHARS},
            "label": {
                "anyOf": [
                    {"type": ["number", "boolean"]},
                    {"type": "string", "maxLength": MAX_LABEL_CHARS},
                ]
            },
            "row": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_ROW},
        },
    }
    return {
        "oneOf": [
            one,
            {
                "type": "object",
                "required": ["labels"],
                "additionalProperties": False,
                "properties": {"labels": {"type": "array", "items": one, "maxItems": MAX_LABELS}},
            },
        ]
    }


def _model_paths(name: str, signature: Any) -> dict[str, Any]:
    base = f"/v1/models/{name}"
    return {
        base: {
            "get": {
                "operationId": f"describe_{name}",
                "summary": f"What is served under {name!r}",
                "responses": {
                    "200": _json({"type": "object"}, "The deployment"),
                    **_errors("404", "503"),
                },
            }
        },
        f"{base}/predict": {
            "post": {
                "operationId": f"predict_{name}",
                "summary": f"Predict with {name!r}",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _predict_body(signature)}},
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Prediction"}, "Predictions"),
                    **_errors("400", "404", "413", "415", "422", "500", "503", "504"),
                },
            }
        },
        f"{base}/feedback": {
            "post": {
                "operationId": f"feedback_{name}",
                "summary": f"Late labels for predictions of {name!r}",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _feedback_body()}},
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Feedback"}, "Labels matched"),
                    **_errors("400", "404", "413", "415", "422", "503"),
                },
            }
        },
    }


def describe(routes: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the served ``routes`` (name -> :class:`Route`).

    Example:
        >>> describe({})["info"]["title"]
        'Loopline model server'
    """
    paths: dict[str, Any] = {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "200 once every deployment is loaded, else 503; the status only",
                "responses": {
                    "200": _json(_HEALTH, "Ready"),
                    "503": _json(_HEALTH, "Starting, or a deployment cannot load"),
                },
            }
        },
        "/livez": {
            "get": {
                "operationId": "livez",
                "summary": "200 whenever the process serves HTTP (liveness); nothing about models",
                "responses": {"200": _json(_ALIVE, "Alive")},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus text format",
                "responses": {
                    "200": {"description": "Metrics", "content": {"text/plain": {"schema": {}}}}
                },
            }
        },
        "/v1/models": {
            "get": {
                "operationId": "list_models",
                "summary": "Every served deployment",
                "responses": {"200": _json({"type": "object"}, "Deployments by name")},
            }
        },
    }
    for name in sorted(routes):
        signature = getattr(routes[name].stable.loaded, "signature", None)
        paths.update(_model_paths(name, signature))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Loopline model server", "version": __version__},
        "paths": paths,
        "components": _COMPONENTS,
    }
