"""serving/api_errors.py: the one table of the server's errors, and what is generated from it."""

import json
import re
from pathlib import Path

import pytest

from apex.openapi import RESPONSES
from apex.render import load_signature_file, render
from serving import api_errors
from serving.api_errors import ERRORS, api_error

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted(ERRORS)


def sample_fields(case: str) -> dict:
    """A value for every field of a case's message (numbers where the message formats one)."""
    return {
        name: 1 if name in ("count", "limit", "timeout") else "x" for name in ERRORS[case].fields
    }


@pytest.mark.parametrize("case", CASES)
def test_each_case_is_a_well_formed_error(case):
    spec = ERRORS[case]
    assert 400 <= spec.status <= 599
    assert re.fullmatch(r"[a-z][a-z0-9_]*", spec.code)
    error = api_error(case, **sample_fields(case))
    assert not error.message[0].isupper() and not error.message.endswith("."), "house wording"
    assert (error.status, error.code) == (spec.status, spec.code)
    assert "{" not in error.message and "}" not in error.message, "a field was left unfilled"
    assert error.body("rid") == {
        "error": {"code": spec.code, "message": error.message},
        "request_id": "rid",
    }


@pytest.mark.parametrize("case", [case for case in CASES if ERRORS[case].fields])
def test_a_missing_field_fails_loudly(case):
    with pytest.raises(KeyError):
        api_error(case)


def test_a_code_always_has_one_status_and_each_message_one_row():
    status_of_code: dict[str, set[int]] = {}
    for spec in ERRORS.values():
        status_of_code.setdefault(spec.code, set()).add(spec.status)
    assert {code: statuses for code, statuses in status_of_code.items() if len(statuses) > 1} == {}
    pairs = [(spec.code, spec.message) for spec in ERRORS.values()]
    assert len(pairs) == len(set(pairs)), "two rows say the same thing: keep one"


def test_every_error_of_the_server_comes_from_the_table():
    """No `ApiError(` built by hand outside serving/api_errors.py."""
    offenders = [
        f"{path.name}:{number}"
        for path in sorted((ROOT / "serving").glob("*.py"))
        if path.name != "api_errors.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "ApiError(" in line
    ]
    assert offenders == []


def test_readme_error_table_is_current():
    readme = api_errors.README.read_text()
    assert api_errors.error_table_markdown() in readme, (
        "serving/README.md's error table is stale; run: python -m serving.api_errors --write"
    )
    assert api_errors.readme_with_error_table(readme) == readme


@pytest.fixture(scope="module")
def openapi():
    signature = load_signature_file(ROOT / "apex" / "default-signature.json")
    return json.loads(render(signature, "https://ml.example.com")["openapi.json"])


def test_openapi_lists_every_status_and_code_of_the_table(openapi):
    responses = openapi["components"]["responses"]
    for spec in ERRORS.values():
        name = RESPONSES[spec.status][0]
        assert name in responses, f"{spec.status} is not in the OpenAPI document"
        assert f"`{spec.code}`" in responses[name]["description"]
    invocations = openapi["paths"]["/invocations"]["post"]["responses"]
    for spec in ERRORS.values():
        if spec.on_invocations:
            assert str(spec.status) in invocations
