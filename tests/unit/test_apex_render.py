"""The generator: the committed rendering is current; other columns give matching artifacts."""

import json
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from apex import render as renderer
from apex.render import RenderError, load_signature_file, render, write_all
from training.data import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SIGNATURE = ROOT / "apex" / "default-signature.json"
GENERATED = ROOT / "apex" / "generated"
PLACEHOLDER_URL = "https://ml.example.com"

OTHER_SIGNATURE = {
    "model_name": "churn",
    "inputs": [
        {"name": "age", "type": "long", "required": True},
        {"name": "monthly_spend", "type": "double", "required": False},
        {"name": "City Name", "type": "string", "required": False},
        {"name": "plan", "type": "string", "required": True},
        {"name": "is_member", "type": "boolean", "required": True},
    ],
    "outputs": [
        {"name": "probability", "type": "double", "required": True},
        {"name": "label", "type": "long", "required": True},
    ],
    "input_example": None,
}


@pytest.fixture(scope="module")
def default_files():
    return render(load_signature_file(DEFAULT_SIGNATURE), PLACEHOLDER_URL)


@pytest.fixture(scope="module")
def other_files():
    return render(OTHER_SIGNATURE, "https://ml.test.example/")


def test_committed_rendering_is_current(default_files):
    committed = {path.name for path in GENERATED.iterdir()}
    assert committed == set(default_files), "run: make apex (or python -m apex.render ...)"
    for name, text in default_files.items():
        assert (GENERATED / name).read_text(encoding="utf-8") == text, (
            f"apex/generated/{name} is stale; render it again"
        )


def test_default_signature_is_the_documented_contract():
    signature = load_signature_file(DEFAULT_SIGNATURE)
    columns = {spec["name"]: spec["type"] for spec in signature["inputs"]}
    assert columns == {
        **dict.fromkeys(NUMERIC_COLUMNS, "double"),
        **dict.fromkeys(CATEGORICAL_COLUMNS, "string"),
    }
    assert [(o["name"], o["type"]) for o in signature["outputs"]] == [
        ("probability", "double"),
        ("label", "long"),
    ]


@pytest.mark.parametrize("which", ["default_files", "other_files"])
def test_openapi_document_is_valid(request, which):
    document = json.loads(request.getfixturevalue(which)["openapi.json"])
    validate(document)
    security = document["components"]["securitySchemes"]["ApiKey"]
    assert security == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    responses = document["paths"]["/invocations"]["post"]["responses"]
    assert set(responses) == {"200", "400", "401", "413", "415", "429", "500", "503", "504"}
    error_responses = document["components"]["responses"]
    assert "WWW-Authenticate" in error_responses["Unauthorized"]["headers"]
    assert "Retry-After" in error_responses["RateLimited"]["headers"]
    assert "Retry-After" in error_responses["Unavailable"]["headers"]
    assert set(document["components"]["schemas"]["Error"]["required"]) == {"error", "request_id"}


def test_openapi_types_the_default_columns(default_files):
    document = json.loads(default_files["openapi.json"])
    assert document["servers"] == [{"url": PLACEHOLDER_URL}]
    record = document["components"]["schemas"]["Record"]
    # From the model's input contract: bounds, null only where allowed, the categories.
    assert record["properties"]["annual_income"] == {
        "type": "number",
        "format": "double",
        "minimum": 0.0,
    }
    assert record["properties"]["revolving_utilization"] == {
        "type": "number",
        "format": "double",
        "minimum": 0.0,
        "maximum": 1.0,
        "nullable": True,
    }
    assert record["properties"]["term"] == {"type": "string", "enum": ["36 months", "60 months"]}
    assert len(record["required"]) == 11
    split = document["components"]["schemas"]["SplitRequest"]["properties"]["dataframe_split"]
    assert split["properties"]["columns"]["items"]["enum"] == record["required"]
    prediction = document["components"]["schemas"]["Prediction"]
    assert prediction["required"] == ["probability", "label"]
    reasons = prediction["properties"].pop("reasons")
    assert prediction["properties"] == {
        "probability": {"type": "number", "format": "double"},
        "label": {"type": "integer", "format": "int64"},
    }
    # Reason codes: optional on a prediction, asked for with params on either body.
    assert reasons["items"] == {"$ref": "#/components/schemas/Reason"}
    assert reasons["maxItems"] == 11
    headers = document["paths"]["/invocations"]["post"]["responses"]["200"]["headers"]
    assert {"X-Model-Name", "X-Model-Version", "X-Request-ID"} <= set(headers)


def test_other_columns_give_matching_package_items_and_openapi(other_files):
    spec, body = other_files["credit_risk_api.pks"], other_files["credit_risk_api.pkb"]
    for ident in ("age", "monthly_spend", "city_name", "plan", "is_member"):
        assert f"in_{ident} in varchar2" in spec
    assert "age number," in spec and "city_name varchar2(4000 char)," in spec
    assert "is_member boolean" in spec
    assert "annual_income" not in spec + body
    for item in ("P1_AGE", "P1_MONTHLY_SPEND", "P1_CITY_NAME", "P1_PLAN", "P1_IS_MEMBER"):
        assert f"'{item}'" in body
        assert f"`{item}`" in other_files["rest-data-source.md"]
    assert "'{\"age\":'" in body and "',\"City Name\":'" in body
    record = json.loads(other_files["openapi.json"])["components"]["schemas"]["Record"]
    assert record["required"] == ["age", "monthly_spend", "City Name", "plan", "is_member"]
    assert record["properties"]["age"] == {"type": "integer", "format": "int64"}
    assert record["properties"]["City Name"] == {"type": "string", "nullable": True}
    assert record["properties"]["is_member"] == {"type": "boolean"}
    assert json.loads(other_files["openapi.json"])["servers"] == [
        {"url": "https://ml.test.example"}
    ]


def test_page_number_renames_the_items():
    files = render(OTHER_SIGNATURE, PLACEHOLDER_URL, page=12)
    assert (
        "'P12_AGE'" in files["credit_risk_api.pkb"] and "P1_AGE" not in files["rest-data-source.md"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gateway_url": "http://ml.example.com"}, "must be an https:// URL"),
        ({"gateway_url": "https://ml.example.com/?key=1"}, "query string"),
        ({"inputs": [{"type": "double"}]}, "unnamed input"),
        ({"inputs": [{"name": "photo", "type": "binary"}]}, "column 'photo' has type 'binary'"),
        ({"inputs": [{"name": "a b", "type": "double"}, {"name": "a_b", "type": "double"}]}, "a_b"),
        ({"outputs": []}, "has no outputs"),
    ],
)
def test_unusable_input_is_refused(change, message):
    signature = {**OTHER_SIGNATURE, **{k: v for k, v in change.items() if k != "gateway_url"}}
    with pytest.raises(RenderError, match=message):
        render(signature, change.get("gateway_url", PLACEHOLDER_URL))


def test_cli_renders_from_a_signature_file(tmp_path, capsys):
    signature_file = tmp_path / "signature.json"
    signature_file.write_text(json.dumps(OTHER_SIGNATURE))
    out = tmp_path / "generated"
    code = renderer.main(
        [
            "--signature-file",
            str(signature_file),
            "--gateway-url",
            PLACEHOLDER_URL,
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(render(OTHER_SIGNATURE, PLACEHOLDER_URL))
    assert "rendered 5 files for churn" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{not json", "is not JSON"), ("{}", "has no 'inputs'")],
)
def test_cli_bad_signature_file_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    signature_file = tmp_path / "signature.json"
    if content is not None:
        signature_file.write_text(content)
    out = tmp_path / "generated"
    code = renderer.main(["--signature-file", str(signature_file), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("apex.render: error: ") and message in err
    assert err.count("\n") == 1
    assert not out.exists(), "nothing is written when the input is bad"


def test_write_all_replaces_the_folder_whole(tmp_path):
    out = tmp_path / "generated"
    out.mkdir()
    (out / "stale.sql").write_text("old")
    write_all({"a.txt": "A", "b.txt": "B"}, out)
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generated"], "no temp folder left"
