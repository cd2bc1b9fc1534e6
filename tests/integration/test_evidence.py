"""serving/evidence.py: the request path's one call records the champion's decision with the
gateway's key name, and offers the rows to the shadow (real SQLite store, real threads)."""

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from serving.decisions import DecisionLog, DecisionMetrics, DecisionSettings, open_store
from serving.evidence import Evidence
from serving.shadow import ShadowMetrics, ShadowScorer, ShadowSettings

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
