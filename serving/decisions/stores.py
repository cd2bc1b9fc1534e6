"""Where decisions are kept: PostgreSQL (compose, Kubernetes) or SQLite (native, under .local/).

Both stores have one table, `decisions`, one row per scored row, indexed by time and by
request id, and a `decision_log_schema` table with the migration level. The schema is made by
`python -m serving.decisions migrate` (the stack runs it before the model server starts), never
by the model server itself. In compose and Kubernetes the model server logs in as its own role,
made by the migration with INSERT on `decisions` and nothing else (`grant_writer`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

COLUMNS = (
    "decided_at",
    "request_id",
    "row_index",
    "key_name",
    "model_name",
    "model_version",
    "role",
    "input_mode",
    "inputs",
    "outputs",
    "latency_ms",
)
"""The columns a writer fills, in this order (a `StoredRow`)."""

# Each migration: (level, statements). {id}, {time} and {json} are the dialect's types.
MIGRATIONS = (
    (
        1,
        (
            """create table if not exists decisions (
                id {id},
                decided_at {time} not null,
                request_id text not null,
                row_index integer not null,
                key_name text,
                model_name text not null,
                model_version text not null,
                role text not null,
                input_mode text not null,
                inputs {json},
                outputs {json} not null,
                latency_ms double precision not null
            )""",
            "create index if not exists decisions_decided_at on decisions (decided_at)",
            "create index if not exists decisions_request_id on decisions (request_id)",
        ),
    ),
)
SCHEMA_LEVEL = MIGRATIONS[-1][0]


class StoreError(RuntimeError):
    """The store cannot be reached or refused a statement; the message has no password."""


class StoredRow(NamedTuple):
    """One scored row as stored, its values in COLUMNS order. `inputs` and `outputs` are JSON
    text; `decided_at` is the store's own time value (`time_value`: a datetime for PostgreSQL,
    seconds for SQLite), made once per request by the writer. A tuple, not a dataclass: the
    writer makes one per scored row, and the stores hand it to the driver as it is."""

    decided_at: datetime | float
    request_id: str
    row_index: int
    key_name: str | None
    model_name: str
    model_version: str
    role: str
    input_mode: str
    inputs: str | None
    outputs: str
    latency_ms: float


@dataclass(frozen=True)
class Decision:
    """One scored row read back: inputs and outputs as dicts."""

    decided_at: datetime
    request_id: str
    row_index: int
    key_name: str | None
    model_name: str
    model_version: str
    role: str
    input_mode: str
    inputs: dict | None
    outputs: dict
    latency_ms: float


def open_store(
    uri: str, connect_timeout: float = 5.0, password: str | None = None
) -> PostgresStore | SQLiteStore:
    """The store of a DECISIONS_STORE_URI (and password, for PostgreSQL)."""
    if uri.startswith("sqlite:///"):
        return SQLiteStore(Path(uri.removeprefix("sqlite:///")), connect_timeout)
    return PostgresStore(uri, connect_timeout, password)


class _Store:
    """What both stores share: the migration loop and reading rows back."""

    dialect: dict[str, str]
    placeholder: str

    def _connection(self):  # pragma: no cover - each store has its own
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def migrate(self) -> str:
        """Bring the schema to SCHEMA_LEVEL; returns a line for the log."""
        conn = self._connection()
        with self._transaction(conn) as cursor:
            cursor.execute("create table if not exists decision_log_schema (level integer)")
            cursor.execute("select max(level) from decision_log_schema")
            before = cursor.fetchone()[0] or 0
            for level, statements in MIGRATIONS:
                if level > before:
                    for statement in statements:
                        cursor.execute(statement.format(**self.dialect))
                    cursor.execute(
                        # Only the dialect's placeholder is formatted in; values are bound.
                        f"insert into decision_log_schema (level) values ({self.placeholder})",  # noqa: S608
                        (level,),
                    )
        if before == SCHEMA_LEVEL:
            return f"decision log schema already at level {SCHEMA_LEVEL}"
        return f"decision log schema migrated from level {before} to {SCHEMA_LEVEL}"

    def read(
        self,
        start: datetime,
        end: datetime,
        model_name: str | None = None,
        roles: tuple[str, ...] | None = None,
    ) -> list[Decision]:
        """The rows decided in [start, end), oldest first, optionally of one model and roles."""
        p = self.placeholder
        where = [f"decided_at >= {p}", f"decided_at < {p}"]
        params: list = [self.time_value(start), self.time_value(end)]
        if model_name is not None:
            where.append(f"model_name = {p}")
            params.append(model_name)
        if roles:
            where.append(f"role in ({', '.join([p] * len(roles))})")
            params.extend(roles)
        query = (
            # Column names and placeholders are this module's constants; values are bound.
            f"select {', '.join(COLUMNS)} from decisions where {' and '.join(where)} "  # noqa: S608
            "order by decided_at, request_id, row_index"
        )
        conn = self._connection()
        with self._transaction(conn) as cursor:
            cursor.execute(query, params)
            rows = cursor.fetchall()
        return [self._decision(row) for row in rows]

    def prune(self, before: datetime) -> int:
        """Delete rows decided before `before` (the retention); returns how many."""
        conn = self._connection()
        with self._transaction(conn) as cursor:
            cursor.execute(
                f"delete from decisions where decided_at < {self.placeholder}",  # noqa: S608
                (self.time_value(before),),
            )
            return cursor.rowcount

    def _decision(self, row) -> Decision:
        values = dict(zip(COLUMNS, row, strict=True))
        values["decided_at"] = self._datetime(values["decided_at"])
        values["inputs"] = _json(values["inputs"])
        values["outputs"] = _json(values["outputs"])
        return Decision(**values)

    def time_value(self, moment: datetime):
        """How this store's `decided_at` holds a moment (bound as a parameter, written)."""
        return moment

    def _datetime(self, value) -> datetime:
        return value


def _json(value):
    if value is None or isinstance(value, dict):
        return value
    return json.loads(value)


class PostgresStore(_Store):
    """PostgreSQL through psycopg: COPY for batches, one connection per writer."""

    dialect = {"id": "bigint generated always as identity primary key",
               "time": "timestamptz", "json": "jsonb"}  # fmt: skip
    placeholder = "%s"

    def __init__(self, uri: str, connect_timeout: float = 5.0, password: str | None = None):
        self.uri = uri.replace("postgres://", "postgresql://", 1)
        self.connect_timeout = connect_timeout
        # A keyword, not part of the URI: a password needs no URL quoting this way.
        self._extra = {"password": password} if password else {}
        self._conn = None

    @property
    def where(self) -> str:
        """host:port/database, for messages (never the password)."""
        parts = urlsplit(self.uri)
        return f"{parts.hostname}:{parts.port or 5432}{parts.path}"

    def _connection(self):
        import psycopg

        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(
                    self.uri,
                    connect_timeout=max(1, round(self.connect_timeout)),
                    autocommit=True,
                    **self._extra,
                )
            except psycopg.Error as error:
                raise StoreError(f"decision store {self.where}: {_first_line(error)}") from None
        return self._conn

    def _transaction(self, conn):
        return _PostgresTransaction(self, conn)

    def write(self, rows: list[StoredRow]) -> None:
        """Store rows in one transaction (COPY)."""
        conn = self._connection()
        statement = f"copy decisions ({', '.join(COLUMNS)}) from stdin"
        with self._transaction(conn) as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def grant_writer(self, role: str, password: str) -> str:
        """Create the model server's role, or set its password, with INSERT on `decisions`
        and nothing else; returns a line for the log. Run by the migration, as the owner.

        Only INSERT: the writer's COPY needs nothing more (PostgreSQL's COPY FROM requires
        INSERT), so a compromised model server cannot read back the applicants' data, delete
        rows or create tables. The password goes to the server as a SCRAM verifier computed
        here (libpq's PQencryptPasswordConn), so no statement log holds it in clear.
        """
        import psycopg
        from psycopg import sql

        name = sql.Identifier(role)
        database = sql.Identifier(urlsplit(self.uri).path.lstrip("/"))
        conn = self._connection()
        try:
            verifier = conn.pgconn.encrypt_password(password.encode(), role.encode()).decode()
        except psycopg.Error as error:
            raise StoreError(f"decision store {self.where}: {_first_line(error)}") from None
        try:
            with self._transaction(conn) as cursor:
                cursor.execute("select 1 from pg_roles where rolname = %s", (role,))
                verb = "updated" if cursor.fetchone() else "created"
                cursor.execute(
                    sql.SQL(
                        "{} role {} with login nosuperuser nocreatedb nocreaterole noinherit "
                        "noreplication nobypassrls password {}"
                    ).format(
                        sql.SQL("alter" if verb == "updated" else "create"),
                        name,
                        sql.Literal(verifier),
                    )
                )
                if conn.info.server_version < 150000:
                    # Before PostgreSQL 15 every role may create tables in `public`.
                    cursor.execute("revoke create on schema public from public")
                grants = (
                    "grant connect on database {database} to {role}",
                    "grant usage on schema public to {role}",
                    "revoke all on all tables in schema public from {role}",
                    "grant insert on decisions to {role}",
                )
                for grant in grants:
                    cursor.execute(sql.SQL(grant).format(database=database, role=name))
        except StoreError as error:
            raise StoreError(
                f"{error} (setting up the role {role}: the migration's user needs CREATEROLE)"
            ) from None
        return f"role {role} {verb}: INSERT on decisions only"

    def ensure_database(self) -> bool:
        """Create the database of the URI when missing (the migration's first step).

        Connects to the server's `postgres` maintenance database for that; returns True when
        the database was created.
        """
        import psycopg
        from psycopg import sql

        parts = urlsplit(self.uri)
        name = parts.path.lstrip("/")
        maintenance = parts._replace(path="/postgres").geturl()
        timeout = max(1, round(self.connect_timeout))
        try:
            with psycopg.connect(self.uri, connect_timeout=timeout, **self._extra):
                return False
        except psycopg.OperationalError as error:
            if "does not exist" not in str(error):
                raise StoreError(f"decision store {self.where}: {_first_line(error)}") from None
        try:
            with psycopg.connect(
                maintenance, connect_timeout=timeout, autocommit=True, **self._extra
            ) as conn:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        except psycopg.Error as error:
            raise StoreError(
                f"decision store {self.where}: the database does not exist and cannot be "
                f"created ({_first_line(error)}); create it, then run the migration again"
            ) from None
        return True


class _PostgresTransaction:
    """A cursor in a transaction; any psycopg error becomes a StoreError and drops the
    connection, so the next call reconnects (the database may have restarted)."""

    def __init__(self, store: PostgresStore, conn):
        self.store, self.conn = store, conn

    def __enter__(self):
        import psycopg

        try:
            self._transaction = self.conn.transaction()
            self._transaction.__enter__()
        except psycopg.Error as error:
            # BEGIN on a connection the server closed (a restart, `pg_ctl stop`): the client
            # only learns it here, and __exit__ does not run for an __enter__ that raised.
            self.store.close()
            raise StoreError(f"decision store {self.store.where}: {_first_line(error)}") from None
        self.cursor = self.conn.cursor()
        return self.cursor

    def __exit__(self, kind, error, traceback):
        import psycopg

        try:
            self._transaction.__exit__(kind, error, traceback)
        except psycopg.Error as commit_error:
            error = error or commit_error
        if isinstance(error, psycopg.Error):
            self.store.close()
            raise StoreError(f"decision store {self.store.where}: {_first_line(error)}") from None
        return False


class SQLiteStore(_Store):
    """A SQLite file (WAL, so the workers' writers and a reader do not block each other)."""

    dialect = {"id": "integer primary key autoincrement", "time": "real", "json": "text"}
    placeholder = "?"

    def __init__(self, path: Path, connect_timeout: float = 5.0):
        self.path = path
        self.connect_timeout = connect_timeout
        self._conn: sqlite3.Connection | None = None

    @property
    def where(self) -> str:
        return str(self.path)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._conn = sqlite3.connect(
                    self.path, timeout=self.connect_timeout, check_same_thread=False
                )
                self._conn.execute("pragma journal_mode=wal")
                # In WAL mode "normal" syncs at checkpoints, not at every commit: a crash of
                # the server loses nothing, a power cut at most the last commits. The writer
                # commits every batch (50 ms), and a sync per commit cost 14 % of one-row
                # throughput (bench/README.md, "Paired comparisons").
                self._conn.execute("pragma synchronous=normal")
            except (OSError, sqlite3.Error) as error:
                self._conn = None
                raise StoreError(f"decision store {self.path}: {error}") from None
        return self._conn

    def _transaction(self, conn):
        return _SQLiteTransaction(self, conn)

    def read(self, start, end, model_name=None, roles=None) -> list[Decision]:
        # A reader never creates the file (connecting would): say what is missing instead.
        if not self.path.exists():
            raise StoreError(
                f"decision store {self.path} does not exist yet: no decision was logged there"
            )
        return super().read(start, end, model_name, roles)

    def write(self, rows: list[StoredRow]) -> None:
        conn = self._connection()
        marks = ", ".join("?" * len(COLUMNS))
        with self._transaction(conn) as cursor:
            cursor.executemany(
                f"insert into decisions ({', '.join(COLUMNS)}) values ({marks})",  # noqa: S608
                rows,
            )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def ensure_database(self) -> bool:
        created = not self.path.exists()
        self._connection()
        return created

    def time_value(self, moment: datetime) -> float:
        return moment.timestamp()

    def _datetime(self, value) -> datetime:
        return datetime.fromtimestamp(value, UTC)


class _SQLiteTransaction:
    def __init__(self, store: SQLiteStore, conn: sqlite3.Connection):
        self.store, self.conn = store, conn

    def __enter__(self) -> sqlite3.Cursor:
        self.cursor = self.conn.cursor()
        return self.cursor

    def __exit__(self, kind, error, traceback):
        try:
            if error is None:
                self.conn.commit()
            else:
                self.conn.rollback()
        except sqlite3.Error as commit_error:
            error = error or commit_error
        if isinstance(error, sqlite3.Error):
            self.store.close()
            raise StoreError(f"decision store {self.store.path}: {error}") from None
        return False


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
