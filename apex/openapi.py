"""The OpenAPI 3.0 document of the gateway API, built from the model signature.

Built as data rather than a text template so it is valid JSON by construction. OpenAPI 3.0.3
rather than 3.1: APEX's REST Data Source discovery (23.1+) and most test generators handle 3.0
best. The gateway serves this file at ``GET /openapi.json``.
"""

from __future__ import annotations

from collections.abc import Sequence

from apex.body import INTEGER_TYPES, NUMBER_TYPES, Column
from common.facts import MAX_BODY_BYTES, MAX_ROWS, REASONS_PARAM
from serving.api_errors import ERRORS

# The reusable response of each status: its component name and what it tells a caller. Which
# statuses an operation answers, and the model server's codes in each, come from the server's
# error table (serving/api_errors.py); the gateway adds its own statuses (GATEWAY_STATUSES).
RESPONSES = {
    400: ("BadInput", "The body is not valid JSON or a column is missing or of the wrong type."),
    401: ("Unauthorized", "No X-API-Key header, or the key is unknown."),
    404: ("NotFound", "No such route: the API is POST /invocations and GET /model."),
    405: ("MethodNotAllowed", "The route does not take this method."),
    413: (
        "TooLarge",
        f"The body is over {MAX_BODY_BYTES / 2**20:g} MB or holds more than the row cap "
        f"({MAX_ROWS} by default): send fewer rows per request.",
    ),
    415: ("UnsupportedMediaType", "Content-Type is missing or not application/json."),
    429: ("RateLimited", "Too many requests for this key: wait Retry-After seconds."),
    500: ("ModelError", "The model failed on this input."),
    503: (
        "Unavailable",
        "The model server is down, still loading, or at its concurrency limit: retry after "
        "Retry-After seconds.",
    ),
    504: ("Timeout", "The model did not answer in time."),
}
# What the gateway answers itself on each path (nginx/snippets/errors.conf, api-key.conf,
# rate-limits.conf): a missing key, the rate limit, an unreachable or slow model server.
GATEWAY_STATUSES = {
    "/invocations": (401, 429, 503, 504),
    "/model": (401, 429, 503, 504),
    "/openapi.json": (401, 429),
}
# What the model server itself answers on each path.
SERVER_STATUSES = {
    "/invocations": tuple(sorted({case.status for case in ERRORS.values() if case.on_invocations})),
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
    if column.categories:
        if column.closed:
            schema["enum"] = list(column.categories)
        else:
            schema["description"] = "Known values: " + ", ".join(column.categories)
    if column.minimum is not None:
        schema["minimum"] = column.minimum
    if column.maximum is not None:
        schema["maximum"] = column.maximum
    if column.nullable:
        schema["nullable"] = True
        if "enum" in schema:
            schema["enum"].append(None)  # OpenAPI 3.0: an enum lists null for a nullable one
    return schema


# ------------------------------------------------------------------------------------ responses
def server_codes(status: int) -> list[str]:
    """The model server's error codes answered with `status`, in table order, once each."""
    return list(dict.fromkeys(case.code for case in ERRORS.values() if case.status == status))


def _error_response(status: int) -> dict:
    name, description = RESPONSES[status]
    codes = server_codes(status)
    if codes:
        description += " Model server codes: " + ", ".join(f"`{code}`" for code in codes) + "."
    response = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"required": True, "schema": _STRING},
        }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before the next request.",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return response


def error_statuses() -> list[int]:
    """Every status with a reusable response: the server's table and the gateway's."""
    server = {case.status for case in ERRORS.values()}
    gateway = {status for statuses in GATEWAY_STATUSES.values() for status in statuses}
    return sorted(server | gateway)


def _errors(path: str) -> dict:
    statuses = sorted({*GATEWAY_STATUSES[path], *SERVER_STATUSES.get(path, ())})
    return {
        str(status): {"$ref": f"#/components/responses/{RESPONSES[status][0]}"}
        for status in statuses
    }


def _json_response(description: str, schema: dict, headers: dict | None = None) -> dict:
    response: dict = {"description": description}
    if headers:
        response["headers"] = headers
    response["content"] = {"application/json": {"schema": schema}}
    return response


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


# -------------------------------------------------------------------------------------- schemas
def record_schema(inputs: Sequence[Column], example: dict | None) -> dict:
    """One applicant as a JSON object (``dataframe_records`` items)."""
    record = {
        "type": "object",
        "description": "One applicant. Every column is sent (absence is refused); null means "
        "missing where the column is nullable; text from the listed values, exact case.",
        "properties": {column.name: column_schema(column) for column in inputs},
        "required": [column.name for column in inputs],
        "additionalProperties": False,
    }
    if example:
        record["example"] = example
    return record


def split_request_schema(inputs: Sequence[Column], example: dict | None) -> dict:
    """The ``dataframe_split`` body: column names once, then rows of values in that order."""
    names = [column.name for column in inputs]
    cell_types = sorted({column_schema(column)["type"] for column in inputs})
    row = {
        "type": "array",
        "minItems": len(names),
        "maxItems": len(names),
        "items": {"nullable": True, "anyOf": [{"type": kind} for kind in cell_types]},
    }
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
                        "maxItems": MAX_ROWS,
                        "description": "One row per applicant, values in the order of columns.",
                        "items": row,
                    },
                },
            }
        },
    }
    if example:
        split["example"] = {
            "dataframe_split": {"columns": names, "data": [[example.get(n) for n in names]]}
        }
    return split


def records_request_schema() -> dict:
    """The ``dataframe_records`` body: a list of Records."""
    return {
        "type": "object",
        "required": ["dataframe_records"],
        "additionalProperties": False,
        "properties": {
            "dataframe_records": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_ROWS,
                "items": _ref("Record"),
            }
        },
    }


def prediction_schema(outputs: Sequence[Column]) -> dict:
    """One prediction: every output column, never null."""
    prediction = {
        "type": "object",
        "required": [column.name for column in outputs],
        "properties": {column.name: column_schema(column) for column in outputs},
    }
    for column in outputs:
        prediction["properties"][column.name].pop("nullable", None)
    return prediction


_MODEL_INFO = {
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
        "reason_codes": {
            "type": "array",
            "nullable": True,
            "description": "The model's reason table: what `params.reasons` answers with "
            "(null for a model without reason codes).",
            "items": {
                "type": "object",
                "required": ["column", "code", "text"],
                "properties": {"column": _STRING, "code": _STRING, "text": _STRING},
            },
        },
    },
}
_ERROR = {
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
}


def params_schema(reason_codes: Sequence[dict]) -> dict:
    """MLflow's ``params`` of a request: how many reason codes each row should carry."""
    return {
        "type": "object",
        "additionalProperties": False,
        "description": "Inference parameters the model declares in its signature (MLflow "
        "scoring protocol).",
        "properties": {
            REASONS_PARAM: {
                "type": "integer",
                "minimum": 0,
                "maximum": len(reason_codes),
                "default": 0,
                "description": "Give each prediction up to this many principal reasons: the "
                "input columns that raised the risk most, largest first. 0 (the default): "
                "none, and the answer is as without params. Four is what adverse-action "
                "notices use.",
            }
        },
    }


def reason_schema(reason_codes: Sequence[dict]) -> dict:
    """One reason: a column of the reason table and how much it raised the risk."""
    return {
        "type": "object",
        "required": ["code", "column", "text", "contribution"],
        "properties": {
            "code": {"type": "string", "enum": [entry["code"] for entry in reason_codes]},
            "column": {"type": "string", "enum": [entry["column"] for entry in reason_codes]},
            "text": {"type": "string", "description": "What a loan officer reads."},
            "contribution": {
                "type": "number",
                "exclusiveMinimum": True,
                "minimum": 0,
                "description": "How much this column raised the log-odds of default above "
                "the reference applicants (those just approved); always positive.",
            },
        },
    }


def _with_reasons(found: dict, reason_codes: Sequence[dict]) -> dict:
    """The schemas of a model with reason codes: params on both request bodies, `reasons`
    on a prediction (present only when asked for)."""
    found["Params"] = params_schema(reason_codes)
    found["Reason"] = reason_schema(reason_codes)
    for request in ("RecordsRequest", "SplitRequest"):
        found[request]["properties"]["params"] = _ref("Params")
    found["Prediction"]["properties"][REASONS_PARAM] = {
        "type": "array",
        "maxItems": len(reason_codes),
        "description": "Only when `params.reasons` is above 0: up to that many reasons, "
        "largest contribution first; fewer (or none) when fewer columns raised the risk.",
        "items": _ref("Reason"),
    }
    return found


def schemas(
    inputs: Sequence[Column],
    outputs: Sequence[Column],
    example: dict | None,
    reason_codes: Sequence[dict] = (),
) -> dict:
    """``components.schemas``: the request bodies, the predictions, /model and the error."""
    found = {
        "Record": record_schema(inputs, example),
        "RecordsRequest": records_request_schema(),
        "SplitRequest": split_request_schema(inputs, example),
        "Prediction": prediction_schema(outputs),
        "Predictions": {
            "type": "object",
            "required": ["predictions"],
            "properties": {"predictions": {"type": "array", "items": _ref("Prediction")}},
        },
        "Column": {
            "type": "object",
            "required": ["name", "type"],
            "properties": {"name": _STRING, "type": _STRING},
        },
        "ModelInfo": _MODEL_INFO,
        "Error": _ERROR,
    }
    return _with_reasons(found, reason_codes) if reason_codes else found


# ---------------------------------------------------------------------------------------- paths
_IDENTITY_HEADERS = {
    "X-Model-Name": {"required": True, "schema": _STRING, "description": "Registered model."},
    "X-Model-Version": {
        "required": True,
        "schema": _STRING,
        "description": "The registry version that answered, e.g. 3.",
    },
    "X-Request-ID": {"required": True, "schema": _STRING, "description": "Quote it in bugs."},
}


def _operation(operation_id: str, summary: str, path: str, ok: dict, request=None) -> dict:
    operation = {"operationId": operation_id, "summary": summary}
    if request is not None:
        operation["requestBody"] = request
    operation["responses"] = {"200": ok, **_errors(path)}
    return operation


def paths() -> dict:
    """The three operations the gateway offers, each with the errors it can answer."""
    predict_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [_ref("RecordsRequest"), _ref("SplitRequest")]}
            }
        },
    }
    return {
        "/invocations": {
            "post": _operation(
                "predict",
                "Score one or many rows in one request",
                "/invocations",
                _json_response(
                    "One prediction per input row, in order.",
                    _ref("Predictions"),
                    _IDENTITY_HEADERS,
                ),
                request=predict_body,
            )
        },
        "/model": {
            "get": _operation(
                "modelInfo",
                "The model version that answers now, with its signature",
                "/model",
                _json_response("Name, version, alias and signature.", _ref("ModelInfo")),
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "This document",
                "/openapi.json",
                _json_response("The OpenAPI document.", {"type": "object"}),
            )
        },
    }


# ------------------------------------------------------------------------------------- document
def info(model_name: str) -> dict:
    return {
        "title": f"{model_name} scoring API",
        "version": "1",
        "description": (
            f"Scores rows with the promoted version of the MLflow model {model_name} "
            "(MLflow scoring protocol). Generated by `make apex` from the model signature."
        ),
    }


def build_openapi(
    model_name: str,
    inputs: Sequence[Column],
    outputs: Sequence[Column],
    gateway_url: str,
    example: dict | None,
    reason_codes: Sequence[dict] = (),
) -> dict:
    """The OpenAPI document for ``POST /invocations``, ``GET /model`` and ``GET /openapi.json``."""
    return {
        "openapi": "3.0.3",
        "info": info(model_name),
        "servers": [{"url": gateway_url}],
        "security": [{"ApiKey": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": schemas(inputs, outputs, example, reason_codes),
            # Every status either side can answer, also 404 and 405 that no operation lists
            # (a route or method the API does not have).
            "responses": {
                RESPONSES[status][0]: _error_response(status) for status in error_statuses()
            },
        },
    }
