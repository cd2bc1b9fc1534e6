"""Shadow scoring of `@challenger`: the same live rows, scored after the champion answered.

How it is wired (serving/README.md, "Shadow scoring"):

- the supervisor (serving/supervisor.py), when SHADOW_SHARE > 0, resolves SHADOW_ALIAS
  (`challenger`) of the served model, downloads that version into the cache and checks it in
  the same separate process as the champion (serving/validate.py); only a version that passed
  is recorded in the served-model state (`ServedModel.challenger`). Each poll follows the
  alias: a move or a deletion reloads the workers (SIGHUP); a version that fails its check is
  counted in the state (`/model` `challenger_checks`, `/metrics`
  `model_server_challenger_check_failures_total`) and never loaded;
- each worker (`serving.app.create_app`) loads the recorded challenger with the champion's own
  check (`load_shadow`) and gives it to its `Evidence` (serving/evidence.py), which offers
  every scored request to `ShadowScorer.offer` after the champion's decision was recorded:
  on the batch path from `Batcher.on_scored`, on MLflow's path after the answer was sent.

`ShadowScorer.offer` is all the request path calls: it samples by request id (a retried
request is sampled the same way), puts a reference on a small bounded queue and returns; when
the queue is full the request is dropped and counted (`model_server_shadow_dropped_total`).
One thread per worker scores the queue with the challenger (without the request's MLflow
`params`: reason codes are not compared) and records its decisions in the decision log with
role `challenger`, under the champion's request id and rows, so `make compare` can pair them
(`model_server_shadow_scored_total`). A challenger that raises is counted
(`model_server_shadow_errors_total`) and logged by exception type, never its message; no
answer ever sees it. Shadow decisions need the decision log: with DECISIONS_MODE=off the
workers load no challenger.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common import facts
from serving.background import BackgroundQueue
from serving.decisions import CHALLENGER_ROLE, DecisionLog
from serving.settings import load_or_exit

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
    batch_max_rows: int = Field(
        1000, ge=1, le=100_000,
        description="Rows of queued requests the challenger scores in one call at most.",
    )  # fmt: skip
    batch_max_wait_ms: int = Field(
        50, ge=0, le=1000,
        description="Milliseconds the shadow lets a call fill after its first request; 0: "
        "take only what is queued already.",
    )  # fmt: skip


# What the registry answers for an alias that does not exist (INVALID_PARAMETER_VALUE, from
# SqlAlchemyStore.get_model_version_by_alias) or a model that does not (RESOURCE_DOES_NOT_EXIST).
_ABSENT_ALIAS_CODES = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"})


def alias_is_absent(error_code: str | None) -> bool:
    """Whether an MlflowException's error code means "no such alias" (nothing to shadow),
    as opposed to a registry that failed (keep what is loaded)."""
    return error_code in _ABSENT_ALIAS_CODES


def load_shadow_settings() -> ShadowSettings:
    """Read the settings; on invalid values raise SystemExit with what to set."""
    return load_or_exit(ShadowSettings, "SHADOW_", "model server")


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
        build_frame: Callable[[list[str], list[list]], object] | None = None,
    ):
        super().__init__(settings.queue_size)
        self.settings = settings
        self.model = model
        self.model_name = model_name
        self.version = str(version)
        self.decision_log = decision_log
        self.metrics = metrics or ShadowMetrics()
        # Rows handed over as columns + lists (the batch path's RowView) become the frame
        # MLflow would build for the challenger's own signature, in the shadow thread.
        self.build_frame = build_frame

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
                offers = [self._queue.get(timeout=0.5)]
            except queue.Empty:
                continue
            # What else is queued joins this call: the pipeline's cost is mostly per call
            # (serving/README.md, "Batching"), so shadowing a burst of one-row requests costs
            # about one model call, not one per request. Nobody waits for the shadow, so it
            # lets the call fill for a while first: taking only what was queued made calls of
            # a few rows, and the challenger cost 40 % of one-row throughput at c=8.
            rows = len(offers[0].rows)
            if self.settings.batch_max_wait_ms and rows < self.settings.batch_max_rows:
                self._stop.wait(self.settings.batch_max_wait_ms / 1000)
            while rows < self.settings.batch_max_rows:
                try:
                    offer = self._queue.get_nowait()
                except queue.Empty:
                    break
                offers.append(offer)
                rows += len(offer.rows)
            try:
                self._score_together(offers)
            finally:
                for _ in offers:
                    self._queue.task_done()

    def _score_together(self, offers: list[_Offer]) -> None:
        """One model call for all the offers, split back in order; if that call (or building
        its input) fails, each offer is scored alone, so a challenger that raises on one
        request is counted for that request only."""
        if len(offers) > 1:
            started = time.perf_counter()
            try:
                outputs = self.model.predict(self._merged_input([offer.rows for offer in offers]))
                parts = _split(outputs, [len(offer.rows) for offer in offers])
            except Exception:  # noqa: BLE001 - retried one by one below, where it is counted
                parts = None
            if parts is not None:
                latency_ms = (time.perf_counter() - started) * 1000
                for offer, part in zip(offers, parts, strict=True):
                    self._record(offer, part, latency_ms)
                return
        for offer in offers:
            self._score(offer)

    def _merged_input(self, many: list):
        """One model input for several offers: the batch path's rows (same columns) joined
        before the frame is built once; DataFrames concatenated."""
        first = many[0]
        if self.build_frame is not None and all(
            _is_row_view(rows) and rows.columns == first.columns for rows in many
        ):
            return self.build_frame(first.columns, [row for rows in many for row in rows.data])
        import pandas as pd

        return pd.concat([self.model_input(rows) for rows in many], ignore_index=True)

    def model_input(self, rows):
        """What the challenger's predict gets: a DataFrame as it is; rows that carry their
        `columns` and `data` (serving/evidence.py RowView) built into a frame."""
        if self.build_frame is not None and _is_row_view(rows):
            return self.build_frame(rows.columns, rows.data)
        return rows

    def _score(self, offer: _Offer) -> None:
        started = time.perf_counter()
        try:
            outputs = self.model.predict(self.model_input(offer.rows))
        except Exception as error:  # noqa: BLE001 - a failing challenger must never matter
            self.metrics.errors.inc()
            log.warning(
                "shadow: challenger v%s raised %s on request %s",
                self.version,
                type(error).__name__,
                offer.request_id,
            )
            return
        self._record(offer, outputs, (time.perf_counter() - started) * 1000)

    def _record(self, offer: _Offer, outputs, latency_ms: float) -> None:
        self.metrics.scored.inc()
        self.decision_log.record(
            offer.request_id, offer.key_name, self.model_name, self.version,
            offer.rows, outputs, latency_ms, role=CHALLENGER_ROLE,
        )  # fmt: skip


def _is_row_view(rows) -> bool:
    """Rows handed over as `columns` + `data` lists (serving/evidence.py RowView), not a frame."""
    return hasattr(rows, "data") and not hasattr(rows, "iloc")


def _split(outputs, lengths: list[int]):
    """The merged call's outputs cut back into one part per offer, in order; None when the
    outputs are not one row per input row (the offers are then scored one by one)."""
    if not hasattr(outputs, "__len__") or len(outputs) != sum(lengths):
        return None
    parts, start = [], 0
    for length in lengths:
        if hasattr(outputs, "iloc"):
            parts.append(outputs.iloc[start : start + length].reset_index(drop=True))
        else:
            parts.append(outputs[start : start + length])
        start += length
    return parts


def load_challenger(model_name: str, settings: ShadowSettings):
    """The registry's `@challenger` checked like the champion, as (model, version), or None
    when shadowing is off, the alias does not exist, or the version fails its check (logged).
    The model server does not use this (the supervisor resolves and checks, the workers
    `load_shadow`); it is for a process that has no supervisor (a notebook, the tests)."""
    if settings.share <= 0:
        return None
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        version = MlflowClient().get_model_version_by_alias(model_name, settings.alias).version
    except MlflowException as error:
        log.info("shadow: no @%s to shadow (%s)", settings.alias, error.error_code)
        return None
    return _checked(f"models:/{model_name}/{version}", str(version), settings.alias)


def load_shadow(challenger, settings: ShadowSettings):
    """In a worker: the challenger the supervisor recorded and checked (a
    serving.state.ShadowModel, or None), loaded with the same check, as (model, version); None
    when there is none, shadowing is off, or it fails here (logged: the worker serves on)."""
    if challenger is None or settings.share <= 0:
        return None
    return _checked(challenger.path, challenger.version, challenger.alias)


def _checked(path_or_uri: str, version: str, alias: str):
    from serving.loading import ModelCheckFailed, load_and_check, short_reason

    try:
        model, _seconds = load_and_check(path_or_uri)
    except ModelCheckFailed as failure:
        reason = failure.reason
    except Exception as error:  # noqa: BLE001 - a challenger must never stop the champion
        reason = short_reason(error)
    else:
        return model, version
    log.warning("shadow: @%s v%s fails its check, not shadowed: %s", alias, version, reason)
    return None
