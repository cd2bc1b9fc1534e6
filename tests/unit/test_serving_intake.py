"""serving/intake.py and the contract rules of serving/contract.py, as pure functions: a body
in, the canonical body for MLflow or the error out. The same cases against the running server
(directly and through the gateway) are tests/integration/test_input_contract.py."""

import io
import json
from types import SimpleNamespace

import pandas as pd
import pytest

from serving.api_errors import ApiError
from serving.contract import ContractError, InputContract
from serving.intake import precheck_without_contract, read_with_contract

MARKER = "Zebra-Secret-4711"
CONTRACT = InputContract.from_dict(
    {
        "version": 1,
        "unknown_categories": "refuse",
        "columns": [
            {"name": "income", "type": "double", "nullable": False, "minimum": 0},
            {"name": "share", "type": "double", "nullable": True, "minimum": 0, "maximum": 1},
            {"name": "count", "type": "long", "nullable": True},
            {"name": "term", "type": "string", "nullable": False, "categories": ["36", "60"]},
            {"name": "note", "type": "string", "nullable": True},
        ],
    }
)
ROW = {"income": 50000.0, "share": 0.5, "count": 3, "term": "36", "note": "x"}


def settings(**overrides):
    values = {
        "max_rows": 5,
        "accept_csv": True,
        "accept_parquet": False,
        "accepted_media_types": "application/json, text/csv",
    }
    return SimpleNamespace(**{**values, **overrides})


def read(body, content_type="application/json", contract=CONTRACT, **overrides):
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return read_with_contract(body, content_type, contract, settings(**overrides))


def records(*rows):
    return {"dataframe_records": list(rows)}


def raw(column: str, literal: str) -> str:
    return json.dumps(records({**ROW, column: "@@"})).replace('"@@"', literal)


def test_valid_rows_become_one_canonical_split_body():
    accepted = read(records(ROW, {**ROW, "share": None, "note": "  "}))
    assert not isinstance(accepted, ApiError)
    body = json.loads(accepted.body)["dataframe_split"]
    assert body["columns"] == ["income", "share", "count", "term", "note"]
    # Blank text in a nullable text column is null, as the contract says.
    assert body["data"] == [[50000.0, 0.5, 3, "36", "x"], [50000.0, None, 3, "36", None]]
    assert accepted.rows == 2 and accepted.content_type == b"application/json"


def test_csv_and_split_give_the_same_canonical_body():
    csv_text = "income,share,count,term,note\n50000,0.5,3,36,x\n"
    split = {"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())], "index": [7]}}
    bodies = [read(csv_text, "text/csv").body, read(split).body, read(records(ROW)).body]
    # CSV has no integers: 3 arrives as 3.0, the same number for the model.
    as_floats = {json.dumps(json.loads(body, parse_int=float), sort_keys=True) for body in bodies}
    assert len(as_floats) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "names"),
    [
        (raw("income", "true"), None, 400, "invalid_type", "income"),
        (raw("income", '"5"'), None, 400, "invalid_type", "income"),
        (raw("income", json.dumps(MARKER)), None, 400, "invalid_type", "income"),
        (raw("income", "Infinity"), None, 400, "not_finite", "income"),
        (raw("income", "NaN"), None, 400, "not_finite", "income"),
        (raw("income", "1e999"), None, 400, "not_finite", "income"),
        (raw("income", "1" + "0" * 400), None, 400, "not_finite", "income"),
        (raw("income", "-1"), None, 400, "out_of_range", "at least 0"),
        (raw("share", "1.01"), None, 400, "out_of_range", "between 0 and 1"),
        (raw("count", "2.5"), None, 400, "invalid_type", "count"),
        (raw("income", "null"), None, 400, "null_in_required_column", "income"),
        (raw("term", '""'), None, 400, "null_in_required_column", "term"),
        (raw("term", json.dumps(MARKER)), None, 400, "unknown_category", "36, 60"),
        (raw("term", "36"), None, 400, "invalid_type", "term"),
        (raw("note", "false"), None, 400, "invalid_type", "note"),
        (json.dumps(records({k: v for k, v in ROW.items() if k != "share"})), None, 400,
         "missing_columns", "share"),
        (json.dumps(records({**ROW, MARKER: 1})), None, 400, "unknown_columns", "expected"),
        ('{"dataframe_records": [], "dataframe_records": []}', None, 400, "duplicate_keys",
         "repeats a key"),
        (json.dumps({"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())],
                     "index": [0, 1, 2]}}), None, 400, "inconsistent_split", "index"),
        (json.dumps({"instances": [ROW]}), None, 400, "invalid_format", "dataframe_records"),
        (json.dumps(records(*[ROW] * 6)), None, 413, "too_many_rows", "more than 5 rows"),
        ("income,share,count,term,note\n" + "\n" * 6, "text/csv", 413, "too_many_rows", "5"),
        ("income,share,count,term,note\n1,2\n", "text/csv", 400, "invalid_csv", "header"),
        ("income,share,count,term,note\ninf,,,36,\n", "text/csv", 400, "invalid_type", "income"),
        (json.dumps(records(ROW)), "application/vnd.apache.parquet", 415,
         "unsupported_media_type", "application/json"),
        (json.dumps(records(ROW)), "application/json; charset=latin-1", 415,
         "unsupported_media_type", "text/csv"),
    ],
)  # fmt: skip
def test_each_rule_is_one_safe_error(body, content_type, status, code, names):
    error = read(body, content_type or "application/json")
    assert isinstance(error, ApiError), error
    assert (error.status, error.code) == (status, code), error.message
    assert names in error.message and MARKER not in error.message
    assert error.case and "\n" not in error.message


def test_unknown_categories_pass_when_the_model_accepts_them():
    accepting = InputContract.from_dict({**CONTRACT.to_dict(), "unknown_categories": "accept"})
    assert not isinstance(read(raw("term", '"90"'), contract=accepting), ApiError)
    assert read(raw("term", '""'), contract=accepting).code == "null_in_required_column"


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def test_parquet_when_enabled_is_capped_from_its_footer():
    content_type = "application/vnd.apache.parquet"
    one = parquet(pd.DataFrame([ROW]))
    accepted = read(one, content_type, accept_parquet=True)
    assert json.loads(accepted.body)["dataframe_split"]["data"] == [list(ROW.values())]
    many = parquet(pd.DataFrame([ROW] * 6))
    assert read(many, content_type, accept_parquet=True).code == "too_many_rows"
    assert read(b"PAR1 not parquet", content_type, accept_parquet=True).code == "invalid_parquet"
    # pandas writes NaN as a parquet null; a float NaN written as such is not finite.
    null = parquet(pd.DataFrame([{**ROW, "income": float("nan")}]))
    assert read(null, content_type, accept_parquet=True).code == "null_in_required_column"
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({**{k: [v] for k, v in ROW.items()},
                      "income": pa.array([float("nan")], from_pandas=False)})  # fmt: skip
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    assert read(buffer.getvalue(), content_type, accept_parquet=True).code == "not_finite"


def test_a_model_without_a_contract_gets_only_the_cap_and_the_types():
    loose = settings()
    assert (
        precheck_without_contract(
            json.dumps(records(*[{}] * 5)).encode(), "application/json", loose
        )
        is None
    )
    assert (
        precheck_without_contract(
            json.dumps(records(*[{}] * 6)).encode(), "application/json", loose
        ).code
        == "too_many_rows"
    )
    assert precheck_without_contract(b"a\n" * 10, "text/csv", loose).code == "too_many_rows"
    assert precheck_without_contract(b"not json", "application/json", loose) is None
    assert precheck_without_contract(b"x", "application/vnd.apache.parquet", loose).status == 415


@pytest.mark.parametrize(
    "document",
    [
        {"columns": []},
        {"columns": [{"name": "a", "type": "double"}]},
        {"columns": [{"name": "a", "type": "text", "nullable": True}]},
        {"columns": [{"name": "a", "type": "double", "nullable": True, "minimum": 2,
                      "maximum": 1}]},
        {"columns": [{"name": "a", "type": "double", "nullable": True, "categories": ["x"]}]},
        {"columns": [{"name": "a", "type": "string", "nullable": True}] * 2},
        {"unknown_categories": "maybe",
         "columns": [{"name": "a", "type": "string", "nullable": True}]},
        {"version": 2, "columns": [{"name": "a", "type": "string", "nullable": True}]},
    ],
)  # fmt: skip
def test_a_contract_that_cannot_be_enforced_is_refused(document):
    with pytest.raises(ContractError):
        InputContract.from_dict(document)


def test_a_contract_round_trips():
    assert InputContract.from_dict(CONTRACT.to_dict()) == CONTRACT
