"""The decision log against real stores: PostgreSQL on 127.0.0.1:5432 and a SQLite file.

Batches are written, a full queue drops and counts without waiting (a real PostgreSQL held
by a table lock is the stuck store), the store going away drops and counts and logging
resumes, retention deletes old rows, and the hashed mode keeps no input value.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pandas
import psycopg
import pytest
from prometheus_client import CollectorRegistry

from serving.decisions import DecisionLog, DecisionMetrics, DecisionSettings, open_store
from serving.decisions.__main__ import main as decisions_cli
from serving.decisions.stores import PostgresStore

ROWS = [
    {"income": 52000.0, "home_ownership": "RENT", "debt_to_income": float("nan")},
    {"income": 81000.0, "home_ownership": "OWN", "debt_to_income": 12.5},
]
OUTPUTS = [{"probability": 0.12, "label": 0}, {"probability": 0.71, "label": 1}]
WINDOW = (datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=1))


@pytest.fixture(params=["postgresql", "sqlite"])
def store_uri(request, tmp_path):
    """A migrated, empty store of each kind."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path}/decisions.db"
    else:
        uri = request.getfixturevalue("postgres_database")
    store = open_store(uri)
    store.ensure_database()
    assert "migrated from level 0" in store.migrate()
    assert "already at level" in store.migrate()
    store.close()
    return uri


def make_log(uri: str, **settings) -> tuple[DecisionLog, CollectorRegistry]:
    registry = CollectorRegistry()
    values = {"store_uri": uri, "flush_interval": 0.1, **settings}
    return DecisionLog(DecisionSettings(**values), DecisionMetrics(registry)), registry


def counted(registry: CollectorRegistry, name: str, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def read_all(uri: str):
    store = open_store(uri)
    try:
        return store.read(*WINDOW)
    finally:
        store.close()


def test_batches_are_written_with_version_key_and_outputs(store_uri):
    decision_log, registry = make_log(store_uri, batch_size=7)
    for number in range(20):
        assert decision_log.record(
            f"req-{number}", "apex-prod", "credit-risk", "3", ROWS, OUTPUTS, 4.5
        )
    assert decision_log.flush(timeout=30)
    decision_log.close()
    rows = read_all(store_uri)
    assert len(rows) == 40
    assert {row.request_id for row in rows} == {f"req-{n}" for n in range(20)}
    first = [row for row in rows if row.request_id == "req-0"]
    assert [row.row_index for row in first] == [0, 1]
    assert first[0].inputs == {"income": 52000.0, "home_ownership": "RENT", "debt_to_income": None}
    assert first[1].outputs == OUTPUTS[1]
    assert {(r.key_name, r.model_name, r.model_version, r.role) for r in rows} == {
        ("apex-prod", "credit-risk", "3", "champion")
    }
    assert counted(registry, "model_server_decisions_logged_total", role="champion") == 40


def test_dataframes_are_accepted(store_uri):
    decision_log, _ = make_log(store_uri)
    decision_log.record(
        "req-df", None, "credit-risk", "1", pandas.DataFrame(ROWS), pandas.DataFrame(OUTPUTS), 1
    )
    assert decision_log.flush(timeout=30)
    decision_log.close()
    rows = read_all(store_uri)
    assert [row.outputs["label"] for row in rows] == [0, 1]
    assert rows[0].inputs["debt_to_income"] is None


def test_hashed_mode_keeps_no_input_value(store_uri, tmp_path):
    key_file = tmp_path / "hash.key"
    key_file.write_text("k" * 40)
    decision_log, _ = make_log(store_uri, mode="hashed", hash_key_file=key_file)
    decision_log.record("req-h", "apex-prod", "credit-risk", "1", ROWS, OUTPUTS, 2)
    assert decision_log.flush(timeout=30)
    decision_log.close()
    stored = read_all(store_uri)
    assert stored[0].input_mode == "hashed"
    text = json.dumps([row.inputs for row in stored])
    assert "RENT" not in text and "52000" not in text
    assert stored[0].inputs["home_ownership"] == decision_log.hash_value("home_ownership", "RENT")
    assert stored[0].inputs["home_ownership"] != stored[1].inputs["home_ownership"]


def test_off_mode_records_nothing(store_uri):
    decision_log, registry = make_log(store_uri, mode="off")
    assert decision_log.record("req-off", None, "credit-risk", "1", ROWS, OUTPUTS, 1) is False
    decision_log.close()
    assert read_all(store_uri) == []
    assert decision_log._thread is None


def test_full_queue_drops_and_counts_while_the_store_is_stuck(postgres_database):
    """A table lock held by another session makes the writer's COPY wait: the queue fills,
    record() keeps returning at once, and what does not fit is dropped and counted."""
    store = open_store(postgres_database)
    store.migrate()
    store.close()
    decision_log, registry = make_log(postgres_database, queue_size=3, batch_size=1)
    with psycopg.connect(postgres_database) as locker:
        locker.execute("lock table decisions in access exclusive mode")
        # The writer takes the first entry and blocks on the lock; then the queue fills.
        assert decision_log.record("stuck-0", None, "credit-risk", "1", ROWS, OUTPUTS, 1)
        wait_until_taken(decision_log)
        accepted = [
            decision_log.record(f"stuck-{n}", None, "credit-risk", "1", ROWS, OUTPUTS, 1)
            for n in range(1, 11)
        ]
        assert accepted == [True] * 3 + [False] * 7
        assert counted(
            registry, "model_server_decisions_dropped_total", role="champion", reason="queue_full"
        ) == 14  # fmt: skip
        locker.rollback()  # releases the lock
    assert decision_log.flush(timeout=30)
    decision_log.close()
    assert sorted(row.request_id for row in read_all(postgres_database)) == sorted(
        [f"stuck-{n}" for n in range(4) for _ in range(2)]
    )


def wait_until_taken(decision_log: DecisionLog) -> None:
    """Until the writer took the first entry off the queue (it then waits on the lock)."""
    done = threading.Event()
    for _ in range(3000):
        if decision_log._queue.qsize() == 0:
            done.set()
            break
        done.wait(0.01)
    assert done.is_set(), "the writer never took the first entry"


def test_store_down_drops_counts_and_resumes(postgres_database):
    decision_log, registry = make_log(postgres_database)
    # No table yet: the store refuses the batch, like a database that is down.
    decision_log.record("lost", None, "credit-risk", "1", ROWS, OUTPUTS, 1)
    assert decision_log.flush(timeout=30)
    assert counted(
        registry, "model_server_decisions_dropped_total", role="champion", reason="store_error"
    ) == 2  # fmt: skip
    store = open_store(postgres_database)
    store.migrate()
    store.close()
    decision_log.record("kept", None, "credit-risk", "1", ROWS, OUTPUTS, 1)
    assert decision_log.flush(timeout=30)
    decision_log.close()
    assert {row.request_id for row in read_all(postgres_database)} == {"kept"}


def test_unreachable_postgres_never_blocks_record(tmp_path):
    decision_log, registry = make_log(
        "postgresql://postgres@127.0.0.1:9/none", connect_timeout=1, queue_size=2
    )
    results = [
        decision_log.record(f"r{n}", None, "credit-risk", "1", ROWS, OUTPUTS, 1) for n in range(50)
    ]
    assert results.count(True) <= 3  # the writer may take one while the rest pile up
    assert decision_log.flush(timeout=60)
    decision_log.close()
    dropped = sum(
        counted(registry, "model_server_decisions_dropped_total", role="champion", reason=reason)
        for reason in ("queue_full", "store_error")
    )
    assert dropped == 100


def test_retention_deletes_old_rows(store_uri):
    decision_log, _ = make_log(store_uri, retention_days=30)
    decision_log.record("new", None, "credit-risk", "1", ROWS, OUTPUTS, 1)
    decision_log.record("old", None, "credit-risk", "1", ROWS, OUTPUTS, 1)
    assert decision_log.flush(timeout=30)
    decision_log.close()
    age(store_uri, "old", days=31)
    store = open_store(store_uri)
    assert store.prune(datetime.now(UTC) - timedelta(days=30)) == 2
    store.close()
    assert {row.request_id for row in read_all(store_uri)} == {"new"}


def test_prune_command_applies_the_retention_setting(store_uri, monkeypatch, capsys):
    decision_log, _ = make_log(store_uri)
    decision_log.record("old", None, "credit-risk", "1", ROWS, OUTPUTS, 1)
    assert decision_log.flush(timeout=30)
    decision_log.close()
    age(store_uri, "old", days=11)
    monkeypatch.setenv("DECISIONS_STORE_URI", store_uri)
    monkeypatch.setenv("DECISIONS_RETENTION_DAYS", "10")
    assert decisions_cli(["prune"]) == 0
    assert "deleted 2 rows" in capsys.readouterr().out
    assert read_all(store_uri) == []


def test_migrate_command_creates_the_database(postgres_database, monkeypatch, capsys):
    uri = postgres_database + "_new"
    monkeypatch.setenv("DECISIONS_STORE_URI", uri)
    try:
        assert decisions_cli(["migrate"]) == 0
        out = capsys.readouterr().out
        assert "created the database" in out and "migrated from level 0 to 1" in out
        assert read_all(uri) == []
    finally:
        with psycopg.connect(
            "host=127.0.0.1 user=postgres dbname=postgres", autocommit=True
        ) as admin:
            admin.execute(f'drop database if exists "{uri.rsplit("/", 1)[1]}" with (force)')


def test_migrate_command_names_the_problem_without_the_password(monkeypatch, capsys):
    monkeypatch.setenv("DECISIONS_STORE_URI", "postgresql://u:s3cr3t-pw@127.0.0.1:9/x")
    monkeypatch.setenv("DECISIONS_CONNECT_TIMEOUT", "1")
    assert decisions_cli(["migrate"]) == 1
    err = capsys.readouterr().err
    assert "127.0.0.1:9/x" in err and "s3cr3t-pw" not in err and len(err.splitlines()) == 1


def age(uri: str, request_id: str, days: int) -> None:
    """Move a request's rows `days` into the past, in the store itself."""
    store = open_store(uri)
    moment = datetime.now(UTC) - timedelta(days=days)
    value = moment if isinstance(store, PostgresStore) else moment.timestamp()
    conn = store._connection()
    with store._transaction(conn) as cursor:
        cursor.execute(
            f"update decisions set decided_at = {store.placeholder} "  # noqa: S608
            f"where request_id = {store.placeholder}",
            (value, request_id),
        )
    store.close()


def test_native_sqlite_file_is_made_by_the_writer(tmp_path):
    """Natively (make up) nothing runs a migration: the server's own SQLite file gets its
    table from the writer; PostgreSQL never does (test_store_down_drops_counts_and_resumes)."""
    uri = f"sqlite:///{tmp_path}/new/decisions.db"
    decision_log, registry = make_log(uri)
    decision_log.record("first", "apex-dev", "credit-risk", "1", ROWS, OUTPUTS, 1)
    assert decision_log.flush(timeout=30)
    decision_log.close()
    assert [row.request_id for row in read_all(uri)] == ["first", "first"]
    assert counted(registry, "model_server_decisions_logged_total", role="champion") == 2


def test_migrate_waits_for_a_store_that_is_not_up_yet(monkeypatch, capsys):
    """--wait retries an unreachable PostgreSQL (k8s init containers may start before it),
    then gives up with the same one line."""
    monkeypatch.setenv("DECISIONS_STORE_URI", "postgresql://u@127.0.0.1:9/x")
    monkeypatch.setenv("DECISIONS_CONNECT_TIMEOUT", "1")
    started = datetime.now(UTC)
    assert decisions_cli(["migrate", "--wait", "3"]) == 1
    assert datetime.now(UTC) - started >= timedelta(seconds=3)
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_reading_a_missing_sqlite_file_says_so_and_creates_nothing(tmp_path):
    from serving.decisions import StoreError

    store = open_store(f"sqlite:///{tmp_path}/none/decisions.db")
    with pytest.raises(StoreError, match="does not exist yet"):
        store.read(*WINDOW)
    assert not (tmp_path / "none").exists()


def test_writer_reconnects_after_the_server_closed_its_connection(postgres_database):
    """A restart or `pg_ctl stop` ends the writer's session under it: the next write fails
    (dropped, counted), the writer waits, reconnects, and logs again."""
    store = open_store(postgres_database)
    store.migrate()
    store.close()
    decision_log, registry = make_log(postgres_database, reconnect_backoff_max=0.5)
    decision_log.record("before", None, "credit-risk", "1", ROWS, OUTPUTS, 1)
    assert decision_log.flush(timeout=30)
    database = postgres_database.rsplit("/", 1)[1]
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as admin:
        ended = admin.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = %s",
            (database,),
        ).fetchone()[0]
        assert ended == 1, "the writer's one session"
        # pg_terminate_backend only signals the backend: wait until it is gone, or the next
        # write may still reach the old session.
        deadline = time.monotonic() + 30
        while admin.execute(
            "select count(*) from pg_stat_activity where datname = %s", (database,)
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the writer's session did not end"
            time.sleep(0.05)
    decision_log.record("cut", None, "credit-risk", "1", ROWS, OUTPUTS, 1)
    assert decision_log.flush(timeout=30)
    assert counted(
        registry, "model_server_decisions_dropped_total", role="champion", reason="store_error"
    ) == 2  # fmt: skip
    decision_log.record("after", None, "credit-risk", "1", ROWS, OUTPUTS, 1)
    assert decision_log.flush(timeout=30)
    decision_log.close()
    assert {row.request_id for row in read_all(postgres_database)} == {"before", "after"}
    assert counted(registry, "model_server_decisions_logged_total", role="champion") == 4


def test_migrate_makes_a_writer_role_that_may_only_insert(
    postgres_database, monkeypatch, capsys, tmp_path
):
    """The migration (as the owner) creates the model server's role: LOGIN with a SCRAM
    password from a file, INSERT on `decisions`; it cannot read, delete or create."""
    role = f"writer_{uuid.uuid4().hex[:10]}"
    password_file = tmp_path / "writer-password"
    password_file.write_text("writer-password-for-a-test\n")
    monkeypatch.setenv("DECISIONS_STORE_URI", postgres_database)
    monkeypatch.setenv("DECISIONS_WRITER_ROLE", role)
    monkeypatch.setenv("DECISIONS_WRITER_PASSWORD_FILE", str(password_file))
    try:
        assert decisions_cli(["migrate"]) == 0
        assert f"role {role} created: INSERT on decisions only" in capsys.readouterr().out
        os.environ.pop("DECISIONS_WRITER_PASSWORD")  # read from the file into the environment
        assert decisions_cli(["migrate"]) == 0  # again: the password is set again (rotation)
        assert f"role {role} updated" in capsys.readouterr().out
        with psycopg.connect(postgres_database) as owner:
            verifier = owner.execute(
                "select rolpassword from pg_authid where rolname = %s", (role,)
            ).fetchone()[0]
        assert verifier.startswith("SCRAM-SHA-256$")

        writer_uri = postgres_database.replace("postgres@", f"{role}@", 1)
        decision_log, registry = make_log(writer_uri, prune_interval=0)
        decision_log.record("by-writer", "apex", "credit-risk", "1", ROWS, OUTPUTS, 1)
        assert decision_log.flush(timeout=30)
        decision_log.close()
        assert counted(registry, "model_server_decisions_logged_total", role="champion") == 2
        assert [r.request_id for r in read_all(postgres_database)] == ["by-writer"] * 2

        for statement in (
            "select count(*) from decisions",
            "delete from decisions",
            "select level from decision_log_schema",
            "create table stolen (x int)",
        ):
            with (
                psycopg.connect(writer_uri, autocommit=True) as writer,
                pytest.raises(psycopg.errors.InsufficientPrivilege),
            ):
                writer.execute(statement)
    finally:
        os.environ.pop("DECISIONS_WRITER_PASSWORD", None)
        with psycopg.connect(postgres_database, autocommit=True) as owner:
            owner.execute(f'drop owned by "{role}"')
            owner.execute(f'drop role if exists "{role}"')
