"""The stack's MLflow users and their permissions: one model for native, compose, Kubernetes.

`default_permission` is NO_PERMISSIONS: a user sees only what it was granted or created.

- `admin`: everything. MLflow creates it on the first start (MLFLOW_AUTH_ADMIN_PASSWORD).
- the trainer (`trainer`): creates the experiment and the registered model, logs runs,
  registers versions, moves aliases. MLflow makes a creator MANAGE owner; at every start this
  module sets EDIT on the experiment and the model when they exist (enough to log, register
  and move aliases, not to delete them or hand out permissions), whoever created them.
- the model server (`model-server`): READ on the model (resolve the alias) and on its
  experiment (MLflow checks the experiment when a version's artifacts are downloaded), nothing
  else. It may not create experiments or models either: tracking/authz.py refuses creates by
  anyone but the CREATORS.

Done at every start, before the server listens: the users are created, or get the configured
password (rotation: change the Secret or .env, restart MLflow). A model or experiment created
after the start by someone other than the trainer gets the grants at the next start.
The store API is mlflow/server/auth/sqlalchemy_store.py (`grant_user_permission` is what the
auth app itself calls when a user creates a resource).
"""

from __future__ import annotations

from dataclasses import dataclass

from tracking.settings import TrackingSettings

DEFAULT_PERMISSION = "NO_PERMISSIONS"
"""What every user may do on what others created (basic_auth.ini `default_permission`)."""
ADMIN_USERNAME = "admin"
TRAINER_PERMISSION = "EDIT"
MODEL_SERVER_PERMISSION = "READ"


@dataclass(frozen=True)
class StackUser:
    """A user the stack's services log in as, and its permission on the shared resources."""

    username: str
    password: str
    permission: str


class UserError(RuntimeError):
    """The auth store refused a user or a grant."""


def stack_users(settings: TrackingSettings) -> list[StackUser]:
    """The trainer (EDIT) and the model server (READ)."""
    assert settings.trainer_password and settings.model_server_password  # checked by settings
    return [
        StackUser(
            settings.trainer_username,
            settings.trainer_password.get_secret_value(),
            TRAINER_PERMISSION,
        ),
        StackUser(
            settings.model_server_username,
            settings.model_server_password.get_secret_value(),
            MODEL_SERVER_PERMISSION,
        ),
    ]


def creators(settings: TrackingSettings) -> list[str]:
    """Who may create experiments and registered models (tracking/authz.py): admin, trainer."""
    return [ADMIN_USERNAME, settings.trainer_username]


def ensure_users(
    auth_store_uri: str,
    users: list[StackUser],
    model_name: str | None,
    experiment_id: str | None,
) -> list[str]:
    """Create or update the users and grant their permission on the existing resources.

    Args:
        auth_store_uri: the basic-auth store (migrated here if new).
        users: from `stack_users`.
        model_name: the registered model, or None when it does not exist yet.
        experiment_id: the experiment, or None when it does not exist yet.

    Returns:
        One line per change, for the log (no password).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(auth_store_uri)
    done = []
    for user in users:
        try:
            if store.has_user(user.username, use_primary=True):
                store.update_user(user.username, password=user.password)
                done.append(f"user {user.username}: password set")
            else:
                store.create_user(user.username, user.password)
                done.append(f"user {user.username}: created")
            for resource_type, resource in (
                ("registered_model", model_name),
                ("experiment", experiment_id),
            ):
                if resource is not None:
                    store.grant_user_permission(
                        user.username, resource_type, resource, user.permission
                    )
                    done.append(
                        f"user {user.username}: {user.permission} on {resource_type} {resource}"
                    )
        except MlflowException as error:
            raise UserError(f"user {user.username}: {error.message}") from None
    return done
