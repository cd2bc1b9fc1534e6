"""serving/mlflow_errors.py against the messages of the pinned MLflow, produced live.

A tiny pyfunc model is saved in tmp_path with a signature of the production shape (an optional
double, a required string). Its error messages come from the real code paths: MLflow's scoring
app (`mlflow.pyfunc.scoring_server.init`, driven as ASGI in this process, no server started)
for parsing errors, and `PyFuncModel.predict`'s schema enforcement for what the predict hook
sees. An MLflow upgrade that rewords a message the classifier relies on fails here.
"""

import asyncio
import json
import os
import time

import pandas as pd
import pytest

from serving.asgi import CapturedResponse, replay
from serving.mlflow_errors import classify_mlflow_error, model_error, schema_error

SECRET = "Zebra-Secret-4711"
TIMEOUT = 1  # seconds: MLflow's own request timeout in the app under test
INPUTS = [
    {"name": "annual_income", "type": "double", "required": False},
    {"name": "term", "type": "string", "required": True},
]
SLOW = "slow"  # a term value that makes the model sleep past TIMEOUT


@pytest.fixture(scope="module")
def pyfunc_model(tmp_path_factory):
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    class TinyModel(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            if (model_input["term"] == SLOW).any():
                time.sleep(TIMEOUT + 0.5)
            return pd.DataFrame({"probability": [0.5] * len(model_input)})

    signature = ModelSignature(
        inputs=Schema(
            [ColSpec("double", "annual_income", required=False), ColSpec("string", "term")]
        ),
        outputs=Schema([ColSpec("double", "probability")]),
    )
    path = tmp_path_factory.mktemp("tiny-model") / "model"
    mlflow.pyfunc.save_model(
        path,
        python_model=TinyModel(),
        signature=signature,
        input_example=pd.DataFrame({"annual_income": [1.0], "term": ["36 months"]}),
        pip_requirements=[],  # listed, so MLflow does not infer them in a subprocess
    )
    return mlflow.pyfunc.load_model(str(path))


@pytest.fixture(scope="module")
def scoring_app(pyfunc_model):
    """MLflow's scoring app for the tiny model; `init` reads and sets environment variables."""
    from mlflow.pyfunc import scoring_server

    saved = dict(os.environ)
    os.environ["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"] = str(TIMEOUT)
    try:
        yield scoring_server.init(pyfunc_model)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def invoke(app, body: bytes, content_type: str) -> tuple[int, bytes]:
    """POST /invocations to an ASGI app in this process; (status, body) of its answer."""
    response = CapturedResponse()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/invocations",
        "raw_path": b"/invocations",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", content_type.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, replay(body), response.send))
    return response.status, response.body


def records(*rows: dict) -> bytes:
    return json.dumps({"dataframe_records": list(rows)}).encode()


JSON = "application/json"
SCORING_APP_CASES = [
    # (id, body, content type, MLflow's status, our status, our code, a piece of our message)
    ("malformed-json", b'{"dataframe_records": [{"a": "' + SECRET.encode() + b'",', JSON,
     400, 400, "invalid_json", "not valid JSON"),
    ("csv-not-utf8", b"term\n\xff" + SECRET.encode(), "text/csv",
     400, 400, "invalid_json", "not valid JSON"),
    ("list-body", json.dumps([{"term": SECRET}]).encode(), JSON,
     400, 400, "invalid_format", "exactly one of the keys"),
    ("no-format-key", json.dumps({SECRET: 1}).encode(), JSON,
     400, 400, "invalid_format", "exactly one of the keys"),
    ("two-format-keys", b'{"dataframe_records": [], "dataframe_split": {}}', JSON,
     400, 400, "invalid_format", "exactly one of the keys"),
    ("number-body", b"42", JSON, 400, 400, "invalid_format", "exactly one of the keys"),
    ("split-not-a-frame", json.dumps({"dataframe_split": {"columns": ["term"], "data": SECRET}})
     .encode(), JSON, 400, 400, "invalid_input", "could not be read as model input"),
    ("missing-column", records({"annual_income": 1.0}), JSON,
     400, 400, "missing_columns", "missing input column(s): term;"),
    ("text-in-number-column", records({"annual_income": SECRET, "term": "x"}), JSON,
     400, 400, "invalid_type", "column 'annual_income' must hold numeric"),
    ("decimal-comma", records({"annual_income": "1234,5", "term": "x"}), JSON,
     400, 400, "invalid_type", "column 'annual_income' must hold numeric"),
    ("text-plain", SECRET.encode(), "text/plain",
     415, 415, "unsupported_media_type", "application/json"),
    ("latin-1", b"{}", "application/json; charset=latin-1",
     415, 415, "unsupported_media_type", "utf-8"),
    ("unknown-parameter", b"{}", "application/json; version=2",
     415, 415, "unsupported_media_type", "application/json"),
    ("timeout", records({"annual_income": 1.0, "term": SLOW}), JSON,
     504, 504, "timeout", f"longer than {TIMEOUT} seconds"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "content_type", "mlflow_status", "status", "code", "message"),
    [case[1:] for case in SCORING_APP_CASES],
    ids=[case[0] for case in SCORING_APP_CASES],
)
def test_scoring_app_errors_are_classified(
    scoring_app, body, content_type, mlflow_status, status, code, message
):
    got_status, got_body = invoke(scoring_app, body, content_type)
    assert got_status == mlflow_status, got_body
    error = classify_mlflow_error(got_status, got_body, TIMEOUT, INPUTS)
    assert (error.status, error.code) == (status, code), got_body
    assert message in error.message
    assert SECRET not in error.message
    assert "\n" not in error.message and "Traceback" not in error.message


def test_mlflow_itself_echoes_the_input(scoring_app):
    """Why the classifier never copies MLflow's text: MLflow's own body repeats the data."""
    _, body = invoke(scoring_app, records({"annual_income": SECRET, "term": "x"}), JSON)
    assert SECRET in body.decode()


ENFORCEMENT_CASES = [
    # (id, frame, our code, our message)
    ("missing-column", {"annual_income": [1.0]},
     "missing_columns", "missing input column(s): term;"),
    ("object-in-number-column", {"annual_income": [SECRET], "term": ["x"]},
     "invalid_type", "column 'annual_income' must hold numeric (a number with a dot as "
     "decimal separator, or null) values"),
    ("number-in-text-column", {"annual_income": [1.0], "term": [36]},
     "invalid_type", "column 'term' must hold text values"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("columns", "code", "message"),
    [case[1:] for case in ENFORCEMENT_CASES],
    ids=[case[0] for case in ENFORCEMENT_CASES],
)
def test_schema_enforcement_errors_name_schema_columns_only(pyfunc_model, columns, code, message):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as raised:
        pyfunc_model.predict(pd.DataFrame(columns))
    error = schema_error(raised.value.message, INPUTS)
    assert (error.status, error.code) == (400, code)
    assert error.message.startswith(message)


def test_a_column_outside_the_schema_is_never_named():
    # MLflow's messages print the data, so a caller's column name can appear in them.
    message = f"Failed to convert column {SECRET} to type 'float64'. Model is missing inputs []"
    error = schema_error(message, INPUTS)
    assert error.code == "schema_mismatch" and SECRET not in error.message


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [(400, b"not json", "invalid_input"), (500, b'{"message": "boom"}', "internal_error")],
)
def test_unrecognised_answers_fall_back_by_status(status, body, code):
    assert classify_mlflow_error(status, body, TIMEOUT, INPUTS).code == code


@pytest.mark.parametrize(
    ("value", "explained", "high"), [(12, True, "11"), (-1, True, "11"), (2, False, "0")]
)
def test_a_refused_reasons_count_names_the_param_and_its_range(value, explained, high):
    # The message of the real model class (training/credit_model.py), not a copy of it.
    from mlflow.exceptions import MlflowException

    from training.credit_model import CreditRiskModel

    model = CreditRiskModel()
    model.explainer = type("Explainer", (), {"columns": ["c"] * 11})() if explained else None
    with pytest.raises(MlflowException) as raised:
        model._reasons_wanted({"reasons": value})
    error = model_error(raised.value.message, INPUTS, {"reasons": value})
    assert (error.status, error.code) == (400, "invalid_params")
    assert error.message == f"param 'reasons' must be a whole number from 0 to {high}"


def test_a_params_message_naming_a_param_that_was_not_sent_is_a_schema_mismatch():
    error = model_error(f"params.{SECRET} must be from 0 to 3", INPUTS, {"reasons": 1})
    assert error.code == "schema_mismatch" and SECRET not in error.message
    other = model_error(f"params.reasons must be from 0 to 3 {SECRET}", INPUTS, {"reasons": 9})
    assert other.code == "schema_mismatch" and SECRET not in other.message
