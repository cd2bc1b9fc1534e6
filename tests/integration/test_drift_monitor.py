"""`python -m training.monitor` against a real mlflow server and a real decision log.

Traffic drawn from the training distribution is stable in every column; traffic with one
column shifted is flagged for that column only; the MLflow run holds the metrics and plots and
the model version carries the latest PSI.
"""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow import MlflowClient

from serving.decisions import DecisionLog, DecisionSettings, open_store
from stack.services import run_cli
from training.data import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, builtin_data

FEATURES = list(NUMERIC_COLUMNS + CATEGORICAL_COLUMNS)
EXPERIMENT = "credit-risk-monitoring"


def log_traffic(store_uri: str, registry_uri: str, frame, version: str = "1") -> None:
    """Score `frame` with the registered version and log it, 100 rows per request."""
    store = open_store(store_uri)
    store.migrate()
    store.close()
    mlflow.set_tracking_uri(registry_uri)
    model = mlflow.pyfunc.load_model(f"models:/credit-risk/{version}")
    outputs = model.predict(frame)
    decision_log = DecisionLog(DecisionSettings(store_uri=store_uri, flush_interval=0.1))
    for start in range(0, len(frame), 100):
        decision_log.record(
            f"req-{start}", "apex-test", "credit-risk", version,
            frame.iloc[start : start + 100], outputs.iloc[start : start + 100], 3.0,
        )  # fmt: skip
    assert decision_log.flush(timeout=60)
    decision_log.close()


def run_monitor(store_uri: str, registry_uri: str, tmp_path) -> list[dict]:
    out = tmp_path / "report.json"
    result = run_cli(
        "training.monitor",
        "--output",
        str(out),
        tracking_uri=registry_uri,
        env={"DECISIONS_STORE_URI": store_uri, "MONITOR_MIN_ROWS": "500"},
    )
    assert result.returncode == 0, result.stderr
    assert "monitor: credit-risk v1: 3000 rows" in result.stdout, result.stdout
    return json.loads(out.read_text())


@pytest.fixture
def live_frame():
    """Applicants drawn from the training distribution (another seed than training's)."""
    return builtin_data(3000, seed=20261202).frame[FEATURES].reset_index(drop=True)


def test_traffic_like_training_is_stable_in_every_column(trained_registry, live_frame, tmp_path):
    store_uri = f"sqlite:///{tmp_path}/decisions.db"
    log_traffic(store_uri, trained_registry.uri, live_frame)
    [report] = run_monitor(store_uri, trained_registry.uri, tmp_path)
    assert set(report["psi"]) == {*FEATURES, "score"}
    assert max(report["psi"].values()) < 0.10, report["psi"]

    client = MlflowClient(trained_registry.uri, trained_registry.uri)
    tags = client.get_model_version("credit-risk", "1").tags
    assert tags["monitoring.status"] == "stable"
    run = client.get_run(tags["monitoring.run_id"])
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.data.metrics["live_rows"] == 3000
    assert run.data.metrics["psi.annual_income"] == pytest.approx(report["psi"]["annual_income"])
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/psi_by_column.png" in plots
    distributions = {
        a.path.rsplit("/", 1)[1]
        for a in client.list_artifacts(run.info.run_id, "plots/distributions")
    }
    assert distributions == {f"{column}.png" for column in [*FEATURES, "score"]}


def test_one_shifted_column_is_flagged_alone(trained_registry, live_frame, tmp_path):
    shifted = live_frame.assign(annual_income=live_frame["annual_income"] * 1.6)
    store_uri = f"sqlite:///{tmp_path}/decisions.db"
    log_traffic(store_uri, trained_registry.uri, shifted)
    [report] = run_monitor(store_uri, trained_registry.uri, tmp_path)
    psi = report["psi"]
    assert psi["annual_income"] > 0.25, psi
    assert all(psi[column] < 0.10 for column in FEATURES if column != "annual_income"), psi

    client = MlflowClient(trained_registry.uri, trained_registry.uri)
    tags = client.get_model_version("credit-risk", "1").tags
    assert tags["monitoring.status"] == "act"
    assert tags["monitoring.psi_max_input_column"] == "annual_income"
    run = client.get_run(tags["monitoring.run_id"])
    assert run.data.tags["drift.columns_to_act"].split(",")[0] == "annual_income"


def test_no_decisions_is_a_report_of_nothing(mlflow_server, tmp_path):
    store_uri = f"sqlite:///{tmp_path}/decisions.db"
    store = open_store(store_uri)
    store.migrate()
    store.close()
    result = run_cli(
        "training.monitor", tracking_uri=mlflow_server.uri, env={"DECISIONS_STORE_URI": store_uri}
    )
    assert result.returncode == 0, result.stderr
    assert "no decisions of credit-risk" in result.stdout


def test_unreachable_store_is_one_line_and_exit_2(mlflow_server):
    result = run_cli(
        "training.monitor",
        tracking_uri=mlflow_server.uri,
        env={
            "DECISIONS_STORE_URI": "postgresql://monitor:pw-77@127.0.0.1:9/decisions",
            "DECISIONS_CONNECT_TIMEOUT": "1",
        },
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "pw-77" not in result.stderr
    assert "DECISIONS_STORE_URI" in result.stderr
