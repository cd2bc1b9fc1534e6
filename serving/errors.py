"""Errors the model server answers with, and how MLflow's error responses map onto them.

Every message is built from fixed text plus names taken from the model's own schema. Nothing
from the request body is ever copied into a response: MLflow's messages repeat the input
data and carry stack traces, so they are only used to pick the right fixed message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_SEE_MODEL = "GET /model lists the expected columns and types"


@dataclass
class ApiError(Exception):
    """An error response: HTTP status, a stable snake_case code and a safe message."""

    status: int
    code: str
    message: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def body(self, request_id: str) -> dict:
        return {"error": {"code": self.code, "message": self.message}, "request_id": request_id}


def schema_error(mlflow_message: str, inputs: list[dict]) -> ApiError:
    """A 400 for a signature mismatch, naming only columns and types from the schema."""
    types = {spec["name"]: spec["type"] for spec in inputs}
    missing = re.search(r"missing inputs (\[[^\]]*\])", mlflow_message)
    if missing:
        names = [name for name in types if f"'{name}'" in missing.group(1)]
        if names:
            return ApiError(
                400, "missing_columns", f"missing required input column(s): {', '.join(names)}"
            )
    for pattern in (
        r"convert column (\S+?) to type",
        r"input types for column (\S+?)\.",
        r"for column (\S+?)[ .:]",
    ):
        found = re.search(pattern, mlflow_message)
        if found and found.group(1).strip("'`\"") in types:
            name = found.group(1).strip("'`\"")
            return ApiError(
                400, "invalid_type", f"column '{name}' must hold {_describe(types[name])} values"
            )
    return ApiError(
        400, "schema_mismatch", f"the input does not match the model's signature; {_SEE_MODEL}"
    )


def _describe(type_name: str) -> str:
    return {
        "double": "numeric (a number with a dot as decimal separator, or null)",
        "float": "numeric",
        "long": "integer",
        "integer": "integer",
        "string": "text",
        "boolean": "true/false",
    }.get(type_name, type_name)


def classify_mlflow_error(status: int, body: bytes, timeout: float, inputs: list[dict]) -> ApiError:
    """Turn an error response of MLflow's app (raised before the model ran) into ours."""
    if status == 415:
        return ApiError(
            415,
            "unsupported_media_type",
            "send Content-Type: application/json (utf-8); text/csv and "
            "application/x-parquet are accepted too",
        )
    if status == 504:
        return ApiError(504, "timeout", f"the prediction took longer than {timeout:g} seconds")
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        message = ""
    if "valid JSON" in message or "valid UTF-8" in message:
        return ApiError(400, "invalid_json", "the request body is not valid JSON")
    if "exactly one of the input fields" in message or "Received a list" in message:
        return ApiError(
            400,
            "invalid_format",
            "the body must be a JSON object with exactly one of the keys "
            "dataframe_split, dataframe_records, instances or inputs",
        )
    schema = schema_error(message, inputs)
    if schema.code != "schema_mismatch":
        return schema
    if status >= 500:
        return ApiError(
            500,
            "internal_error",
            "the server failed; the log has the details under this request id",
        )
    return ApiError(
        400, "invalid_input", f"the body could not be read as model input; {_SEE_MODEL}"
    )
