"""The request-body rules shared by apex/body.py and the generated PL/SQL package."""

import json

import pytest

from apex.body import BodyError, Column, json_string, request_body, value_json

DOUBLE = Column("annual_income", "double", required=True)
OPTIONAL_DOUBLE = Column("debt_to_income", "double", required=False)
LONG = Column("num_children", "long", required=True)
TEXT = Column("loan_purpose", "string", required=True)
OPTIONAL_TEXT = Column("city", "string", required=False)
FLAG = Column("is_member", "boolean", required=False)


@pytest.mark.parametrize(
    "text",
    [
        'O\'Brien said "yes"',
        "C:\\temp\\new",
        "Zürich, Ærø, São Paulo",
        "日本語のテキスト",
        "emoji 😀 outside the BMP",
        "tab\tnew line\ncarriage return\r nul\x00 bell\x07",
        "</script>&amp;",
        "",
    ],
    ids=["quotes", "backslashes", "latin", "cjk", "astral", "control", "markup", "empty"],
)
def test_strings_round_trip_through_json_and_stay_ascii(text):
    encoded = json_string(text)
    assert encoded.isascii()
    assert json.loads(encoded) == text


def test_string_escapes_are_written_as_asciistr_does():
    # asciistr gives \00FC for ü and \005C for a backslash; the package turns \ into \u.
    assert json_string('ü\\"') == '"\\u00FC\\u005C\\""'
    assert json_string("😀") == '"\\uD83D\\uDE00"'
    assert json_string("\n") == '"\\u000A"'


@pytest.mark.parametrize(
    ("column", "raw"),
    [(DOUBLE, None), (DOUBLE, ""), (DOUBLE, "   "), (OPTIONAL_TEXT, ""), (FLAG, None)],
)
def test_empty_items_are_null(column, raw):
    assert value_json(column, raw, "P1_X") == "null"


@pytest.mark.parametrize("column", [TEXT, LONG])
def test_empty_required_text_or_whole_number_is_refused_naming_the_item(column):
    with pytest.raises(BodyError, match=r"^P1_X: a value is required$"):
        value_json(column, " ", "P1_X")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("72000", "72000"),
        ("72000.50", "72000.50"),
        (" 42 ", "42"),
        ("+5", "5"),
        ("007.5", "7.5"),
        ("-0.25", "-0.25"),
        ("-00", "-0"),
        ("1.5e3", "1.5e3"),
        ("2E-4", "2E-4"),
    ],
)
def test_numbers_with_a_dot_become_json_numbers(raw, expected):
    text = value_json(DOUBLE, raw, "P1_ANNUAL_INCOME")
    assert text == expected
    assert json.loads(text) == float(raw)


@pytest.mark.parametrize("raw", ["1234,5", "72,000", "1.234,56"])
def test_decimal_comma_is_refused_naming_the_item(raw):
    with pytest.raises(BodyError) as caught:
        value_json(DOUBLE, raw, "P1_ANNUAL_INCOME")
    message = str(caught.value)
    assert message.startswith(f'P1_ANNUAL_INCOME: "{raw}" has a comma')
    assert "dot" in message and "1234.5" in message


@pytest.mark.parametrize("raw", ["abc", ".5", "5.", "1 000", "0x10", "NaN", "Infinity", "١٢"])
def test_other_non_numbers_are_refused(raw):
    with pytest.raises(BodyError, match=r"^P1_ANNUAL_INCOME: .* is not a number"):
        value_json(DOUBLE, raw, "P1_ANNUAL_INCOME")


def test_whole_numbers_refuse_fractions_and_booleans_take_true_or_false():
    with pytest.raises(BodyError, match="is not a whole number"):
        value_json(LONG, "2.5", "P1_NUM_CHILDREN")
    assert value_json(LONG, "03", "P1_NUM_CHILDREN") == "3"
    assert value_json(FLAG, "TRUE", "P1_IS_MEMBER") == "true"
    with pytest.raises(BodyError, match="is not true or false"):
        value_json(FLAG, "yes", "P1_IS_MEMBER")


def test_body_holds_every_column_of_every_row_in_order():
    columns = [DOUBLE, OPTIONAL_DOUBLE, TEXT]
    rows = [
        {"annual_income": "72000.0", "debt_to_income": "", "loan_purpose": 'car "new"'},
        {"annual_income": "1e5", "loan_purpose": "médical"},
    ]
    body = request_body(columns, rows)
    assert body.isascii()
    assert json.loads(body) == {
        "dataframe_records": [
            {"annual_income": 72000.0, "debt_to_income": None, "loan_purpose": 'car "new"'},
            {"annual_income": 100000.0, "debt_to_income": None, "loan_purpose": "médical"},
        ]
    }
    assert list(json.loads(body)["dataframe_records"][0]) == [c.name for c in columns]


def test_page_items_are_named_after_the_column():
    assert DOUBLE.item(1) == "P1_ANNUAL_INCOME"
    assert Column("City Name", "string").item(7) == "P7_CITY_NAME"
    assert Column("date", "string").ident == "date_"
    assert Column("date", "string").item(1) == "P1_DATE"
    assert Column("1st", "double").ident == "c_1st"


def test_reasons_add_mlflow_params_and_zero_leaves_the_body_as_before():
    from pathlib import Path

    from apex.body import params_json

    columns = [Column("income", "double"), Column("term", "string")]
    row = {"income": "72000", "term": "36 months"}
    plain = request_body(columns, [row])
    assert request_body(columns, [row], reasons=0) == plain
    with_reasons = request_body(columns, [row], reasons=4)
    assert json.loads(with_reasons) == {**json.loads(plain), "params": {"reasons": 4}}
    assert with_reasons == plain[:-1] + ',"params":{"reasons":4}}'
    with pytest.raises(BodyError, match="below 0"):
        params_json(-1)
    # The PL/SQL package writes the same text (apex/templates/credit_risk_api.pkb.j2).
    package = Path(__file__).resolve().parents[2] / "apex" / "generated" / "credit_risk_api.pkb"
    assert """',"params":{"reasons":' || to_char(in_reason_count""" in package.read_text()
