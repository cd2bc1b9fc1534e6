"""The one `mlflow server` command line for each shape, built from TRACKING_* settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from common import facts
from tracking.command import build_command
from tracking.settings import SettingsError, TrackingSettings, load_settings

SECRETS = {
    "db": "pg-secret-1234567",
    "uri": "uri-secret-7654321",
    "trainer": "trainer-secret-123",
    "reader": "reader-secret-456",
}
NATIVE = {
    "TRACKING_BACKEND_STORE_URI": "sqlite:////repo/mlruns/mlflow.db",
    "TRACKING_ARTIFACTS_DESTINATION": "/repo/mlruns/artifacts",
}
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (what the image binds, in its own network)
IMAGE = {  # images/python.Dockerfile, target mlflow
    "TRACKING_AUTH": "true",
    "TRACKING_HOST": ALL_INTERFACES,
    "TRACKING_ARTIFACTS_DESTINATION": "/mlflow/artifacts",
}
USERS = {
    "TRACKING_TRAINER_PASSWORD": SECRETS["trainer"],
    "TRACKING_MODEL_SERVER_PASSWORD": SECRETS["reader"],
}
COMPOSE = {
    **IMAGE,
    **USERS,
    "TRACKING_DB_HOST": "postgres",
    "TRACKING_DB_USER": "mlflow",
    "TRACKING_DB_PASSWORD": SECRETS["db"],
    "TRACKING_ALLOWED_HOSTS": "mlflow,mlflow:5000",
}
K8S = {
    **IMAGE,
    **USERS,
    "TRACKING_BACKEND_STORE_URI": f"postgresql://mlflow:{SECRETS['uri']}@db.example:5432/mlflow",
    "TRACKING_ARTIFACTS_DESTINATION": "s3://credit-risk-mlflow/artifacts",
    "TRACKING_ALLOWED_HOSTS": "mlflow,mlflow:5000",
}


def settings_from(monkeypatch, env: dict[str, str]) -> TrackingSettings:
    """Settings exactly as the process reads them: from the environment alone."""
    for name in [n for n in os.environ if n.startswith("TRACKING_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


@pytest.mark.parametrize(
    ("shape", "env", "backend", "auth", "host", "destination"),
    [
        ("native", NATIVE, NATIVE["TRACKING_BACKEND_STORE_URI"], False, "127.0.0.1",
         "/repo/mlruns/artifacts"),
        ("compose", COMPOSE, f"postgresql://mlflow:{SECRETS['db']}@postgres:5432/mlflow", True,
         ALL_INTERFACES, "/mlflow/artifacts"),
        ("k8s", K8S, K8S["TRACKING_BACKEND_STORE_URI"], True, ALL_INTERFACES,
         "s3://credit-risk-mlflow/artifacts"),
    ],
)  # fmt: skip
def test_command_per_shape(monkeypatch, shape, env, backend, auth, host, destination):
    settings = settings_from(monkeypatch, {**env, "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-x"})
    ini = Path("/tmp/mlflow-auth/basic_auth.ini") if settings.auth else None
    command = build_command(settings, ini, {"PATH": "/bin", **env, "MLFLOW_X": "kept"})
    argv = command.argv
    assert argv[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert option(argv, "--host") == host
    assert option(argv, "--port") == str(facts.MLFLOW_PORT)
    assert option(argv, "--artifacts-destination") == destination
    assert "--serve-artifacts" in argv
    assert ("--app-name" in argv) is auth and settings.auth is auth
    assert "--backend-store-uri" not in argv
    assert command.env["MLFLOW_BACKEND_STORE_URI"] == backend
    assert command.env["MLFLOW_X"] == "kept"
    assert not [name for name in command.env if name.startswith("TRACKING_")]
    joined = " ".join(argv)
    assert not [secret for secret in SECRETS.values() if secret in joined], shape
    if auth:
        assert command.env["MLFLOW_AUTH_CONFIG_PATH"] == str(ini)
        assert option(argv, "--allowed-hosts") == "mlflow,mlflow:5000"


def test_auth_store_beside_the_backend(monkeypatch):
    compose = settings_from(monkeypatch, COMPOSE)
    assert compose.auth_store_uri().endswith("@postgres:5432/mlflow_auth")
    assert compose.auth_store_uri().startswith(f"postgresql://mlflow:{SECRETS['db']}@")
    native = settings_from(monkeypatch, NATIVE)
    assert native.auth_store_uri() == "sqlite:////repo/mlruns/mlflow_auth.db"
    assert settings_from(monkeypatch, K8S).local_artifacts_dir() is None


def test_password_is_url_encoded(monkeypatch):
    settings = settings_from(monkeypatch, {**COMPOSE, "TRACKING_DB_PASSWORD": "a@b/c%d:e"})
    assert "a%40b%2Fc%25d%3Ae@postgres" in settings.backend_uri()


def test_empty_value_means_default(monkeypatch):
    settings = settings_from(monkeypatch, {**NATIVE, "TRACKING_PORT": "", "TRACKING_AUTH": ""})
    assert settings.port == facts.MLFLOW_PORT and settings.auth is False


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TRACKING_ARTIFACTS_DESTINATION": "/a"}, "TRACKING_BACKEND_STORE_URI or TRACKING_DB"),
        ({**NATIVE, "TRACKING_PORT": "70000"}, "TRACKING_PORT"),
        ({**NATIVE, "TRACKING_WORKERS": "many"}, "TRACKING_WORKERS"),
        ({**NATIVE, "TRACKING_AUTH": "maybe"}, "TRACKING_AUTH"),
        ({"TRACKING_BACKEND_STORE_URI": "sqlite:///x.db"}, "TRACKING_ARTIFACTS_DESTINATION"),
        ({**COMPOSE, "TRACKING_DB_PASSWORD": ""}, "TRACKING_DB_PASSWORD"),
        ({**K8S, "TRACKING_TRAINER_PASSWORD": ""}, "TRACKING_TRAINER_PASSWORD"),
        ({**K8S, "TRACKING_MODEL_SERVER_PASSWORD": "short"}, "TRACKING_MODEL_SERVER_PASSWORD"),
    ],
)  # fmt: skip
def test_settings_errors_name_the_variable(monkeypatch, env, variable):
    with pytest.raises(SettingsError, match=variable) as error:
        settings_from(monkeypatch, env)
    assert "\n" not in str(error.value)
    assert not [secret for secret in SECRETS.values() if secret in str(error.value)]


def test_every_setting_is_documented():
    missing = [
        name for name, field in TrackingSettings.model_fields.items() if not field.description
    ]
    assert not missing


def test_experiment_default_is_the_trainers():
    """The users get their grant on the experiment the trainer logs to by default."""
    from training.train import parse_args

    default = TrackingSettings.model_fields["experiment_name"].default
    assert parse_args([]).experiment == default


def test_the_job_runner_is_off_unless_asked_for(monkeypatch):
    """The stack submits no MLflow jobs, so the server starts none of its huey consumers."""
    settings = settings_from(monkeypatch, NATIVE)
    env = build_command(settings, None, {}).env
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    asked = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}
    assert build_command(settings, None, asked).env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"
