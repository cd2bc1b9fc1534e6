"""Fixtures that start real processes: an mlflow server (SQLite or PostgreSQL backend)."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from mlflow import MlflowClient

from stack.services import (
    Gateway,
    MlflowServer,
    ModelServer,
    http_ok,
    keys_cli,
    make_certs,
    run_cli,
    wait_until,
)

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


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory):
    """The development CA and server certificate, made by nginx/certs.sh."""
    return make_certs(tmp_path_factory.mktemp("tls"))


@dataclass
class GatewayStack:
    """mlflow server + model server + nginx gateway, as APEX and the tests see them."""

    url: str
    ca_cert: str
    api_key: str
    model_uri: str
    tracking_uri: str
    gateway: Gateway
    model_server: ModelServer
    registry: TrainedRegistry


@contextmanager
def running_gateway_stack(registry, tls_dir, workdir, model_server_env=None):
    """The model server (`model_server_env`: its extra environment) and the gateway in
    front of it with one API key named `apex-test`; both stopped on exit."""
    model_server = ModelServer(
        workdir / "model-server",
        registry.uri,
        "models:/credit-risk@champion",
        env=model_server_env,
    ).start()
    gateway = None
    try:
        keys_file = workdir / "secrets" / "api-keys.map"
        api_key = keys_cli(
            keys_file, workdir / "gateway" / "nginx", "--no-reload", "create", "apex-test"
        ).stdout.strip()
        gateway = Gateway(
            workdir / "gateway", tls_dir, keys_file, f"127.0.0.1:{model_server.port}"
        ).start()
        wait_until(http_ok(f"{gateway.url}/healthz", verify=gateway.ca_cert), 30, "gateway healthy")
        yield GatewayStack(
            url=gateway.url,
            ca_cert=gateway.ca_cert,
            api_key=api_key,
            model_uri="models:/credit-risk/1",
            tracking_uri=registry.uri,
            gateway=gateway,
            model_server=model_server,
            registry=registry,
        )
    finally:
        if gateway is not None:
            gateway.stop()
        model_server.stop()


@pytest.fixture(scope="module")
def gateway_stack(trained_registry, tls_dir, tmp_path_factory):
    with running_gateway_stack(
        trained_registry, tls_dir, tmp_path_factory.mktemp("stack")
    ) as stack:
        yield stack
