"""The databases behind the server: wait for PostgreSQL, create the auth database, and create
the stack's experiment (before `mlflow server` starts)."""

from __future__ import annotations

import time

from sqlalchemy.engine import make_url

from tracking.settings import TrackingSettings


class StoreError(RuntimeError):
    """A store that cannot be reached or prepared; the message says which (no password)."""


def _where(uri: str) -> str:
    url = make_url(uri)
    return f"{url.host}:{url.port or 5432}/{url.database}"


def ensure_auth_database(settings: TrackingSettings) -> None:
    """Create the auth database next to the backend one, waiting for PostgreSQL.

    The tracking store and the user store keep separate databases because each has its own
    alembic migrations. PostgreSQL may still be starting (compose, a new cluster): retry until
    TRACKING_STARTUP_TIMEOUT.
    """
    import psycopg
    from psycopg import sql

    # libpq wants a plain postgresql:// URI, without SQLAlchemy's +driver.
    backend = make_url(settings.backend_uri()).set(drivername="postgresql")
    deadline = time.monotonic() + settings.startup_timeout
    while True:
        try:
            conninfo = backend.render_as_string(hide_password=False)
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                found = conn.execute(
                    "select 1 from pg_database where datname = %s", (settings.auth_db_name,)
                ).fetchone()
                if not found:
                    name = sql.Identifier(settings.auth_db_name)
                    conn.execute(sql.SQL("create database {}").format(name))
                    print(f"tracking server: created database {settings.auth_db_name}", flush=True)
                return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                first_line = str(error).strip().splitlines()[0]
                raise StoreError(
                    f"PostgreSQL at {_where(settings.backend_uri())} not reachable: {first_line}"
                ) from None
            time.sleep(2)


def ensure_experiment(settings: TrackingSettings) -> str:
    """The stack's experiment, created now when missing; its id.

    With default_permission NO_PERMISSIONS the model server needs READ on this experiment
    (MLflow checks it when a version's artifacts are downloaded), and a grant needs an id: so
    the experiment exists before the server listens, instead of being created by the trainer
    after the users were set up. Opening MLflow's store creates or checks the schema first, as
    `mlflow server` does; the artifact location is the one the server gives its experiments
    (the served-artifacts proxy, mlflow/cli DEFAULT_ARTIFACTS_URI).
    """
    from mlflow.store.tracking import DEFAULT_ARTIFACTS_URI
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(settings.backend_uri(), DEFAULT_ARTIFACTS_URI)
    found = store.get_experiment_by_name(settings.experiment_name)
    if found is not None and found.lifecycle_stage == "active":
        return found.experiment_id
    return store.create_experiment(settings.experiment_name)
