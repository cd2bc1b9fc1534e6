"""Reason codes over HTTP, against real processes: a real mlflow server holding both
classifiers (trained by the project's CLI), MLflow's own scoring server and the project's
model server behind the nginx gateway.

The reasons themselves are asked for from MLflow's own scoring server (`mlflow models serve`):
the project's server passes checked `params` through its batcher (serving/batching.py), and
one test asks the gateway for reasons; `GET /model` lists the reason codes through it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from bench.processes import start_mlflow_serve
from training.data import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS
from training.explain import read_reason_table

TABLE = read_reason_table(None, [*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS])
# Very high debt-to-income and recent delinquencies; shared with tests/unit/test_explain.py.
RISKY = json.loads((Path(__file__).parents[1] / "testdata" / "risky-applicant.json").read_text())


@pytest.fixture(scope="module", params=["1", "2"], ids=["hgb", "logreg"])
def served(request, trained_registry, tmp_path_factory):
    """(version, MLflow's scoring server for it, the model loaded in-process, test rows)."""
    import mlflow

    version = request.param
    uri = f"models:/{trained_registry.MODEL}/{version}"
    mlflow.set_tracking_uri(trained_registry.uri)
    model = mlflow.pyfunc.load_model(uri)
    run_id = trained_registry.client.get_model_version(trained_registry.MODEL, version).run_id
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="evaluation/test.parquet", tracking_uri=trained_registry.uri
    )
    rows = pd.read_parquet(path).drop(columns=["defaulted"]).head(300)
    # MLflow's own scoring server, started as the benchmark starts it (bench/processes.py).
    server = start_mlflow_serve(tmp_path_factory.mktemp("serve"), trained_registry.uri, version)
    yield version, server, model, rows
    server.stop()


def _invocations(server, body: dict) -> requests.Response:
    return requests.post(server.url, json=body, timeout=120)


def _split(rows: pd.DataFrame) -> dict:
    data = rows.astype(object).where(rows.notna(), None).to_numpy().tolist()
    return {"dataframe_split": {"columns": list(rows.columns), "data": data}}


def test_registered_model_is_additive_over_hundreds_of_rows(served):
    """Contributions + base value = the classifier's log-odds, for every explained row of
    the model as the registry serves it."""
    _, _, model, rows = served
    # The signature declares the param, so MLflow's own server accepts and types it.
    assert model.metadata.signature.params.to_dict() == [
        {"name": "reasons", "type": "integer", "default": 0, "shape": None}
    ]
    python_model = model.unwrap_python_model()
    pipeline, explainer = python_model.pipeline, python_model.explainer
    features = explainer_features(pipeline, rows)
    contributions = explainer.contributions(features)
    margin = pipeline[-1].decision_function(features)
    assert len(rows) == 300
    np.testing.assert_allclose(contributions.sum(axis=1) + explainer.base_value, margin, atol=1e-9)


def explainer_features(pipeline, rows):
    from training.credit_model import _dense

    return _dense(pipeline[:-1].transform(rows.reindex(columns=pipeline.feature_names_in_)))


def test_reasons_over_http_match_the_model_and_leave_the_score_alone(served):
    _, server, model, rows = served
    plain = _invocations(server, _split(rows))
    asked = _invocations(server, {**_split(rows), "params": {"reasons": 4}})
    assert plain.status_code == 200 and asked.status_code == 200, asked.text
    plain_rows, asked_rows = plain.json()["predictions"], asked.json()["predictions"]
    assert all("reasons" not in row for row in plain_rows), "reasons are off by default"
    expected = model.predict(rows, params={"reasons": 4})
    for without, with_reasons, reasons in zip(
        plain_rows, asked_rows, expected["reasons"], strict=True
    ):
        assert with_reasons["probability"] == without["probability"]
        assert with_reasons["label"] == without["label"]
        assert with_reasons["reasons"] == reasons
        assert len(reasons) <= 4
        values = [reason["contribution"] for reason in reasons]
        assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
        for reason in reasons:
            assert TABLE[reason["column"]] == {"code": reason["code"], "text": reason["text"]}
    declined = [row for row in asked_rows if row["label"] == 1]
    assert declined and all(row["reasons"] for row in declined)


def test_constructed_applicant_gets_debt_and_delinquencies_named(served):
    _, server, _, _ = served
    answer = _invocations(server, {"dataframe_records": [RISKY], "params": {"reasons": 4}})
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    assert prediction["label"] == 1
    named = [reason["column"] for reason in prediction["reasons"]]
    assert set(named[:2]) == {"debt_to_income", "num_delinquencies"}, named


@pytest.mark.parametrize("value", [-1, 12, 1000, "four", 2.5])
def test_bad_reasons_param_is_a_400_naming_it(served, value):
    _, server, _, _ = served
    answer = _invocations(server, {"dataframe_records": [RISKY], "params": {"reasons": value}})
    assert answer.status_code == 400, answer.text
    assert "reasons" in answer.json()["message"]


def _gateway(stack, path, **kwargs):
    headers = {"X-API-Key": stack.api_key}
    method = "POST" if "json" in kwargs else "GET"
    return requests.request(
        method, f"{stack.url}{path}", headers=headers, verify=stack.ca_cert, timeout=60, **kwargs
    )


def test_model_info_lists_the_reason_codes_through_the_gateway(gateway_stack):
    answer = _gateway(gateway_stack, "/model")
    assert answer.status_code == 200, answer.text
    codes = answer.json()["reason_codes"]
    assert codes == [{"column": column, **entry} for column, entry in TABLE.items()]


def test_reasons_through_the_gateway(gateway_stack):
    answer = _gateway(
        gateway_stack, "/invocations", json={"dataframe_records": [RISKY], "params": {"reasons": 4}}
    )
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    assert {"debt_to_income", "num_delinquencies"} <= {r["column"] for r in prediction["reasons"]}


@pytest.mark.parametrize("value", [-1, 12, 1000, "four", 2.5, True])
def test_bad_reasons_param_through_the_gateway_is_a_400_naming_it(gateway_stack, value):
    # The project's own server behind the gateway (the test above is MLflow's server): the
    # type is checked on intake, the range by the model; both name the param, never the value.
    answer = _gateway(
        gateway_stack,
        "/invocations",
        json={"dataframe_records": [RISKY], "params": {"reasons": value}},
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_params" and "'reasons'" in error["message"], error
    assert str(value) not in error["message"].replace("from 0 to 11", "")
