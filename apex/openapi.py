"""The OpenAPI 3.0 document of the gateway API, built from the model signature.

Built as data rather than a text template so it is valid JSON by construction. OpenAPI 3.0.3
rather than 3.1: APEX's REST Data Source discovery (23.1+) and most test generators handle 3.0
best. The gateway serves this file at ``GET /openapi.json``.
"""

from __future__ import annotations

from collections.abc import Sequence

from apex.body import INTEGER_TYPES, NUMBER_TYPES, Column

ERROR_STATUSES = {
    "400": ("BadInput", "The body is not valid JSON or a column is missing or of the wrong type."),
    "401": ("Unauthorized", "No X-API-Key header, or the key is unknown."),
    "413": ("TooLarge", "The body is over 8 MB: send fewer rows per request."),
    "415": ("UnsupportedMediaType", "Content-Type is missing or not application/json."),
    "429": ("RateLimited", "Too many requests for this key: wait Retry-After seconds."),
    "500": ("ModelError", "The model failed on this input."),
    "503": ("Unavailable", "The model server is down or still loading."),
    "504": ("Timeout", "The model did not answer in time."),
}
_STRING = {"type": "string"}
_COLUMNS = {"type": "array", "items": {"$ref": "#/components/schemas/Column"}}


def column_schema(column: Column) -> dict:
    """The JSON schema of one signature column."""
    if column.type in NUMBER_TYPES:
        schema = {"type": "number", "format": column.type}
    elif column.type in INTEGER_TYPES:
        schema = {"type": "integer", "format": "int64" if column.type == "long" else "int32"}
    elif column.type == "boolean":
        schema = {"type": "boolean"}
    else:
        schema = {"type": "string"}
    if column.nullable:
        schema["nullable"] = True
    return schema


def _error_response(name: str, description: str) -> dict:
    response = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if name == "Unauthorized":
        response["headers"] = {
            "WWW-Authenticate": {"required": True, "schema": _STRING},
        }
    if name == "RateLimited":
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before the next request.",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return response


def _errors(*statuses: str) -> dict:
    return {
        status: {"$ref": f"#/components/responses/{ERROR_STATUSES[status][0]}"}
        for status in statuses
    }


def build_openapi(
    model_name: str,
    inputs: Sequence[Column],
    outputs: Sequence[Column],
    gateway_url: str,
    example: dict | None,
) -> dict:
    """The OpenAPI document for ``POST /invocations``, ``GET /model`` and ``GET /openapi.json``."""
    names = [column.name for column in inputs]
    record = {
        "type": "object",
        "description": "One applicant. Every column is sent; null means missing where allowed.",
        "properties": {column.name: column_schema(column) for column in inputs},
        "required": names,
        "additionalProperties": False,
    }
    if example:
        record["example"] = example
    cell_types = sorted({column_schema(column)["type"] for column in inputs})
    split = {
        "type": "object",
        "required": ["dataframe_split"],
        "additionalProperties": False,
        "properties": {
            "dataframe_split": {
                "type": "object",
                "required": ["columns", "data"],
                "additionalProperties": False,
                "properties": {
                    "columns": {
                        "type": "array",
                        "description": "Every input column once, in any order.",
                        "items": {"type": "string", "enum": names},
                        "minItems": len(names),
                        "maxItems": len(names),
                        "uniqueItems": True,
                    },
                    "data": {
                        "type": "array",
                        "minItems": 1,
                        "description": "One row per applicant, values in the order of columns.",
                        "items": {
                            "type": "array",
                            "minItems": len(names),
                            "maxItems": len(names),
                            "items": {
                                "nullable": True,
                                "anyOf": [{"type": kind} for kind in cell_types],
                            },
                        },
                    },
                },
            }
        },
    }
    if example:
        split["example"] = {
            "dataframe_split": {"columns": names, "data": [[example.get(n) for n in names]]}
        }
    records_request = {
        "type": "object",
        "required": ["dataframe_records"],
        "additionalProperties": False,
        "properties": {
            "dataframe_records": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/components/schemas/Record"},
            }
        },
    }
    prediction = {
        "type": "object",
        "required": [column.name for column in outputs],
        "properties": {column.name: column_schema(column) for column in outputs},
    }
    for column in outputs:
        prediction["properties"][column.name].pop("nullable", None)
    response_headers = {
        "X-Model-Name": {"required": True, "schema": _STRING, "description": "Registered model."},
        "X-Model-Version": {
            "required": True,
            "schema": _STRING,
            "description": "The registry version that answered, e.g. 3.",
        },
        "X-Request-ID": {"required": True, "schema": _STRING, "description": "Quote it in bugs."},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"{model_name} scoring API",
            "version": "1",
            "description": (
                f"Scores rows with the promoted version of the MLflow model {model_name} "
                "(MLflow scoring protocol). Generated by `make apex` from the model signature."
            ),
        },
        "servers": [{"url": gateway_url}],
        "security": [{"ApiKey": []}],
        "paths": {
            "/invocations": {
                "post": {
                    "operationId": "predict",
                    "summary": "Score one or many rows in one request",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/RecordsRequest"},
                                        {"$ref": "#/components/schemas/SplitRequest"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One prediction per input row, in order.",
                            "headers": response_headers,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Predictions"}
                                }
                            },
                        },
                        **_errors("400", "401", "413", "415", "429", "500", "503", "504"),
                    },
                }
            },
            "/model": {
                "get": {
                    "operationId": "modelInfo",
                    "summary": "The model version that answers now, with its signature",
                    "responses": {
                        "200": {
                            "description": "Name, version, alias and signature.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ModelInfo"}
                                }
                            },
                        },
                        **_errors("401", "429", "503", "504"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors("401", "429"),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": {
                "Record": record,
                "RecordsRequest": records_request,
                "SplitRequest": split,
                "Prediction": prediction,
                "Predictions": {
                    "type": "object",
                    "required": ["predictions"],
                    "properties": {
                        "predictions": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Prediction"},
                        }
                    },
                },
                "Column": {
                    "type": "object",
                    "required": ["name", "type"],
                    "properties": {"name": _STRING, "type": _STRING},
                },
                "ModelInfo": {
                    "type": "object",
                    "required": ["name", "version", "inputs", "outputs"],
                    "properties": {
                        "name": _STRING,
                        "version": _STRING,
                        "alias": {"type": "string", "nullable": True},
                        "run_id": {"type": "string", "nullable": True},
                        "inputs": _COLUMNS,
                        "outputs": _COLUMNS,
                        "loaded_at": {"type": "string", "nullable": True},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "request_id"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                                "message": _STRING,
                            },
                        },
                        "request_id": _STRING,
                    },
                },
            },
            "responses": {
                name: _error_response(name, description)
                for name, description in ERROR_STATUSES.values()
            },
        },
    }
