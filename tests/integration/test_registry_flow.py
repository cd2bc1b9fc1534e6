"""Train, register, promote, reject and roll back against a real mlflow server.

The same flow runs twice: with the SQLite store of `make up` and with PostgreSQL, the backend
store of compose and Kubernetes.
"""

import json

import pytest
from mlflow import MlflowClient

from stack.services import run_cli

MODEL = "credit-risk"


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request):
    name = "mlflow_server" if request.param == "sqlite" else "postgres_mlflow_server"
    return request.getfixturevalue(name)


def champion_version(client: MlflowClient) -> str:
    return client.get_model_version_by_alias(MODEL, "champion").version


def test_train_promote_reject_and_roll_back(server, tmp_path):
    import mlflow

    out = run_cli("training.train", "--output", str(tmp_path / "v1.json"), tracking_uri=server.uri)
    assert out.returncode == 0, out.stderr
    assert "registered credit-risk version 1" in out.stdout
    result = json.loads((tmp_path / "v1.json").read_text())
    assert result["metrics"]["test_roc_auc"] > 0.7

    client = MlflowClient(server.uri, server.uri)
    version = client.get_model_version(MODEL, "1")
    run = client.get_run(version.run_id)
    assert {"test_roc_auc", "test_pr_auc", "test_log_loss", "test_brier", "test_accuracy"} <= set(
        run.data.metrics
    )
    assert run.data.tags["git_commit"] and len(run.data.tags["data_sha256"]) == 64
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {
        f"plots/{n}.png"
        for n in (
            "roc_curve",
            "calibration_curve",
            "confusion_matrix",
            "feature_importance",
            "reason_contributions",  # the global explanation of the reason codes
        )
    }
    assert run.inputs.dataset_inputs, "the data set is logged with mlflow.data"

    out = run_cli("training.promote", tracking_uri=server.uri)
    assert out.returncode == 0, out.stderr
    assert "v1 is now @champion" in out.stdout
    assert champion_version(client) == "1"

    mlflow.set_tracking_uri(server.uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    signature = model.metadata.signature
    columns = {spec.name: spec.type.name for spec in signature.inputs}
    assert columns["annual_income"] == "double" and columns["term"] == "string"
    example = model.input_example
    assert example is not None and len(example) > 0
    prediction = model.predict(example)
    records = prediction.to_dict(orient="records")
    assert len(records) == len(example)
    for record in records:
        assert set(record) == {"probability", "label"}
        assert 0.0 <= record["probability"] <= 1.0 and record["label"] in (0, 1)

    # A worse candidate (linear model on non-linear data) is rejected and becomes @challenger.
    out = run_cli("training.train", "--classifier", "logreg", tracking_uri=server.uri)
    assert out.returncode == 0, out.stderr
    out = run_cli("training.promote", tracking_uri=server.uri)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "v2 NOT promoted" in out.stdout and "does not beat" in out.stdout
    assert champion_version(client) == "1"
    assert client.get_model_version_by_alias(MODEL, "challenger").version == "2"
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["promotion.decision"] == "rejected"
    assert float(tags["promotion.champion.roc_auc"]) > float(tags["promotion.candidate.roc_auc"])

    # Rollback / pin: --version moves the alias without the metric test, in both directions.
    out = run_cli("training.promote", "--version", "2", tracking_uri=server.uri)
    assert out.returncode == 0, out.stderr
    assert champion_version(client) == "2"
    out = run_cli("training.promote", "--version", "1", tracking_uri=server.uri)
    assert out.returncode == 0, out.stderr
    assert champion_version(client) == "1"
    assert client.get_model_version(MODEL, "1").tags["promotion.decision"] == "promoted"
