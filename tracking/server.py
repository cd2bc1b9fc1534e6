"""`python -m tracking`: start the MLflow tracking server of the container stack.

What the image runs (images/python.Dockerfile, target mlflow). It turns TRACKING_* settings into
what `mlflow server` wants, so no password ever appears on a command line or in the image:

1. creates the auth database on the PostgreSQL server if it is missing (the tracking store and
   the basic-auth user store keep separate databases and separate migrations);
2. writes the basic-auth ini (MLflow reads `database_uri` only from a file) into the runtime
   directory, a tmpfs, readable by this user alone;
3. creates the stack's users in the auth store, or sets their passwords to the configured ones
   (rotation: change the variable, restart): `trainer` (TRACKING_TRAINER_PASSWORD), an
   ordinary user that becomes owner (MANAGE) of the experiment and registered model it creates,
   and `model-server` (TRACKING_MODEL_SERVER_PASSWORD), an ordinary user never granted anything,
   so it has only `default_permission` READ: it resolves the alias and downloads versions, never
   writes. Done before the server listens, so when /health answers the users exist; no second
   process needs the admin password;
4. execs `mlflow server --app-name basic-auth --serve-artifacts` with the backend store URI in
   the environment (MLFLOW_BACKEND_STORE_URI), not in argv.

MLflow's own variables pass through unchanged: MLFLOW_AUTH_ADMIN_PASSWORD (the admin is created
with it on the first start), MLFLOW_FLASK_SERVER_SECRET_KEY (required by the auth app).
Auth config format: mlflow/server/auth/config.py and basic_auth.ini in the MLflow source.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

PERMISSIONS = {"READ", "EDIT", "MANAGE", "NO_PERMISSIONS"}


class TrackingServerSettings(BaseSettings):
    """The tracking server's settings; every field has a TRACKING_ variable."""

    model_config = SettingsConfigDict(env_prefix="TRACKING_", extra="ignore")

    db_host: str = Field("postgres", description="PostgreSQL host.")
    db_port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port.")
    db_user: str = Field("mlflow", description="PostgreSQL user; owns both databases.")
    db_password: SecretStr = Field(description="PostgreSQL password (required).")
    db_name: str = Field("mlflow", description="Database of the tracking and registry store.")
    auth_db_name: str = Field("mlflow_auth", description="Database of the basic-auth users.")
    artifacts_dir: Path = Field(
        Path("/mlflow/artifacts"), description="Where --serve-artifacts keeps artifacts (volume)."
    )
    runtime_dir: Path = Field(
        Path("/tmp/mlflow"),  # noqa: S108 (a private tmpfs in the container, made 0700)
        description="Writable directory for the generated auth ini (tmpfs).",
    )
    host: str = Field("0.0.0.0", description="Address to bind.")  # noqa: S104 (in a container)
    port: int = Field(5000, ge=1, le=65535, description="Port to bind.")
    workers: int = Field(2, ge=1, le=32, description="uvicorn workers of the tracking server.")
    allowed_hosts: str = Field(
        "mlflow,mlflow:5000,localhost,localhost:*,127.0.0.1:*",
        description="Host headers accepted (--allowed-hosts; DNS-rebinding protection).",
    )
    default_permission: str = Field(
        "READ", description="What every user may do on what others created (basic-auth)."
    )
    trainer_password: SecretStr = Field(description="Password of the `trainer` user (required).")
    model_server_password: SecretStr = Field(
        description="Password of the read-only `model-server` user (required)."
    )

    def database_uri(self, database: str) -> str:
        password = quote(self.db_password.get_secret_value(), safe="")
        user = quote(self.db_user, safe="")
        return f"postgresql+psycopg://{user}:{password}@{self.db_host}:{self.db_port}/{database}"


def load_settings() -> TrackingServerSettings:
    """Read the settings; on invalid values raise SystemExit naming the variable."""
    try:
        settings = TrackingServerSettings()
    except ValidationError as error:
        problems = [
            f"TRACKING_{str(item['loc'][0]).upper()}: {item['msg']}" for item in error.errors()
        ]
        raise SystemExit("tracking server: invalid settings: " + "; ".join(problems)) from None
    if settings.default_permission not in PERMISSIONS:
        raise SystemExit(
            f"tracking server: TRACKING_DEFAULT_PERMISSION must be one of {sorted(PERMISSIONS)}"
        )
    return settings


def ensure_database(settings: TrackingServerSettings, database: str, deadline: float) -> None:
    """Create `database` unless it exists, waiting for PostgreSQL until `deadline`."""
    import psycopg
    from psycopg import sql

    admin_uri = settings.database_uri(settings.db_name).replace("postgresql+psycopg", "postgresql")
    while True:
        try:
            with psycopg.connect(admin_uri, autocommit=True, connect_timeout=5) as conn:
                found = conn.execute(
                    "select 1 from pg_database where datname = %s", (database,)
                ).fetchone()
                if not found:
                    conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
                    print(f"tracking server: created database {database}", flush=True)
                return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"tracking server: PostgreSQL at {settings.db_host}:{settings.db_port} "
                    f"not reachable: {str(error).strip().splitlines()[0]}"
                ) from None
            time.sleep(2)


def write_auth_config(settings: TrackingServerSettings) -> Path:
    """Write the basic-auth ini (mode 0600) and return its path."""
    settings.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = settings.runtime_dir / "basic_auth.ini"
    # configparser interpolates %, which URL-encoded passwords contain.
    database_uri = settings.database_uri(settings.auth_db_name).replace("%", "%%")
    text = (
        "[mlflow]\n"
        f"default_permission = {settings.default_permission}\n"
        f"database_uri = {database_uri}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def ensure_users(settings: TrackingServerSettings) -> None:
    """Create the stack's non-admin users, or set their passwords (mlflow.server.auth store)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(settings.database_uri(settings.auth_db_name))
    users = {"trainer": settings.trainer_password, "model-server": settings.model_server_password}
    for username, secret in users.items():
        password = secret.get_secret_value()
        try:
            if store.has_user(username, use_primary=True):
                store.update_user(username, password=password)
                done = "password set"
            else:
                store.create_user(username, password)
                done = "created"
        except MlflowException as error:
            raise SystemExit(f"tracking server: user {username}: {error.message}") from None
        print(f"tracking server: user {username}: {done}", flush=True)


def main() -> int:
    settings = load_settings()
    deadline = time.monotonic() + 120
    ensure_database(settings, settings.db_name, deadline)
    ensure_database(settings, settings.auth_db_name, deadline)
    auth_ini = write_auth_config(settings)
    ensure_users(settings)
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": settings.database_uri(settings.db_name),
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
    }
    for secret in (
        "TRACKING_DB_PASSWORD",
        "TRACKING_TRAINER_PASSWORD",
        "TRACKING_MODEL_SERVER_PASSWORD",
    ):
        env.pop(secret, None)
    argv = [
        "mlflow",
        "server",
        "--app-name",
        "basic-auth",
        "--serve-artifacts",
        "--artifacts-destination",
        str(settings.artifacts_dir),
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        str(settings.workers),
        "--allowed-hosts",
        settings.allowed_hosts,
    ]
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)  # noqa: S606 (fixed argv, replaces this process)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
