"""Fixtures that start real processes: an mlflow server (SQLite or PostgreSQL backend)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from support import MlflowServer

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
