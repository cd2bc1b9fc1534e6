"""`python -m tracking`, the one entry point, as real processes.

With auth on PostgreSQL (the compose and Kubernetes shape): the users exist when /health
answers, the trainer registers and moves aliases, the model server only reads, a restart with a
new password rotates it, and no password is ever on a process's command line. Without auth on
SQLite (the native `make up` shape) through MlflowServer.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest
import requests
from mlflow import MlflowClient

from stack.services import MlflowServer

MODEL = "credit-risk"
DB_PASSWORD = "db-pass-in-uri-7c1d"  # trust auth ignores it; it must still never reach argv
ADMIN_PASSWORD = "admin-pass-3f9a0b2c"
TRAINER_PASSWORD = "trainer-pass-5e8d1a7b"
MODEL_SERVER_PASSWORD = "reader-pass-9b2c4d6e"
SOURCE = "s3://bucket/model"  # a remote source needs no run (MLflow checks local ones)


def api(server: MlflowServer, path: str, user: str, password: str, body: dict | None = None):
    """A call to MLflow's REST API as `user` (POST with a body, else GET)."""
    url = f"{server.uri}/api/2.0/mlflow/{path}"
    auth = (user, password)
    if body is None:
        return requests.get(url, auth=auth, timeout=30)
    return requests.post(url, json=body, auth=auth, timeout=30)


def command_lines(pid: int) -> list[str]:
    """The argv of `pid` and of every process of its session (workers included)."""
    session = os.getsid(pid)
    lines = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ProcessLookupError):
            continue
    return lines


@pytest.fixture
def auth_database(postgres_database):
    """The auth store's database name; the entry point creates it, this drops it after."""
    name = f"mlflow_auth_test_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def auth_server(tmp_path, postgres_database, auth_database, monkeypatch):
    """The container shape: basic auth, PostgreSQL with a password in the URI, users."""
    backend = postgres_database.replace("postgres@", f"postgres:{DB_PASSWORD}@")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", uuid.uuid4().hex)
    server = MlflowServer(
        tmp_path / "mlflow-auth",
        backend_uri=backend,
        auth="true",
        auth_db_name=auth_database,
        runtime_dir=str(tmp_path / "runtime"),
        trainer_password=TRAINER_PASSWORD,
        model_server_password=MODEL_SERVER_PASSWORD,
    )
    yield server.start()
    server.stop()


def test_auth_users_permissions_rotation_and_argv(auth_server, tmp_path):
    server = auth_server
    assert requests.get(f"{server.uri}/health", timeout=5).status_code == 200
    assert api(server, "experiments/search?max_results=1", "trainer", "wrong").status_code == 401

    # The trainer creates the model, a version and moves the alias (it owns what it creates).
    trainer = ("trainer", TRAINER_PASSWORD)
    created = api(server, "registered-models/create", *trainer, {"name": MODEL})
    assert created.status_code == 200, created.text
    version = api(server, "model-versions/create", *trainer, {"name": MODEL, "source": SOURCE})
    assert version.status_code == 200, version.text
    alias = {"name": MODEL, "alias": "champion", "version": "1"}
    assert api(server, "registered-models/alias", *trainer, alias).status_code == 200

    # The model server reads the alias but may not move it or register anything.
    reader = ("model-server", MODEL_SERVER_PASSWORD)
    got = api(server, f"registered-models/alias?name={MODEL}&alias=champion", *reader)
    assert got.status_code == 200 and got.json()["model_version"]["version"] == "1"
    assert api(server, "registered-models/alias", *reader, alias).status_code == 403
    delete = requests.delete(
        f"{server.uri}/api/2.0/mlflow/registered-models/delete",
        json={"name": MODEL},
        auth=reader,
        timeout=30,
    )
    assert delete.status_code == 403
    denied = api(server, "model-versions/create", *reader, {"name": MODEL, "source": SOURCE})
    assert denied.status_code == 403
    # Nor create anything of its own (tracking/authz.py): not through the REST API, not
    # through the UI's ajax API.
    for prefix in ("api/2.0", "ajax-api/2.0"):
        for path, body in (
            ("experiments/create", {"name": "the-readers"}),
            ("registered-models/create", {"name": "the-readers-model"}),
        ):
            response = requests.post(
                f"{server.uri}/{prefix}/mlflow/{path}", json=body, auth=reader, timeout=30
            )
            assert response.status_code == 403, (prefix, path, response.text)
    # default_permission NO_PERMISSIONS: what the admin made, the others do not even see.
    admin = ("admin", ADMIN_PASSWORD)
    other = api(server, "experiments/create", *admin, {"name": "admins-only"})
    assert other.status_code == 200, other.text
    other_id = other.json()["experiment_id"]
    for user in (reader, trainer):
        assert api(server, f"experiments/get?experiment_id={other_id}", *user).status_code == 403

    # No password on any command line of the server's processes (`ps` shows the same).
    lines = command_lines(server.process.pid)
    assert any("mlflow" in line and "server" in line for line in lines), lines
    secrets = (DB_PASSWORD, ADMIN_PASSWORD, TRAINER_PASSWORD, MODEL_SERVER_PASSWORD)
    assert not [line for line in lines if any(secret in line for secret in secrets)]
    log = server.process.log.read_text()
    assert not [secret for secret in secrets if secret in log]

    # Rotation: a restart with a new password makes it the only one that works; the trainer
    # keeps its permission on the model that now exists (granted again at start).
    server.stop()
    rotated = "trainer-pass-rotated-2a4c"
    server.env["TRACKING_TRAINER_PASSWORD"] = rotated
    server.start()
    check = f"registered-models/get?name={MODEL}"
    assert api(server, check, "trainer", TRAINER_PASSWORD).status_code == 401
    assert api(server, check, "trainer", rotated).status_code == 200
    alias["version"] = "1"
    assert api(server, "registered-models/alias", "trainer", rotated, alias).status_code == 200
    assert api(server, "registered-models/alias", *reader, alias).status_code == 403


def test_grants_hold_for_a_model_made_after_the_start_by_someone_else(auth_server):
    """The grants on the model go by name: a model the admin registers after the start is the
    trainer's to version (EDIT, not delete) and the model server's to read, at once and after
    a restart."""
    server = auth_server
    admin = ("admin", ADMIN_PASSWORD)
    trainer = ("trainer", TRAINER_PASSWORD)
    reader = ("model-server", MODEL_SERVER_PASSWORD)
    assert api(server, "registered-models/create", *admin, {"name": MODEL}).status_code == 200
    body = {"name": MODEL, "source": SOURCE}
    for restart in (False, True):
        if restart:
            server.stop()
            server.start()
        created = api(server, "model-versions/create", *trainer, body)
        assert created.status_code == 200, created.text
        assert api(server, "model-versions/create", *reader, body).status_code == 403
        assert api(server, f"registered-models/get?name={MODEL}", *reader).status_code == 200
        delete = requests.delete(
            f"{server.uri}/api/2.0/mlflow/registered-models/delete",
            json={"name": MODEL},
            auth=trainer,
            timeout=30,
        )
        assert delete.status_code == 403


def test_invalid_settings_stop_in_one_line_naming_the_variable(tmp_path):
    server = MlflowServer(tmp_path / "bad", auth="true", trainer_password="short")
    with pytest.raises(AssertionError, match="exited with 2"):
        server.start(timeout=60)
    log = server.process.log.read_text()
    assert "TRACKING_TRAINER_PASSWORD" in log and "short" not in log
    server.stop()


def test_native_shape_sqlite_without_auth(mlflow_server):
    """What `make up` starts: SQLite, served artifacts, no auth (anyone on 127.0.0.1)."""
    client = MlflowClient(mlflow_server.uri, mlflow_server.uri)
    client.create_registered_model(MODEL)
    assert client.get_registered_model(MODEL).name == MODEL
    assert (mlflow_server.workdir / "mlflow.db").exists()
    lines = command_lines(mlflow_server.process.pid)
    assert not [line for line in lines if "--app-name" in line or "sqlite:" in line]
