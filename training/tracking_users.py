"""`python -m training.tracking_users`: create the stack's MLflow users (idempotent).

The compose stack runs this once, as the admin, after the tracking server is up:

- `trainer` (TRACKING_TRAINER_PASSWORD): an ordinary user. It creates the experiment and the
  registered model, so MLflow makes it their owner (MANAGE): it can log runs, register
  versions and move `@champion`, and nothing else that others own.
- `model-server` (TRACKING_MODEL_SERVER_PASSWORD): an ordinary user that is never granted
  anything, so it has only the server's `default_permission`, READ: it can resolve the alias
  and download versions, never write.

An existing user gets its password set to the configured one, so rotating a password is:
change it in the environment and run this again. Uses MLflow's auth REST API
(/api/2.0/mlflow/users/...) through `mlflow.server.auth.client.AuthServiceClient`.
"""

from __future__ import annotations

import os
import sys

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from training.tracking_server import wait_until_up


class UsersSettings(BaseSettings):
    """Who to create; every field has a TRACKING_ variable."""

    model_config = SettingsConfigDict(env_prefix="TRACKING_", extra="ignore")

    uri: str = Field("http://mlflow:5000", description="The tracking server, as the admin.")
    trainer_password: SecretStr = Field(description="Password of the `trainer` user.")
    model_server_password: SecretStr = Field(description="Password of the `model-server` user.")
    wait_seconds: float = Field(300, gt=0, description="How long to wait for the server.")


def ensure_user(client, username: str, password: str) -> str:
    """Create `username` or set its password; return what was done."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    try:
        client.create_user(username, password)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        client.update_user_password(username, password)
        return "password set"
    return "created"


def main() -> int:
    try:
        settings = UsersSettings()
    except ValidationError as error:
        problems = [
            f"TRACKING_{str(item['loc'][0]).upper()}: {item['msg']}" for item in error.errors()
        ]
        raise SystemExit("tracking users: invalid settings: " + "; ".join(problems)) from None
    if not os.environ.get("MLFLOW_TRACKING_USERNAME") or not os.environ.get(
        "MLFLOW_TRACKING_PASSWORD"
    ):
        raise SystemExit(
            "tracking users: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (the admin)"
        )
    wait_until_up(settings.uri, settings.wait_seconds)

    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    client = AuthServiceClient(settings.uri)
    users = {
        "trainer": settings.trainer_password,
        "model-server": settings.model_server_password,
    }
    for username, password in users.items():
        try:
            done = ensure_user(client, username, password.get_secret_value())
        except MlflowException as error:
            raise SystemExit(f"tracking users: {username}: {error.message}") from None
        print(f"tracking users: {username}: {done}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
