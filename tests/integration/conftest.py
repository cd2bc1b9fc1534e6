"""Fixtures that start real processes: an mlflow server (SQLite or PostgreSQL backend)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from mlflow import MlflowClient
from support import MlflowServer, run_cli

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def mlflow_server(tmp_path):
    """A fresh tracking server and registry (SQLite) per test."""
    server = MlflowServer(tmp_path / "mlflow").start()
    yield server
    server.stop()


@pytest.fixture
def postgres_database():
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    name = f"mlflow_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_DSN, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable on 127.0.0.1:5432 ({error}); start it with "
            "'pg_ctlcluster --skip-systemctl-redirect <version> main start' (.ci/run does)"
        )
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def postgres_mlflow_server(tmp_path, postgres_database):
    server = MlflowServer(tmp_path / "mlflow-pg", backend_uri=postgres_database).start()
    yield server
    server.stop()


class TrainedRegistry:
    """A real mlflow server holding `credit-risk` v1 (boosted trees, @champion) and v2
    (logistic regression), trained by the project's own CLI."""

    MODEL = "credit-risk"

    def __init__(self, server: MlflowServer):
        self.server = server
        self.uri = server.uri
        self.client = MlflowClient(server.uri, server.uri)

    def train(self, *args: str) -> str:
        out = run_cli("training.train", "--rows", "6000", *args, tracking_uri=self.uri)
        assert out.returncode == 0, out.stderr
        return out.stdout.split(" version ")[1].split()[0]

    def set_champion(self, version: str) -> None:
        self.client.set_registered_model_alias(self.MODEL, "champion", version)


@pytest.fixture(scope="module")
def trained_registry(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("registry")).start()
    registry = TrainedRegistry(server)
    assert registry.train() == "1"
    assert registry.train("--classifier", "logreg") == "2"
    registry.set_champion("1")
    yield registry
    server.stop()
