"""`python -m tracking migrate`: bring the tracking store's schema to this MLflow's version.

A new MLflow release ships alembic migrations, and its server refuses a database whose schema
is behind ("Detected out-of-date database schema", mlflow/store/db/utils.py _verify_schema).
This is `mlflow db upgrade` (mlflow/db.py, run in-process so the database URI with its password
stays out of argv), for the store of the TRACKING_* settings; with TRACKING_AUTH=true the
basic-auth store too. Where it runs:

- compose: the one-shot `mlflow-migrate` service, which `mlflow` waits for;
- Kubernetes: the `migrate` init container of the mlflow Deployment;
- natively: `python -m tracking` itself, before the server starts (TRACKING_UPGRADE_DB, true by
  default; the image sets it false, so a container never migrates behind the operator's back
  and only checks, see `check_schema`).

Take a backup first: MLflow's migrations are not guaranteed to be transactional.
"""

from __future__ import annotations

import sys
import time

from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from tracking.settings import SettingsError, TrackingSettings, load_settings
from tracking.stores import StoreError, ensure_auth_database


class SchemaError(RuntimeError):
    """The schema is not the one this MLflow needs; the message says what to run."""


def wait_for_database(settings: TrackingSettings) -> None:
    """Wait until the backend store answers (PostgreSQL may still be starting)."""
    engine = create_engine(settings.backend_uri())
    deadline = time.monotonic() + settings.startup_timeout
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("select 1"))
                return
            except SQLAlchemyError as error:
                if time.monotonic() > deadline:
                    first = str(error.orig or error).strip().splitlines()[0]
                    raise StoreError(f"tracking store not reachable: {first}") from None
                time.sleep(2)
    finally:
        engine.dispose()


def schema_revisions(uri: str) -> tuple[str | None, str]:
    """(the database's alembic revision or None when empty, the revision this MLflow needs)."""
    from mlflow.store.db.utils import (
        _get_latest_schema_revision,
        _get_schema_version,
        create_sqlalchemy_engine_with_retry,
    )

    engine = create_sqlalchemy_engine_with_retry(uri)
    try:
        return _get_schema_version(engine), _get_latest_schema_revision()
    finally:
        engine.dispose()


def upgrade(settings: TrackingSettings) -> str:
    """Migrate the stores (a new database gets MLflow's tables); returns a line for the log."""
    import mlflow.db

    uri = settings.backend_uri()
    if settings.is_postgresql():
        wait_for_database(settings)
    before, head = schema_revisions(uri)
    if before != head:
        # The body of `mlflow db upgrade URL`, without the URL in argv.
        mlflow.db.upgrade.callback(uri)
    if settings.auth:
        from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

        if settings.is_postgresql():
            ensure_auth_database(settings)
        # init_db runs the auth store's own alembic migrations (mlflow/server/auth/db/utils.py).
        SqlAlchemyStore().init_db(settings.auth_store_uri())
    if before == head:
        return f"schema already at {head}"
    return f"schema upgraded from {before or 'an empty database'} to {head}"


def check_schema(settings: TrackingSettings) -> None:
    """Fail in one line, before the server starts, when the schema is not this MLflow's.

    Raises:
        SchemaError: the schema is behind (or the database is empty): run the migration.
    """
    if settings.is_postgresql():
        wait_for_database(settings)
    current, head = schema_revisions(settings.backend_uri())
    if current != head:
        found = "an empty database" if current is None else f"schema {current}"
        raise SchemaError(
            f"the tracking store has {found}, this MLflow needs {head}: back it up, then run "
            "`python -m tracking migrate` (compose: the mlflow-migrate service)"
        )


def prepare_schema(settings: TrackingSettings) -> None:
    """What `python -m tracking` does before the server: migrate, or (in images) only check."""
    if settings.upgrade_db:
        print(f"tracking server: {upgrade(settings)}", flush=True)
    else:
        check_schema(settings)


def main() -> int:
    """Migrate and exit: 0 done, 2 bad settings, 1 the store could not be migrated."""
    try:
        settings = load_settings()
        print(f"tracking migrate: {upgrade(settings)}", flush=True)
    except SettingsError as error:
        print(f"tracking migrate: invalid settings: {error}", file=sys.stderr)
        return 2
    except (StoreError, SQLAlchemyError) as error:
        print(f"tracking migrate: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0
