"""serving/evidence.py: the request path's one call records the champion's decision with the
gateway's key name, and offers the rows to the shadow (real SQLite store, real threads)."""

import threading
from datetime import UTC, datetime, timedelta

import pandas as pd
from prometheus_client import CollectorRegistry

from serving.decisions import DecisionLog, DecisionMetrics, DecisionSettings, open_store
from serving.evidence import Evidence, RowView
from serving.shadow import ShadowMetrics, ShadowScorer, ShadowSettings
from stack.processes import wait_until

ROWS = [{"annual_income": 52000.0, "term": "36 months"}, {"annual_income": 81000.0, "term": None}]
OUTPUTS = [{"probability": 0.12, "label": 0}, {"probability": 0.71, "label": 1}]
WINDOW = (datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=1))


class HalfModel:
    """A challenger that scores every row 0.5."""

    def predict(self, rows):
        return [{"probability": 0.5, "label": 1} for _ in rows]


def test_scored_logs_both_roles_with_the_key_name(tmp_path):
    uri = f"sqlite:///{tmp_path}/decisions.db"
    decision_log = DecisionLog(
        DecisionSettings(store_uri=uri, flush_interval=0.1), DecisionMetrics(CollectorRegistry())
    )
    shadow = ShadowScorer(
        ShadowSettings(share=1.0), HalfModel(), "credit-risk", "2", decision_log,
        ShadowMetrics(CollectorRegistry()),
    )  # fmt: skip
    evidence = Evidence(decision_log, "credit-risk", "1", shadow)
    evidence.scored("req-1", {b"x-client": b"apex-prod"}, ROWS, OUTPUTS, 3.5)
    evidence.scored("req-2", {}, ROWS, OUTPUTS, 2.0)
    assert shadow.flush(timeout=30) and decision_log.flush(timeout=30)
    evidence.close()
    store = open_store(uri)
    rows = store.read(*WINDOW)
    store.close()
    by_role = {(r.request_id, r.role, r.row_index): r for r in rows}
    assert len(by_role) == 8
    assert by_role[("req-1", "champion", 0)].key_name == "apex-prod"
    assert by_role[("req-1", "challenger", 1)].model_version == "2"
    assert by_role[("req-1", "challenger", 1)].outputs == {"probability": 0.5, "label": 1}
    assert by_role[("req-2", "champion", 0)].key_name is None


class GatedModel:
    """A challenger that holds its first call until released and records every call's size;
    it raises on a row whose income is negative."""

    def __init__(self):
        self.calls: list[int] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def predict(self, frame):
        if not self.calls:
            self.entered.set()
            self.release.wait(30)
        self.calls.append(len(frame))
        if (frame["annual_income"] < 0).any():
            raise ValueError("negative income")
        return pd.DataFrame({"probability": [0.5] * len(frame), "label": [1] * len(frame)})


def _shadow_with(model, tmp_path, **settings):
    uri = f"sqlite:///{tmp_path}/decisions.db"
    decision_log = DecisionLog(
        DecisionSettings(store_uri=uri, flush_interval=0.1), DecisionMetrics(CollectorRegistry())
    )
    metrics = ShadowMetrics(CollectorRegistry())
    shadow = ShadowScorer(
        ShadowSettings(share=1.0, **settings), model, "credit-risk", "2", decision_log, metrics,
        build_frame=lambda columns, data: pd.DataFrame(data, columns=columns),
    )  # fmt: skip
    return uri, decision_log, metrics, shadow


def _rows(*incomes):
    return RowView(["annual_income", "term"], [[income, "36 months"] for income in incomes])


def test_queued_offers_are_scored_in_one_call_and_split_back_in_order(tmp_path):
    model = GatedModel()
    uri, decision_log, metrics, shadow = _shadow_with(model, tmp_path)
    assert shadow.offer("first", None, _rows(1.0))
    assert model.entered.wait(30)  # the first call runs; what is offered now queues
    for number in range(4):  # queued while the first call runs: one call for all four
        assert shadow.offer(f"queued-{number}", None, _rows(10.0 * number, 10.0 * number + 1))
    model.release.set()
    assert shadow.flush(timeout=30) and decision_log.flush(timeout=30)
    assert model.calls == [1, 8]
    assert metrics.scored._value.get() == 5
    store = open_store(uri)
    rows = {(r.request_id, r.row_index): r for r in store.read(*WINDOW)}
    store.close()
    assert len(rows) == 9
    for number in range(4):  # each request's own rows, in order, under its own id
        assert rows[(f"queued-{number}", 0)].inputs["annual_income"] == 10.0 * number
        assert rows[(f"queued-{number}", 1)].inputs["annual_income"] == 10.0 * number + 1
        assert rows[(f"queued-{number}", 1)].outputs == {"probability": 0.5, "label": 1}
    decision_log.close()


class CountingModel:
    """A challenger that records the size of every call."""

    def __init__(self):
        self.calls: list[int] = []

    def predict(self, frame):
        self.calls.append(len(frame))
        return pd.DataFrame({"probability": [0.5] * len(frame), "label": [1] * len(frame)})


def test_offers_arriving_while_a_call_fills_join_it(tmp_path):
    """SHADOW_BATCH_MAX_WAIT_MS: after taking its first request the shadow waits, so requests
    that arrive one by one (not only those already queued) share one model call."""
    model = CountingModel()
    uri, decision_log, metrics, shadow = _shadow_with(model, tmp_path, batch_max_wait_ms=1000)
    assert shadow.offer("first", None, _rows(1.0))
    wait_until(lambda: shadow._queue.qsize() == 0, 30, "the shadow took the first request")
    assert shadow.offer("second", None, _rows(2.0, 3.0))
    assert shadow.offer("third", None, _rows(4.0))
    assert shadow.flush(timeout=30) and decision_log.flush(timeout=30)
    assert model.calls == [4], "the three requests are one call"
    assert metrics.scored._value.get() == 3
    decision_log.close()


def test_a_merged_call_that_raises_is_retried_one_by_one(tmp_path):
    model = GatedModel()
    uri, decision_log, metrics, shadow = _shadow_with(model, tmp_path)
    assert shadow.offer("first", None, _rows(1.0))
    assert model.entered.wait(30)  # the first call runs; what is offered now queues
    for request_id, income in (("good-1", 5.0), ("bad", -1.0), ("good-2", 7.0)):
        assert shadow.offer(request_id, None, _rows(income))
    model.release.set()
    assert shadow.flush(timeout=30) and decision_log.flush(timeout=30)
    # the merged call of three failed; then each alone: only "bad" is an error
    assert model.calls == [1, 3, 1, 1, 1]
    assert metrics.errors._value.get() == 1 and metrics.scored._value.get() == 3
    store = open_store(uri)
    scored = {r.request_id for r in store.read(*WINDOW)}
    store.close()
    assert scored == {"first", "good-1", "good-2"}
    decision_log.close()
