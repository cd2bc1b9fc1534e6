"""`python -m tracking`: prepare the stores and users, then exec the one `mlflow server`.

What every shape runs: `make up` (stack/local.py), the tests (stack/services.py MlflowServer),
compose and Kubernetes (the image's CMD). In order:

1. read the TRACKING_* settings (tracking/settings.py); a wrong one stops here, in one line;
   migrate the stores to this MLflow's schema (tracking/migrate.py; the image only checks);
2. with auth (TRACKING_AUTH=true): create the auth database on the PostgreSQL server if it is
   missing, write the basic-auth ini (MLflow reads the user store's `database_uri` only from a
   file) into a private runtime directory, create the experiment if missing, and create or
   update the stack's users and their permissions (tracking/users.py), so when /health
   answers the users exist;
3. create a local artifacts directory;
4. exec `mlflow server` as tracking/command.py builds it: the backend store URI in the
   environment (MLFLOW_BACKEND_STORE_URI), never in argv.

MLflow's own variables pass through unchanged: MLFLOW_AUTH_ADMIN_PASSWORD (the admin is created
with it on the first start), MLFLOW_FLASK_SERVER_SECRET_KEY (the auth app's CSRF key).
Auth config format: mlflow/server/auth/config.py and basic_auth.ini in the MLflow source.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tracking.authz import SECTION
from tracking.command import build_command
from tracking.migrate import SchemaError, prepare_schema
from tracking.settings import SettingsError, TrackingSettings, load_settings
from tracking.stores import StoreError, ensure_auth_database, ensure_experiment
from tracking.users import (
    ADMIN_USERNAME,
    DEFAULT_PERMISSION,
    UserError,
    creators,
    ensure_users,
    stack_users,
)


def log(message: str) -> None:
    print(f"tracking server: {message}", flush=True)


def write_auth_config(settings: TrackingSettings) -> Path:
    """Write the basic-auth ini (mode 0600, in a 0700 directory) and return its path."""
    if settings.runtime_dir is None:
        runtime_dir = Path(tempfile.mkdtemp(prefix="mlflow-auth-"))
    else:
        runtime_dir = settings.runtime_dir
        runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = runtime_dir / "basic_auth.ini"
    # configparser interpolates %, which URL-encoded passwords contain.
    database_uri = settings.auth_store_uri().replace("%", "%%")
    text = (
        "[mlflow]\n"
        f"default_permission = {DEFAULT_PERMISSION}\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {ADMIN_USERNAME}\n"
        # MLflow's basic auth plus the create rule (tracking/authz.py), which reads its section.
        "authorization_function = tracking.authz:authenticate_request\n"
        f"[{SECTION}]\n"
        f"creators = {','.join(creators(settings))}\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def prepare_auth(settings: TrackingSettings) -> Path:
    """The auth database, its ini, and the stack's users; returns the ini's path."""
    if settings.is_postgresql():
        ensure_auth_database(settings)
    auth_ini = write_auth_config(settings)
    # Grants on the model go by name, so they hold before the trainer registers it; the
    # experiment's go by id, so it is created here if missing.
    changes = ensure_users(
        settings.auth_store_uri(),
        stack_users(settings),
        settings.model_name,
        ensure_experiment(settings),
    )
    for change in changes:
        log(change)
    return auth_ini


def main() -> int:
    """Start the server (this process becomes `mlflow server`); 2 on a settings error."""
    try:
        settings = load_settings()
        prepare_schema(settings)
        auth_ini = prepare_auth(settings) if settings.auth else None
    except SettingsError as error:
        print(f"tracking server: invalid settings: {error}", file=sys.stderr)
        return 2
    except (StoreError, UserError, SchemaError) as error:
        print(f"tracking server: {error}", file=sys.stderr)
        return 1
    artifacts_dir = settings.local_artifacts_dir()
    if artifacts_dir is not None:
        artifacts_dir.mkdir(parents=True, exist_ok=True)
    command = build_command(settings, auth_ini, os.environ)
    log(f"starting {' '.join(command.argv[1:])}")
    sys.stdout.flush()
    os.execve(command.argv[0], command.argv, command.env)  # noqa: S606 (no shell, fixed argv)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
