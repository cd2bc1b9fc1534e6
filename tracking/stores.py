"""The databases behind the server: wait for PostgreSQL, create the auth database, and look up
what the tracking store already holds (before `mlflow server` has migrated it, if new)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from tracking.settings import TrackingSettings


class StoreError(RuntimeError):
    """A store that cannot be reached or prepared; the message says which (no password)."""


@dataclass(frozen=True)
class Existing:
    """The shared resources already in the tracking store (None: not there yet)."""

    model_name: str | None
    experiment_id: str | None


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


def find_existing(settings: TrackingSettings) -> Existing:
    """The registered model and the active experiment of the settings, if they exist.

    A new store has no tables yet (`mlflow server` migrates it when it starts): nothing exists.
    """
    engine = create_engine(settings.backend_uri())
    try:
        tables = set(inspect(engine).get_table_names())
        model = experiment = None
        with engine.connect() as conn:
            if "registered_models" in tables:
                model = conn.execute(
                    text("select name from registered_models where name = :name"),
                    {"name": settings.model_name},
                ).scalar()
            if "experiments" in tables:
                experiment = conn.execute(
                    text(
                        "select experiment_id from experiments"
                        " where name = :name and lifecycle_stage = 'active'"
                    ),
                    {"name": settings.experiment_name},
                ).scalar()
        return Existing(model, None if experiment is None else str(experiment))
    finally:
        engine.dispose()
