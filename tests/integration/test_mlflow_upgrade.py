"""An MLflow upgrade, for real: a registry made by the previous release, migrated, then served.

The previous release lives in .local/venv-mlflow-previous (`make mlflow-previous`, which `make
test` runs) with the project's other dependencies. Its own `mlflow server` creates the schema in
a fresh PostgreSQL database, the project's trainer (run by that venv's Python) registers two
versions, and @champion/@challenger are set. Then, with the pinned MLflow: the server refuses
the old schema in one line, `python -m tracking migrate` upgrades it, and the registered model,
its versions and aliases are what they were, and the model server serves the champion.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from common import facts
from stack.services import (
    PYTHON,
    ROOT,
    MlflowServer,
    ModelServer,
    Process,
    free_port,
    http_ok,
    wait_until,
)

PREVIOUS_PYTHON = ROOT / ".local" / "venv-mlflow-previous" / "bin" / "python"
PREDICT_ONE = ROOT / "tests" / "testdata" / "predict-one.json"


def previous_version() -> str:
    if not PREVIOUS_PYTHON.exists():
        pytest.fail(f"{PREVIOUS_PYTHON} is missing: run `make mlflow-previous` (make test does)")
    out = subprocess.run(
        [str(PREVIOUS_PYTHON), "-c", "import mlflow; print(mlflow.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip()


def schema_revision(uri: str) -> str | None:
    from tracking.migrate import schema_revisions

    return schema_revisions(uri)[0]


def snapshot(client: MlflowClient) -> dict:
    """What must survive: the model, its versions (source, run, status) and its aliases."""
    model = client.get_registered_model(facts.MODEL_NAME)
    versions = client.search_model_versions(f"name = '{facts.MODEL_NAME}'")
    return {
        "aliases": dict(model.aliases),
        "versions": sorted((v.version, v.run_id, v.source, v.status, v.model_id) for v in versions),
    }


def previous_server(workdir: Path, backend_uri: str) -> tuple[Process, str]:
    """`mlflow server` of the previous release, as it ran before the upgrade."""
    port = free_port()
    process = Process(
        [
            str(PREVIOUS_PYTHON),
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--serve-artifacts",
            "--artifacts-destination",
            str(workdir / "artifacts"),
        ],
        log=workdir / "previous-server.log",
        env={"MLFLOW_BACKEND_STORE_URI": backend_uri},
    )
    uri = f"http://127.0.0.1:{port}"
    wait_until(http_ok(f"{uri}/health"), 120, "previous mlflow server", process.popen, process.log)
    return process, uri


def train_with_previous(uri: str, *args: str) -> str:
    out = subprocess.run(
        [str(PREVIOUS_PYTHON), "-m", "training.train", "--rows", "6000", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split(" version ")[1].split()[0]


def predict(model_server: ModelServer) -> requests.Response:
    return requests.post(
        f"{model_server.url}/invocations",
        data=PREDICT_ONE.read_bytes(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def test_registry_of_previous_release_survives_upgrade(tmp_path, postgres_database):
    old_version = previous_version()
    assert old_version != mlflow.__version__, "the previous venv holds the pinned MLflow"
    workdir = tmp_path / "mlflow"
    workdir.mkdir()

    old_server, old_uri = previous_server(workdir, postgres_database)
    try:
        assert train_with_previous(old_uri) == "1"
        assert train_with_previous(old_uri, "--classifier", "logreg") == "2"
        old_client = MlflowClient(old_uri, old_uri)
        old_client.set_registered_model_alias(facts.MODEL_NAME, facts.CHAMPION, "1")
        old_client.set_registered_model_alias(facts.MODEL_NAME, facts.CHALLENGER, "2")
        before = snapshot(old_client)
    finally:
        old_server.stop()
    old_revision = schema_revision(postgres_database)
    assert before["aliases"] == {facts.CHAMPION: "1", facts.CHALLENGER: "2"}

    # The pinned MLflow as the images run it: no migration of its own, only the check.
    env = {
        **os.environ,
        "TRACKING_BACKEND_STORE_URI": postgres_database,
        "TRACKING_ARTIFACTS_DESTINATION": str(workdir / "artifacts"),
        "TRACKING_UPGRADE_DB": "false",
    }
    refused = subprocess.run(
        [PYTHON, "-m", "tracking"], capture_output=True, text=True, env=env, timeout=120
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "python -m tracking migrate" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "postgres" not in refused.stderr.split("needs")[0].lower()  # no URI, no password

    migrated = subprocess.run(
        [PYTHON, "-m", "tracking", "migrate"], capture_output=True, text=True, env=env, timeout=300
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    new_revision = schema_revision(postgres_database)
    assert new_revision != old_revision, f"{old_version} and {mlflow.__version__} share a schema"
    assert f"from {old_revision} to {new_revision}" in migrated.stdout

    server = MlflowServer(workdir, backend_uri=postgres_database, upgrade_db="false").start()
    model_server = None
    try:
        client = MlflowClient(server.uri, server.uri)
        assert snapshot(client) == before
        model_server = ModelServer(
            tmp_path / "model-server", server.uri, facts.MODEL_URI, workers=1
        ).start(timeout=240)
        served = predict(model_server)
        assert served.status_code == 200, served.text
        assert served.headers["X-Model-Version"] == "1"
        assert len(served.json()["predictions"]) == len(
            json.loads(PREDICT_ONE.read_text())["dataframe_records"]
        )
        # The migrated registry takes writes: moving @champion moves what is served.
        client.set_registered_model_alias(facts.MODEL_NAME, facts.CHAMPION, "2")
        wait_until(
            lambda: predict(model_server).headers.get("X-Model-Version") == "2",
            120,
            "model server follows the moved alias",
            model_server.process.popen,
            model_server.process.log,
        )
    finally:
        if model_server:
            model_server.stop()
        server.stop()
