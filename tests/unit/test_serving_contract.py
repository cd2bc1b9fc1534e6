"""serving/contract.py: the checks MLflow's schema enforcement lacks, on parsed frames."""

import numpy as np
import pandas as pd
import pytest

from serving.contract import input_problem

INPUTS = [
    {"name": "annual_income", "type": "double", "required": False},
    {"name": "num_open_accounts", "type": "double", "required": False},
    {"name": "term", "type": "string", "required": True},
    {"name": "loan_purpose", "type": "string", "required": True},
]
VALID_ROW = {
    "annual_income": 72000.0,
    "num_open_accounts": np.nan,
    "term": "36 months",
    "loan_purpose": "car",
}
SECRET = "Zebra-Secret-4711"


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


@pytest.mark.parametrize(
    "data",
    [
        frame(VALID_ROW),
        frame(VALID_ROW, {**VALID_ROW, "annual_income": None}),
        frame({k: v for k, v in VALID_ROW.items() if k != "annual_income"}),  # optional absent
        frame({**VALID_ROW, "term": "60 months"}).astype({"term": "string"}),
    ],
    ids=["one-row", "null-in-optional", "optional-absent", "pandas-string-dtype"],
)
def test_a_valid_frame_passes(data):
    assert input_problem(data, INPUTS) is None


def duplicate_columns() -> pd.DataFrame:
    data = pd.DataFrame([["36 months", "60 months"]], columns=["term", "term"])
    return data


@pytest.mark.parametrize(
    ("data", "status", "code", "message"),
    [
        (frame(VALID_ROW).iloc[0:0], 400, "empty_input", "the request holds no rows to score"),
        (duplicate_columns(), 400, "duplicate_columns", "each column may appear only once"),
        (
            frame({**VALID_ROW, SECRET: 1}),
            400,
            "unknown_columns",
            "1 column(s) are not in the model's input schema; expected columns: "
            "annual_income, num_open_accounts, term, loan_purpose",
        ),
        (
            pd.DataFrame([[1.0, 2.0, "36 months", "car", 3]], columns=[*VALID_ROW, 7]),
            400,
            "unknown_columns",
            "1 column(s) are not in the model's input schema; expected columns: "
            "annual_income, num_open_accounts, term, loan_purpose",
        ),
        (
            frame({**VALID_ROW, "term": 36}),
            400,
            "invalid_type",
            "column(s) must hold text values: term",
        ),
        (
            frame({**VALID_ROW, "term": {}, "loan_purpose": [SECRET]}),
            400,
            "invalid_type",
            "column(s) must hold text values: term, loan_purpose",
        ),
        (
            frame(VALID_ROW, {**VALID_ROW, "loan_purpose": None}),
            400,
            "null_in_required_column",
            "column(s) that may not be null hold null or empty text: loan_purpose",
        ),
    ],
    ids=[
        "empty",
        "duplicate",
        "unknown",
        "non-text-name",
        "number-in-text",
        "objects-in-text",
        "null-required",
    ],
)
def test_problems_are_fixed_400s_naming_schema_columns(data, status, code, message):
    error = input_problem(data, INPUTS)
    assert (error.status, error.code, error.message) == (status, code, message)
    assert SECRET not in error.message


def test_checks_run_in_order_empty_before_columns():
    # A frame with no rows and unknown columns is "empty": the first problem is the answer.
    data = pd.DataFrame(columns=["nope"])
    assert input_problem(data, INPUTS).code == "empty_input"


@pytest.mark.parametrize(
    ("data", "inputs"),
    [
        (np.array([[1.0, 2.0]]), INPUTS),  # a tensor input: MLflow's enforcement decides
        (frame({"anything": 1}), []),  # no column signature: nothing to check against
    ],
    ids=["not-a-frame", "no-signature"],
)
def test_left_to_mlflow(data, inputs):
    assert input_problem(data, inputs) is None
