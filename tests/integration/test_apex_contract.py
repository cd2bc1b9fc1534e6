"""Contract: the request credit_risk_api and the REST Data Source send, through the real gateway.

The body is built from page-item strings by apex/body.py, the rules the generated PL/SQL
package follows character for character; the headers are the ones the package sets (the
Web Credential adds X-API-Key). The answer is read with the JSON paths the scripts use
(``$.predictions[i].probability`` / ``.label`` and the ``X-Model-Version`` header) and compared
with the model loaded straight from the registry. TLS is verified against the dev CA.

Needs the ``gateway_stack`` fixture (nginx + model server on 127.0.0.1) from
tests/integration/conftest.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import requests

from apex.body import BodyError, request_body
from apex.render import columns_from_spec, load_signature_file

ROOT = Path(__file__).resolve().parents[2]
SIGNATURE = load_signature_file(ROOT / "apex" / "default-signature.json")
# With the model's input contract, as the generated package has them (nullable from it).
COLUMNS = columns_from_spec(SIGNATURE["inputs"], "inputs", SIGNATURE["contract"])
# What credit_risk_api.invoke sets with apex_web_service.set_request_headers.
PACKAGE_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}

# Page items as APEX holds them: text, empty for "not given".
APPLICANTS = [
    {
        "annual_income": "72000",
        "loan_amount": "15000.50",
        "employment_length_years": "",
        "debt_to_income": "18.5",
        "num_delinquencies": "0",
        "credit_history_years": "7",
        "revolving_utilization": "0.42",
        "num_open_accounts": "9",
        "term": "36 months",
        "home_ownership": "RENT",
        "loan_purpose": "debt_consolidation",
    },
    {
        "annual_income": "+031000",
        "loan_amount": "28000",
        "employment_length_years": "0",
        "debt_to_income": "41.25",
        "num_delinquencies": "3",
        "credit_history_years": "1.5",
        "revolving_utilization": "0.97",
        "num_open_accounts": "",
        "term": "60 months",
        "home_ownership": "OTHER",
        "loan_purpose": "small_business",
    },
    {
        "annual_income": "1.2e5",
        "loan_amount": "5000",
        "employment_length_years": "12",
        "debt_to_income": "  ",
        "num_delinquencies": "0",
        "credit_history_years": "22",
        "revolving_utilization": "",
        "num_open_accounts": "14",
        "term": "36 months",
        "home_ownership": "OWN",
        "loan_purpose": "car",
    },
]


def json_path(document, path: str):
    """Evaluate the simple ``$.a[0].b`` paths that json_value and JSON_OBJECT_T use."""
    value = document
    for name, index in re.findall(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]", path.removeprefix("$")):
        value = value[name] if name else value[int(index)]
    return value


def post(stack, body: str, key: str | None = "valid", **headers) -> requests.Response:
    sent = dict(PACKAGE_HEADERS)
    if key == "valid":
        sent["X-API-Key"] = stack.api_key
    elif key is not None:
        sent["X-API-Key"] = key
    sent.update(headers)
    return requests.post(
        f"{stack.url}/invocations",
        data=body.encode("ascii"),  # the package's bodies are pure ASCII by construction
        headers=sent,
        verify=stack.ca_cert,
        timeout=60,
    )


def model_predictions(stack, body: str) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(stack.tracking_uri)
    model = mlflow.pyfunc.load_model(stack.model_uri)
    frame = pd.DataFrame(json.loads(body)["dataframe_records"])
    for column in COLUMNS:
        if column.type == "double":
            frame[column.name] = frame[column.name].astype("float64")
    return model.predict(frame)


def assert_error_shape(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert re.fullmatch(r"[a-z][a-z0-9_]*", json_path(document, "$.error.code"))
    assert json_path(document, "$.error.message")
    assert document["request_id"]
    return document


def test_many_rows_in_one_call_match_the_model(gateway_stack):
    body = request_body(COLUMNS, APPLICANTS)
    response = post(gateway_stack, body)
    assert response.status_code == 200, response.text
    document = response.json()
    expected = model_predictions(gateway_stack, body)
    assert len(document["predictions"]) == len(APPLICANTS)
    for index in range(len(APPLICANTS)):
        probability = json_path(document, f"$.predictions[{index}].probability")
        label = json_path(document, f"$.predictions[{index}].label")
        assert probability == pytest.approx(expected["probability"][index], abs=1e-6)
        assert label == int(expected["label"][index])
    version = response.headers["X-Model-Version"]
    assert version.isdigit()
    pinned = re.fullmatch(r"models:/[^/@]+/(\d+)", gateway_stack.model_uri)
    if pinned:
        assert version == pinned.group(1)
    assert response.headers["X-Model-Name"]
    assert response.headers["X-Request-ID"]


def test_one_applicant_is_the_rest_source_payload(gateway_stack):
    # request_body_from_items builds exactly this for the PAYLOAD parameter.
    body = request_body(COLUMNS, APPLICANTS[2:])
    response = post(gateway_stack, body)
    assert response.status_code == 200, response.text
    expected = model_predictions(gateway_stack, body)
    probability = json_path(response.json(), "$.predictions[0].probability")
    assert probability == pytest.approx(expected["probability"][0], abs=1e-6)


@pytest.mark.parametrize("text", ['small "business" C:\\shop', "Zürich café – 日本 😀"])
def test_escaped_text_arrives_intact_and_is_held_to_the_categories(gateway_stack, text):
    # The package's escaping gives valid JSON (not invalid_json) that decodes to the text
    # itself: the server names the column and the rule, a category outside the contract.
    body = request_body(COLUMNS, [{**APPLICANTS[0], "loan_purpose": text}])
    assert json.loads(body)["dataframe_records"][0]["loan_purpose"] == text
    document = assert_error_shape(post(gateway_stack, body), 400)
    assert document["error"]["code"] == "unknown_category"
    assert "loan_purpose" in document["error"]["message"]


def test_an_empty_item_of_a_required_number_is_refused_before_anything_is_sent():
    with pytest.raises(BodyError, match=r"^P1_ANNUAL_INCOME: a value is required"):
        request_body(COLUMNS, [{**APPLICANTS[0], "annual_income": ""}])


def test_decimal_comma_is_refused_before_anything_is_sent():
    with pytest.raises(BodyError, match=r'^P1_ANNUAL_INCOME: "1234,5" has a comma'):
        request_body(COLUMNS, [{**APPLICANTS[0], "annual_income": "1234,5"}])


@pytest.mark.parametrize("key", [None, "not-a-valid-key"], ids=["no-key", "unknown-key"])
def test_missing_or_unknown_key_is_401(gateway_stack, key):
    response = post(gateway_stack, request_body(COLUMNS, APPLICANTS[:1]), key=key)
    assert_error_shape(response, 401)
    assert "WWW-Authenticate" in response.headers


def test_wrong_content_type_is_415(gateway_stack):
    response = post(
        gateway_stack, request_body(COLUMNS, APPLICANTS[:1]), **{"Content-Type": "text/plain"}
    )
    assert_error_shape(response, 415)


def test_body_over_8_mb_is_413(gateway_stack):
    rows = APPLICANTS * (9 * 1024 * 1024 // len(request_body(COLUMNS, APPLICANTS)) + 1)
    body = request_body(COLUMNS, rows)
    assert len(body) > 8 * 1024 * 1024
    assert_error_shape(post(gateway_stack, body), 413)


def test_text_in_a_number_column_is_400(gateway_stack):
    record = json.loads(request_body(COLUMNS, APPLICANTS[:1]))
    record["dataframe_records"][0]["annual_income"] = "a lot"
    assert_error_shape(post(gateway_stack, json.dumps(record)), 400)


def test_tls_is_verified_against_the_gateway_ca(gateway_stack):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{gateway_stack.url}/model", timeout=10, verify=True)


def get_with_key(stack, path: str) -> requests.Response:
    return requests.get(
        f"{stack.url}{path}", headers={"X-API-Key": stack.api_key}, verify=stack.ca_cert, timeout=30
    )


def test_model_endpoint_names_the_version_and_columns(gateway_stack):
    response = get_with_key(gateway_stack, "/model")
    assert response.status_code == 200, response.text
    info = response.json()
    assert [column["name"] for column in info["inputs"]] == [column.name for column in COLUMNS]
    scored = post(gateway_stack, request_body(COLUMNS, APPLICANTS[:1]))
    assert scored.headers["X-Model-Version"] == str(info["version"])


def test_gateway_serves_the_generated_openapi(gateway_stack):
    response = get_with_key(gateway_stack, "/openapi.json")
    assert response.status_code == 200, response.text
    served = response.json()
    committed = json.loads((ROOT / "apex" / "generated" / "openapi.json").read_text())
    assert served["paths"] == committed["paths"]
    assert served["components"] == committed["components"]


# Reason codes (issue 16): what the kit reads from an answer with reasons, taken from the
# committed kit itself, so a change of the API's fields or of the kit fails here.
PACKAGE_BODY = (ROOT / "apex" / "generated" / "credit_risk_api.pkb").read_text()
PACKAGE_SPEC = (ROOT / "apex" / "generated" / "credit_risk_api.pks").read_text()
REST_SOURCE_STEPS = (ROOT / "apex" / "generated" / "rest-data-source.md").read_text()
MAX_REASONS = int(re.search(r"co_max_reasons\s+constant pls_integer := (\d+);", PACKAGE_SPEC)[1])
# l_reason.get_string('code') ... in parse_scores: the field and the JSON type it reads.
PACKAGE_REASON_FIELDS = dict(
    (field, kind)
    for kind, field in re.findall(r"l_reason\.get_(string|number)\('(\w+)'\)", PACKAGE_BODY)
)
# The REST Data Source steps' json_table over P1_REASONS: (column type, JSON path).
REPORT_COLUMNS = re.findall(
    r"(varchar2\((\d+) char\)|number)\s+path '\$\.(\w+)'",
    REST_SOURCE_STEPS.split("json_table(:P1_REASONS", 1)[1].split("```", 1)[0],
)


def reasons_of(document, index: int) -> list[dict]:
    return json_path(document, f"$.predictions[{index}].reasons")


def test_the_kit_reads_the_four_reason_fields():
    # Guards the parsing above: an empty match would make the tests below vacuous.
    assert PACKAGE_REASON_FIELDS == {
        "code": "string",
        "column": "string",
        "text": "string",
        "contribution": "number",
    }
    assert {path for _, _, path in REPORT_COLUMNS} == set(PACKAGE_REASON_FIELDS)


def test_reasons_asked_by_the_package_come_with_the_same_scores(gateway_stack):
    plain = post(gateway_stack, request_body(COLUMNS, APPLICANTS))
    asked = post(gateway_stack, request_body(COLUMNS, APPLICANTS, reasons=4))
    assert plain.status_code == asked.status_code == 200, asked.text
    assert '"params"' in request_body(COLUMNS, APPLICANTS, reasons=4)
    plain_document, document = plain.json(), asked.json()
    table = {
        entry["column"]: entry
        for entry in get_with_key(gateway_stack, "/model").json()["reason_codes"]
    }
    for index in range(len(APPLICANTS)):
        assert "reasons" not in plain_document["predictions"][index]
        for field in ("probability", "label"):
            path = f"$.predictions[{index}].{field}"
            assert json_path(document, path) == json_path(plain_document, path)
        reasons = reasons_of(document, index)
        assert len(reasons) <= 4
        for reason in reasons:
            # The fields parse_scores reads, with the JSON types it reads them as.
            assert set(reason) == set(PACKAGE_REASON_FIELDS)
            for field, kind in PACKAGE_REASON_FIELDS.items():
                expected_type = str if kind == "string" else (int, float)
                assert isinstance(reason[field], expected_type), (field, reason)
            # The code and text of the model's reason table for that column (GET /model).
            assert reason["code"] == table[reason["column"]]["code"]
            assert reason["text"] == table[reason["column"]]["text"]
            assert reason["contribution"] > 0  # only what raised the risk is a reason
            # The report's json_table columns hold every value (varchar2 sizes).
            for _sql_type, size, path in REPORT_COLUMNS:
                if size:
                    assert len(reason[path]) <= int(size), (path, reason[path])
        contributions = [reason["contribution"] for reason in reasons]
        assert contributions == sorted(contributions, reverse=True)
    # The risky second applicant (DTI 41, three delinquencies, 97 % utilisation) has reasons.
    assert reasons_of(document, 1)


def test_the_packages_largest_reason_count_is_accepted_and_one_more_is_400(gateway_stack):
    answer = post(gateway_stack, request_body(COLUMNS, APPLICANTS[:1], reasons=MAX_REASONS))
    assert answer.status_code == 200, answer.text
    assert len(reasons_of(answer.json(), 0)) <= MAX_REASONS
    document = assert_error_shape(
        post(gateway_stack, request_body(COLUMNS, APPLICANTS[:1], reasons=MAX_REASONS + 1)), 400
    )
    assert "reasons" in document["error"]["message"]
