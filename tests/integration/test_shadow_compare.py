"""Shadow scoring of @challenger and `make compare`, with the project's real models.

v1 (boosted trees, @champion) and v2 (logistic regression) of the trained registry: the
challenger loaded and checked like the champion, its decisions logged under the champion's
request ids, `python -m training.compare` reporting the agreement that the two models really
have on those rows, and promotion refusing a candidate without enough shadow decisions.
"""

from __future__ import annotations

import json
import threading

import mlflow
import pytest
from prometheus_client import CollectorRegistry

from serving.decisions import DecisionLog, DecisionMetrics, DecisionSettings, open_store
from serving.shadow import ShadowMetrics, ShadowScorer, ShadowSettings, load_challenger
from stack.services import run_cli
from training.data import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, builtin_data

FEATURES = list(NUMERIC_COLUMNS + CATEGORICAL_COLUMNS)


@pytest.fixture
def store_uri(tmp_path):
    uri = f"sqlite:///{tmp_path}/decisions.db"
    store = open_store(uri)
    store.migrate()
    store.close()
    return uri


@pytest.fixture
def models(trained_registry):
    """(champion v1, challenger v2), loaded with the model server's own check."""
    mlflow.set_tracking_uri(trained_registry.uri)
    trained_registry.client.set_registered_model_alias("credit-risk", "challenger", "2")
    challenger = load_challenger("credit-risk", ShadowSettings(share=1.0))
    assert challenger is not None and challenger[1] == "2"
    champion = mlflow.pyfunc.load_model("models:/credit-risk/1")
    return champion, challenger[0]


def serve(store_uri, champion, scorer_model, frame, share=1.0, registry=None):
    """What the model server does per request: log the champion's decision, then offer the
    rows to the shadow. Returns the champion's outputs and the two registries' counters."""
    decision_log = DecisionLog(
        DecisionSettings(store_uri=store_uri, flush_interval=0.1),
        DecisionMetrics(CollectorRegistry()),
    )
    registry = registry or CollectorRegistry()
    scorer = ShadowScorer(
        ShadowSettings(share=share), scorer_model, "credit-risk", "2", decision_log,
        ShadowMetrics(registry),
    )  # fmt: skip
    answers = []
    for start in range(0, len(frame), 50):
        rows = frame.iloc[start : start + 50]
        outputs = champion.predict(rows)
        answers.append(outputs)
        decision_log.record(f"req-{start}", "apex-test", "credit-risk", "1", rows, outputs, 2.0)
        scorer.offer(f"req-{start}", "apex-test", rows)
    assert scorer.flush(timeout=120)
    scorer.close()
    assert decision_log.flush(timeout=60)
    decision_log.close()
    return answers, registry


def test_compare_reports_the_agreement_of_the_two_models(
    trained_registry, models, store_uri, tmp_path
):
    champion, challenger = models
    frame = builtin_data(1000, seed=77).frame[FEATURES].reset_index(drop=True)
    answers, registry = serve(store_uri, champion, challenger, frame)
    assert registry.get_sample_value("model_server_shadow_scored_total") == 20

    ours, theirs = champion.predict(frame), challenger.predict(frame)
    expected_agreement = float((ours["label"] == theirs["label"]).mean())
    out = tmp_path / "compare.json"
    result = run_cli(
        "training.compare", "--json", str(out), tracking_uri=trained_registry.uri,
        env={"DECISIONS_STORE_URI": store_uri},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [report] = json.loads(out.read_text())
    assert (report["champion_version"], report["challenger_version"]) == ("1", "2")
    assert report["rows"] == 1000 and report["requests"] == 20
    assert report["agreement"] == pytest.approx(expected_agreement)
    assert 0.5 < report["agreement"] < 1.0  # two different models: some swaps
    swaps = ((ours["label"] == 0) & (theirs["label"] == 1)).sum()
    assert report["approved_by_champion_refused_by_challenger"] == swaps
    expected_r = ours["probability"].corr(theirs["probability"])
    assert report["pearson"] == pytest.approx(expected_r)
    assert f"agreement {expected_agreement:.1%}" in result.stdout


def test_the_share_samples_requests(models, store_uri):
    champion, challenger = models
    frame = builtin_data(1000, seed=78).frame[FEATURES].head(2000)
    _answers, registry = serve(store_uri, champion, challenger, frame, share=0.3)
    scored = registry.get_sample_value("model_server_shadow_scored_total")
    assert 0 < scored < 20


class RaisingModel:
    """A challenger whose code raises on every request."""

    def predict(self, rows):
        raise RuntimeError("challenger bug")


class StuckModel:
    """A challenger that takes forever until released."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()

    def predict(self, rows):
        self.started.set()
        self.release.wait(60)
        raise TimeoutError("released")


def test_a_challenger_that_raises_never_affects_an_answer(models, store_uri):
    champion, _ = models
    frame = builtin_data(1000, seed=79).frame[FEATURES].head(200)
    answers, registry = serve(store_uri, champion, RaisingModel(), frame)
    assert registry.get_sample_value("model_server_shadow_errors_total") == 4
    assert [len(a) for a in answers] == [50] * 4
    for answer, start in zip(answers, range(0, 200, 50), strict=True):
        assert answer.equals(champion.predict(frame.iloc[start : start + 50]))
    store = open_store(store_uri)
    rows = store.read(*_window())
    store.close()
    assert {row.role for row in rows} == {"champion"} and len(rows) == 200


def test_a_full_shadow_queue_drops_and_counts(store_uri):
    stuck = StuckModel()
    registry = CollectorRegistry()
    decision_log = DecisionLog(DecisionSettings(store_uri=store_uri))
    scorer = ShadowScorer(
        ShadowSettings(share=1.0, queue_size=2), stuck, "credit-risk", "2", decision_log,
        ShadowMetrics(registry),
    )  # fmt: skip
    assert scorer.offer("r0", None, [{"a": 1}])
    assert stuck.started.wait(30)
    accepted = [scorer.offer(f"r{n}", None, [{"a": 1}]) for n in range(1, 10)]
    assert accepted == [True, True] + [False] * 7
    assert registry.get_sample_value("model_server_shadow_dropped_total") == 7
    stuck.release.set()
    assert scorer.flush(timeout=60)
    scorer.close()
    decision_log.close()


def test_no_alias_or_share_zero_means_no_shadow(trained_registry):
    mlflow.set_tracking_uri(trained_registry.uri)
    trained_registry.client.delete_registered_model_alias("credit-risk", "challenger")
    assert load_challenger("credit-risk", ShadowSettings(share=1.0)) is None
    assert load_challenger("credit-risk", ShadowSettings(share=0.0)) is None


def test_promotion_can_require_shadow_decisions(trained_registry, models, store_uri):
    champion, challenger = models
    args = ("--candidate", "2", "--min-shadow-decisions", "500")
    env = {"DECISIONS_STORE_URI": store_uri}
    refused = run_cli("training.promote", *args, tracking_uri=trained_registry.uri, env=env)
    assert refused.returncode == 1, refused.stderr
    assert "only 0 shadow decisions" in refused.stdout

    frame = builtin_data(1000, seed=80).frame[FEATURES].head(600)
    serve(store_uri, champion, challenger, frame)
    evaluated = run_cli("training.promote", *args, tracking_uri=trained_registry.uri, env=env)
    assert "shadow decisions" not in evaluated.stdout, evaluated.stdout
    assert "ROC AUC" in evaluated.stdout
    tags = trained_registry.client.get_model_version("credit-risk", "2").tags
    assert float(tags["promotion.candidate.shadow_decisions"]) == 600
    assert 0 < float(tags["promotion.candidate.shadow_agreement"]) <= 1


def _window():
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    return now - timedelta(days=1), now + timedelta(days=1)
