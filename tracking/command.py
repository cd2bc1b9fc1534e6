"""The one `mlflow server` command line, built from the settings (argv and environment).

Every way the server starts (native `make up`, the tests' MlflowServer, compose, Kubernetes)
runs `python -m tracking`, which execs what `build_command` returns. Secrets travel in the
environment only: argv is world-readable in /proc/<pid>/cmdline and `ps`, the environment is
readable by the same user alone. `mlflow server` reads MLFLOW_BACKEND_STORE_URI itself (its
--backend-store-uri option, mlflow/cli/__init__.py) and hands it on to its workers the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tracking.settings import PREFIX, TrackingSettings


@dataclass(frozen=True)
class ServerCommand:
    """What to exec: `argv` (no secret ever) and the complete environment `env`."""

    argv: list[str]
    env: dict[str, str]


def build_command(
    settings: TrackingSettings, auth_config: Path | None, environ: Mapping[str, str]
) -> ServerCommand:
    """The `mlflow server` argv and environment for these settings.

    Args:
        settings: the tracking settings.
        auth_config: the basic-auth ini written for this start; required when auth is on.
        environ: the environment to pass on (MLflow's own variables such as
            MLFLOW_AUTH_ADMIN_PASSWORD and MLFLOW_FLASK_SERVER_SECRET_KEY go through unchanged).
    """
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        str(settings.workers),
        "--serve-artifacts",
        "--artifacts-destination",
        settings.artifacts_destination,
    ]
    if settings.allowed_hosts:
        argv += ["--allowed-hosts", settings.allowed_hosts]
    # The server needs none of our variables, and some of them are passwords.
    env = {name: value for name, value in environ.items() if not name.startswith(PREFIX)}
    env["MLFLOW_BACKEND_STORE_URI"] = settings.backend_uri()
    # MLflow 3.x starts a job runner by default (huey consumers: about a dozen processes, a few
    # hundred MB, for GenAI jobs this stack never submits). Off unless the operator says so:
    # less CPU and memory, fewer processes holding the store's credentials.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if settings.auth:
        if auth_config is None:
            raise ValueError("auth is on: the basic-auth ini must be written first")
        argv += ["--app-name", "basic-auth"]
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config)
    return ServerCommand(argv=argv, env=env)
