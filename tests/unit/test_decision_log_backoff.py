"""The decision log's writer when its store fails: it waits before the next attempt (0.5 s,
doubling, capped), entries wait in the queue meanwhile, record() never blocks, and logging
resumes by itself. The failing store is a real SQLite file whose folder cannot be made (a
plain file stands where the folder should be) until the test removes that file."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from serving.decisions import DecisionLog, DecisionMetrics, DecisionSettings, open_store
from serving.decisions.log import RETRY_FIRST_WAIT, Backoff
from stack.processes import wait_until

ROWS = [{"income": 52000.0}, {"income": 81000.0}]
OUTPUTS = [{"probability": 0.12, "label": 0}, {"probability": 0.71, "label": 1}]


def test_backoff_doubles_from_the_first_wait_up_to_the_cap_and_resets():
    backoff = Backoff(0.5, 5.0)
    assert backoff.wait(100.0) == 0
    assert [backoff.failed(100.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.wait(102.0) == 3.0 and backoff.wait(106.0) == 0
    backoff.succeeded()
    assert backoff.failures == 0 and backoff.wait(100.0) == 0
    assert backoff.failed(200.0) == 0.5


def test_backoff_cap_below_the_first_wait_is_the_wait():
    assert Backoff(RETRY_FIRST_WAIT, 0.2).failed(0.0) == 0.2


def test_backoff_survives_many_failures():
    backoff = Backoff(0.5, 30.0)
    assert [backoff.failed(0.0) for _ in range(2000)][-1] == 30.0


def counted(registry, name, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def blocked_log(tmp_path):
    blocker = tmp_path / "store"
    blocker.write_text("a file where the store's folder should be")
    settings = DecisionSettings(
        store_uri=f"sqlite:///{blocker}/decisions.db",
        flush_interval=0.05,
        queue_size=3,
        reconnect_backoff_max=0.4,
    )
    registry = CollectorRegistry()
    decision_log = DecisionLog(settings, DecisionMetrics(registry))
    yield decision_log, registry, blocker
    decision_log.close(timeout=5)


def test_a_failing_store_is_retried_after_a_wait_and_logging_resumes(blocked_log):
    decision_log, registry, blocker = blocked_log
    assert decision_log.record("lost", "apex", "credit-risk", "1", ROWS, OUTPUTS, 1.0)
    dropped = {"name": "model_server_decisions_dropped_total", "role": "champion"}
    wait_until(
        lambda: counted(registry, **dropped, reason="store_error") == 2, 10, "store_error drop"
    )
    assert decision_log._backoff.failures >= 1
    # While the writer waits, record() neither blocks nor raises: a full queue drops and counts.
    started = time.monotonic()
    accepted = [
        decision_log.record(f"held-{n}", "apex", "credit-risk", "1", ROWS, OUTPUTS, 1.0)
        for n in range(20)
    ]
    assert time.monotonic() - started < 5  # a bound on a hang, not a speed claim
    assert accepted.count(True) <= 4 and accepted.count(False) >= 16
    assert counted(registry, **dropped, reason="queue_full") == 2 * accepted.count(False)

    assert accepted[0], "the writer was waiting: the queue had room"
    blocker.unlink()  # the store can be made now: the held entries are written
    wait_until(lambda: decision_log._backoff.failures == 0, 10, "the writer reconnected")
    assert decision_log.record("kept", "apex", "credit-risk", "1", ROWS, OUTPUTS, 1.0)
    assert decision_log.flush(timeout=10)
    logged = counted(registry, "model_server_decisions_logged_total", role="champion")
    store = open_store(decision_log.settings.store_uri.get_secret_value())
    try:
        now = datetime.now(UTC)
        stored = store.read(now - timedelta(hours=1), now + timedelta(hours=1))
    finally:
        store.close()
    assert "lost" not in {d.request_id for d in stored}
    assert {"held-0", "kept"} <= {d.request_id for d in stored}
    assert len(stored) == logged >= 2
    total = 2 * (1 + 20 + 1)
    assert logged + sum(
        counted(registry, **dropped, reason=reason) for reason in ("queue_full", "store_error")
    ) == total  # fmt: skip


def test_the_writer_does_not_prune_with_a_zero_interval(tmp_path):
    settings = DecisionSettings(store_uri=f"sqlite:///{tmp_path}/d.db", prune_interval=0)
    decision_log = DecisionLog(settings, DecisionMetrics(CollectorRegistry()))
    decision_log._maybe_prune()
    assert decision_log._store is None  # not even opened for a deletion


def test_entries_still_queued_at_shutdown_during_an_outage_are_counted(blocked_log):
    """A worker that stops while the store is failing loses what is queued: counted as
    `shutdown`, so logged + dropped still equals what was recorded."""
    decision_log, registry, _blocker = blocked_log
    dropped = {"name": "model_server_decisions_dropped_total", "role": "champion"}
    decision_log._backoff.initial = 60.0  # no second attempt while the test runs
    assert decision_log.record("first", "apex", "credit-risk", "1", ROWS, OUTPUTS, 1.0)
    wait_until(lambda: decision_log._backoff.failures >= 1, 10, "the store failed once")
    held = [
        decision_log.record(f"held-{n}", "apex", "credit-risk", "1", ROWS, OUTPUTS, 1.0)
        for n in range(3)
    ]
    assert all(held), "the queue (3) had room while the writer waited"
    decision_log.close(timeout=0.1)  # shorter than the writer's wait: the held entries stay
    reasons = {
        reason: counted(registry, **dropped, reason=reason)
        for reason in ("queue_full", "store_error", "shutdown")
    }
    logged = counted(registry, "model_server_decisions_logged_total", role="champion")
    assert reasons == {"queue_full": 0, "store_error": 2, "shutdown": 2 * 3}, reasons
    assert logged == 0
