"""Shadow scoring of `@challenger`: the same live rows, scored after the champion answered.

The model server (when SHADOW_SHARE > 0 and the alias exists) loads the challenger with the
champion's own check (`load_and_check`: loads, its contract parses, it predicts its input
example) and offers it a share of scored requests *after the champion's answer was sent*.
`ShadowScorer.offer` is all the request path calls: it samples by request id (a retried
request is sampled the same way), puts a reference on a small bounded queue and returns; when
the queue is full the request is dropped and counted (`model_server_shadow_dropped_total`).
One thread per worker scores the queue with the challenger and records its decisions in the
decision log with role `challenger`, under the champion's request id and rows, so
`make compare` can pair them. A challenger that raises is counted
(`model_server_shadow_errors_total`) and logged by exception type; no answer ever sees it.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import time
from dataclasses import dataclass

from prometheus_client import Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common import facts
from serving.background import BackgroundQueue
from serving.decisions import CHALLENGER_ROLE, DecisionLog

log = logging.getLogger("serving.shadow")


class ShadowSettings(BaseSettings):
    """Shadow scoring; every field has a SHADOW_ variable."""

    model_config = SettingsConfigDict(env_prefix="SHADOW_", extra="ignore", env_ignore_empty=True)

    share: float = Field(
        0.0, ge=0, le=1, description="Share of scored requests the challenger also scores; 0: off."
    )
    alias: str = Field(facts.CHALLENGER, description="Registry alias of the shadow model.")
    queue_size: int = Field(
        64, ge=1, le=10_000, description="Requests one worker holds for the shadow; more drop."
    )


class ShadowMetrics:
    """registry=None: the model server's multiprocess files; a test passes its own."""

    def __init__(self, registry=None):
        self.scored = Counter(
            "model_server_shadow_scored_total",
            "Requests the challenger scored in the shadow of the champion",
            registry=registry,
        )
        self.dropped = Counter(
            "model_server_shadow_dropped_total",
            "Shadow requests not scored because the shadow queue was full",
            registry=registry,
        )
        self.errors = Counter(
            "model_server_shadow_errors_total",
            "Shadow requests on which the challenger raised (answers are unaffected)",
            registry=registry,
        )


@dataclass(frozen=True)
class _Offer:
    request_id: str
    key_name: str | None
    rows: object


class ShadowScorer(BackgroundQueue):
    """Score a share of live requests with the challenger, never in the way of an answer."""

    thread_name = "shadow-scorer"

    def __init__(
        self,
        settings: ShadowSettings,
        model,
        model_name: str,
        version: str,
        decision_log: DecisionLog,
        metrics: ShadowMetrics | None = None,
    ):
        super().__init__(settings.queue_size)
        self.settings = settings
        self.model = model
        self.model_name = model_name
        self.version = str(version)
        self.decision_log = decision_log
        self.metrics = metrics or ShadowMetrics()

    def sampled(self, request_id: str) -> bool:
        """Whether this request is in the shadow share (stable for a request id)."""
        if self.settings.share <= 0:
            return False
        digest = hashlib.sha256(request_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.settings.share

    def offer(self, request_id: str, key_name: str | None, rows) -> bool:
        """Queue a scored request's rows (a DataFrame) for the challenger; never blocks."""
        if not self.sampled(request_id):
            return False
        if not self._offer(_Offer(request_id, key_name, rows)):
            self.metrics.dropped.inc()
            return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                offer = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._score(offer)
            finally:
                self._queue.task_done()

    def _score(self, offer: _Offer) -> None:
        started = time.perf_counter()
        try:
            outputs = self.model.predict(offer.rows)
        except Exception as error:  # noqa: BLE001 - a failing challenger must never matter
            self.metrics.errors.inc()
            log.warning(
                "shadow: challenger v%s raised %s on request %s",
                self.version,
                type(error).__name__,
                offer.request_id,
            )
            return
        latency_ms = (time.perf_counter() - started) * 1000
        self.metrics.scored.inc()
        self.decision_log.record(
            offer.request_id, offer.key_name, self.model_name, self.version,
            offer.rows, outputs, latency_ms, role=CHALLENGER_ROLE,
        )  # fmt: skip


def load_challenger(model_name: str, settings: ShadowSettings):
    """The challenger checked like the champion, as (model, version), or None when shadowing
    is off, the alias does not exist, or the version fails its check (logged)."""
    if settings.share <= 0:
        return None
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from serving.loading import ModelCheckFailed, load_and_check

    try:
        version = MlflowClient().get_model_version_by_alias(model_name, settings.alias).version
    except MlflowException as error:
        log.info("shadow: no @%s to shadow (%s)", settings.alias, error.error_code)
        return None
    try:
        model, _seconds = load_and_check(f"models:/{model_name}/{version}")
    except ModelCheckFailed as failure:
        log.warning("shadow: @%s v%s fails its check, not shadowed: %s",
                    settings.alias, version, failure.reason)  # fmt: skip
        return None
    return model, str(version)
