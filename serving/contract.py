"""The input checks MLflow's schema enforcement lacks, and the predict hook that runs them.

`input_problem` is a pure function of the parsed frame and the signature's input specs (the
`{"name", "type", "required"}` dicts of `LoadedModel.inputs`), unit-tested in
tests/unit/test_serving_contract.py. `install_predict_hook` wraps the model's `predict` so the
checks run on the frame MLflow parsed, and so the model's failures become our errors.
"""

from __future__ import annotations

import logging

from serving.api_errors import ApiError, api_error
from serving.context import current_request
from serving.mlflow_errors import schema_error

log = logging.getLogger("serving.contract")


def input_problem(data, inputs: list[dict]) -> ApiError | None:
    """What MLflow's schema enforcement lets through but the model cannot take, as a 400.

    Checked on the parsed frame: no rows, repeated or unknown column names (MLflow drops unknown
    columns silently, which hides a typo), non-text values in text columns (MLflow checks the
    column's dtype, not its values, so an object or a number would fail inside the model), and
    nulls in required columns (MLflow lets them through). Input that is not a frame, or a model
    without a column signature, is left to MLflow.
    """
    from pandas.api.types import infer_dtype

    columns = getattr(data, "columns", None)
    known = {spec["name"] for spec in inputs}
    if columns is None or not known:
        return None
    if len(data) == 0:
        return api_error("empty_input")
    if not columns.is_unique:
        return api_error("duplicate_columns")
    unknown = [c for c in columns if not isinstance(c, str) or c not in known]
    if unknown:
        expected = ", ".join(spec["name"] for spec in inputs)
        return api_error("unknown_columns", count=len(unknown), expected=expected)
    text_columns = [spec["name"] for spec in inputs if spec["type"] == "string"]
    not_text = [
        c
        for c in text_columns
        if c in columns and infer_dtype(data[c], skipna=True) not in ("string", "empty")
    ]
    if not_text:
        return api_error("text_expected", columns=", ".join(not_text))
    required = [spec["name"] for spec in inputs if spec["required"]]
    nulls = [c for c in required if c in columns and data[c].isna().any()]
    if nulls:
        return api_error("null_in_required_column", columns=", ".join(nulls))
    return None


def install_predict_hook(pyfunc, inputs: list[dict]) -> None:
    """Wrap `pyfunc.predict` to check the input and report errors and row counts.

    MLflow calls `model.predict(data, params=...)` after parsing; the hook runs in MLflow's
    worker thread and reports through the request's context (serving/context.py).
    """
    from mlflow.exceptions import MlflowException

    original = pyfunc.predict

    def predict(data, params=None):
        context = current_request.get(None)
        report = context.report if context is not None else _unreported
        if context is not None:
            context.predict_called = True
        problem = input_problem(data, inputs)
        if problem is not None:
            raise report(problem)
        try:
            result = original(data, params=params)
        except MlflowException as error:
            raise report(schema_error(error.message, inputs)) from error
        except Exception as error:
            log.exception(
                "the model raised an exception",
                extra={"fields": {"request_id": getattr(context, "request_id", "")}},
            )
            raise report(api_error("model_error")) from error
        if context is not None:
            context.rows = len(data) if hasattr(data, "__len__") else 0
        return result

    pyfunc.predict = predict


def _unreported(error: ApiError) -> ApiError:
    # Outside a request (a direct call in a test or a shell) there is no one to report to.
    return error
