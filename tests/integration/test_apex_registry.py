"""Render the APEX kit from a real registry: a model trained on other columns gets its own kit."""

import json

import numpy as np
import pandas as pd
import pytest
from openapi_spec_validator import validate

from stack.services import free_port, run_cli

MODEL = "churn-risk"


@pytest.fixture
def churn_csv(tmp_path):
    rng = np.random.default_rng(7)
    rows = 1200
    frame = pd.DataFrame(
        {
            "tenure_months": rng.integers(1, 72, rows).astype(float),
            "monthly_spend": rng.normal(60, 20, rows).round(2),
            "region": rng.choice(["north", "south", "east", "west"], rows),
        }
    )
    logit = -1 + 0.03 * (frame["monthly_spend"] - 60) - 0.04 * (frame["tenure_months"] - 36)
    frame["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    path = tmp_path / "churn.csv"
    frame.to_csv(path, index=False)
    # The data's reason table: a user's file needs its own (training/README.md).
    (tmp_path / "churn-reasons.yaml").write_text(
        "columns:\n"
        "  tenure_months: {code: C01, text: Short time as a customer}\n"
        "  monthly_spend: {code: C02, text: Monthly spend}\n"
        "  region: {code: C03, text: Region}\n"
    )
    return path


def test_model_with_other_columns_gets_matching_artifacts(mlflow_server, churn_csv, tmp_path):
    uri = mlflow_server.uri
    out = run_cli(
        "training.train",
        *("--model-name", MODEL, "--data", str(churn_csv), "--target", "churned"),
        *("--reasons", str(churn_csv.with_name("churn-reasons.yaml"))),
        tracking_uri=uri,
    )
    assert out.returncode == 0, out.stderr
    out = run_cli("training.promote", "--model-name", MODEL, tracking_uri=uri)
    assert out.returncode == 0, out.stdout + out.stderr

    target = tmp_path / "generated"
    out = run_cli(
        "apex.render",
        *("--tracking-uri", uri, "--model-name", MODEL),
        *("--gateway-url", "https://ml.test.example", "--out", str(target)),
        tracking_uri=uri,
    )
    assert out.returncode == 0, out.stderr
    assert f"rendered 5 files for {MODEL}" in out.stdout

    document = json.loads((target / "openapi.json").read_text())
    validate(document)
    record = document["components"]["schemas"]["Record"]
    assert set(record["required"]) == {"tenure_months", "monthly_spend", "region"}
    assert record["properties"]["region"]["type"] == "string"
    # The contract training inferred from the file: the categories seen, no nulls seen.
    assert record["properties"]["region"]["enum"] == ["east", "north", "south", "west"]
    assert "nullable" not in record["properties"]["monthly_spend"]
    assert record["properties"]["tenure_months"]["type"] == "number"
    assert set(record["example"]) == {"tenure_months", "monthly_spend", "region"}
    spec = (target / "credit_risk_api.pks").read_text()
    assert "in_tenure_months in varchar2" in spec and "in_region in varchar2" in spec
    assert "annual_income" not in spec
    items = (target / "rest-data-source.md").read_text()
    for item in ("P1_TENURE_MONTHS", "P1_MONTHLY_SPEND", "P1_REGION"):
        assert f"`{item}`" in items

    # Saving the signature and rendering offline gives the same files.
    saved = tmp_path / "signature.json"
    out = run_cli(
        "apex.render",
        *("--tracking-uri", uri, "--model-name", MODEL, "--write-signature", str(saved)),
        tracking_uri=uri,
    )
    assert out.returncode == 0, out.stderr
    offline = tmp_path / "offline"
    out = run_cli(
        "apex.render",
        *("--signature-file", str(saved), "--gateway-url", "https://ml.test.example"),
        *("--out", str(offline)),
        tracking_uri=uri,
    )
    assert out.returncode == 0, out.stderr
    for path in target.iterdir():
        assert (offline / path.name).read_text() == path.read_text()


def test_missing_alias_is_one_line_and_nothing_written(mlflow_server, tmp_path):
    target = tmp_path / "generated"
    out = run_cli(
        "apex.render",
        *("--tracking-uri", mlflow_server.uri, "--model-name", "no-such-model"),
        *("--out", str(target)),
        tracking_uri=mlflow_server.uri,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("apex.render: error: ") and "has no alias @champion" in out.stderr
    assert out.stderr.count("\n") == 1
    assert not target.exists()


def test_unreachable_registry_is_one_line(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    out = run_cli(
        "apex.render", "--out", str(tmp_path / "generated"), tracking_uri=dead, timeout=120
    )
    assert out.returncode == 2
    assert "cannot reach the MLflow tracking server" in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1
