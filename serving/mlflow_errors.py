"""Which of our errors an MLflow error is: MLflow's messages pick a row, never fill one.

MLflow's scoring app (mlflow/pyfunc/scoring_server/__init__.py, `invocations` and
`_parse_json_data`) and its schema enforcement (mlflow/models/utils.py, `_enforce_schema`)
answer with messages that repeat the caller's data and carry stack traces. Only the fixed parts
of those messages are matched here, and only column names that the model's own schema has are
taken from them. tests/unit/test_serving_mlflow_errors.py feeds this the messages of the pinned
MLflow, produced live, so an MLflow upgrade that rewords them fails a unit test.
"""

from __future__ import annotations

import json
import re

from serving.api_errors import ApiError, api_error

# Where MLflow names the column, most specific first: parsing with the schema ("to type"),
# schema enforcement on an object column ("from type", what the predict hook sees).
_COLUMN_PATTERNS = (
    r"convert column (\S+?) to type",
    r"convert column (\S+?) from type",
    r"input types for column (\S+?)\.",
    r"for column (\S+?)[ .:]",
)
_TYPE_WORDS = {
    "double": "numeric (a number with a dot as decimal separator, or null)",
    "float": "numeric",
    "long": "integer",
    "integer": "integer",
    "string": "text",
    "boolean": "true/false",
}


def schema_error(mlflow_message: str, inputs: list[dict]) -> ApiError:
    """A 400 for a signature mismatch, naming only columns and types from the schema."""
    types = {spec["name"]: spec["type"] for spec in inputs}
    missing = re.search(r"missing inputs (\[[^\]]*\])", mlflow_message)
    if missing:
        names = [name for name in types if f"'{name}'" in missing.group(1)]
        if names:
            return api_error("missing_columns", columns=", ".join(names))
    for pattern in _COLUMN_PATTERNS:
        found = re.search(pattern, mlflow_message)
        name = found.group(1).strip("'`\"") if found else None
        if name in types:
            return api_error(
                "invalid_type", column=name, kind=_TYPE_WORDS.get(types[name], types[name])
            )
    return api_error("schema_mismatch")


# What a model says of a param value it refuses (training/credit_model.py `_reasons_wanted`):
# only this fixed sentence, with numbers, is taken from it, so no caller data can pass.
_PARAM_RANGE = re.compile(
    r"params\.(\w+) must be (?:a whole number )?from (\d+) to (\d+)"
    r"(?:: this model was logged without reason codes)?"
)


def model_error(mlflow_message: str, inputs: list[dict], params: dict | None) -> ApiError:
    """A 400 for an MlflowException the model raised: a refused param (named when the
    request sent it), else a signature mismatch (schema_error)."""
    found = _PARAM_RANGE.fullmatch(mlflow_message.strip())
    if found and found.group(1) in (params or {}):
        return api_error(
            "param_out_of_range", param=found.group(1), low=found.group(2), high=found.group(3)
        )
    return schema_error(mlflow_message, inputs)


def classify_mlflow_error(
    status: int,
    body: bytes,
    timeout: float,
    inputs: list[dict],
    accepted: str = "application/json, text/csv",
) -> ApiError:
    """Turn an error response of MLflow's app (raised before the model ran) into ours."""
    if status == 415:
        return api_error("unsupported_media_type", accepted=accepted)
    if status == 504:
        return api_error("timeout", timeout=timeout)
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        message = ""
    if "valid JSON" in message or "valid UTF-8" in message:
        return api_error("invalid_json")
    if "exactly one of the input fields" in message or "Received a list" in message:
        return api_error("invalid_format")
    schema = schema_error(message, inputs)
    if schema.code != "schema_mismatch":
        return schema
    if status >= 500:
        return api_error("internal_error")
    return api_error("invalid_input")
