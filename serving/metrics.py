"""Prometheus metrics that add up across gunicorn workers (prometheus_client multiprocess).

Each worker writes its samples to files in $PROMETHEUS_MULTIPROC_DIR; `/metrics` in any worker
merges all of them. Swap outcomes come from the supervisor's state file at scrape time.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from serving.state import ServedModel

_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_ROW_BUCKETS = (1, 4, 16, 64, 256, 1000, 4000, 10000)
_WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1)
# gunicorn_conf.py gives each live worker a small slot number (0, 1, ...; reused after a
# worker exits), so per-worker series stay few across swaps, unlike a pid label.
WORKER_SLOT_VARIABLE = "MODEL_SERVER_WORKER_SLOT"


class Metrics:
    def __init__(self, served: ServedModel):
        self.version = served.version
        self.worker = os.environ.get(WORKER_SLOT_VARIABLE, str(os.getpid()))
        self.worker_requests = Counter(
            "model_server_worker_requests_total",
            "POST /invocations requests by worker slot (how evenly connections are spread)",
            ["worker"],
            registry=None,
        )
        self.batch_requests = Histogram(
            "model_server_batch_requests",
            "Requests merged into one model call, per worker slot",
            ["worker"],
            buckets=_BATCH_BUCKETS,
            registry=None,
        )
        self.batch_rows = Histogram(
            "model_server_batch_rows",
            "Rows of one merged model call, per worker slot",
            ["worker"],
            buckets=_ROW_BUCKETS,
            registry=None,
        )
        self.queue_wait = Histogram(
            "model_server_queue_wait_seconds",
            "Seconds a checked request waited for its model call, per worker slot",
            ["worker"],
            buckets=_WAIT_BUCKETS,
            registry=None,
        )
        # registry=None: the samples live in the multiprocess files, not in a process registry.
        self.requests = Counter(
            "model_server_requests_total",
            "HTTP requests by route, status and model version",
            ["route", "status", "model_version"],
            registry=None,
        )
        self.latency = Histogram(
            "model_server_request_duration_seconds",
            "Request latency",
            ["route", "status", "model_version"],
            buckets=_BUCKETS,
            registry=None,
        )
        self.rows = Counter(
            "model_server_rows_scored_total", "Rows scored", ["model_version"], registry=None
        )
        self.model_calls = Counter(
            "model_server_model_calls_total",
            "Calls of the model's predict (one per chunk of rows); refused input makes none",
            ["model_version"],
            registry=None,
        )
        self.aborted = Counter(
            "model_server_predictions_stopped_total",
            "Predictions stopped at the request timeout between two chunks",
            ["model_version"],
            registry=None,
        )
        self.in_flight = Gauge(
            "model_server_predictions_in_flight",
            "Predictions admitted and not finished, also those past their timeout",
            ["model_version"],
            multiprocess_mode="livesum",
            registry=None,
        )
        self.load_seconds = Gauge(
            "model_server_model_load_seconds",
            "Seconds the worker took to load and check the model",
            ["model_version"],
            multiprocess_mode="livemax",
            registry=None,
        )
        self.serving = Gauge(
            "model_server_model_version_info",
            "1 for the model version live workers serve",
            ["model_name", "model_version"],
            multiprocess_mode="livemax",
            registry=None,
        )
        self.serving.labels(served.name, served.version).set(1)

    def batch_scored(self, stats) -> None:
        """One model call of the batcher (serving/batching.py BatchStats)."""
        self.batch_requests.labels(self.worker).observe(stats.requests)
        self.batch_rows.labels(self.worker).observe(stats.rows)
        wait = self.queue_wait.labels(self.worker)
        for seconds in stats.queue_waits:
            wait.observe(seconds)

    def model_loaded(self, seconds: float) -> None:
        self.load_seconds.labels(self.version).set(seconds)

    def observe(self, route: str, status: int, seconds: float, rows: int) -> None:
        labels = (route, str(status), self.version)
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)
        if rows:
            self.rows.labels(self.version).inc(rows)
        if route == "/invocations":
            self.worker_requests.labels(self.worker).inc()

    def render(self, state_path: Path) -> tuple[bytes, str]:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_SwapCollector(state_path))
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _SwapCollector:
    """Swap outcomes and the shadow's challenger, as recorded by the supervisor."""

    def __init__(self, state_path: Path):
        self.state_path = state_path

    def collect(self):
        try:
            state = ServedModel.read(self.state_path)
        except (OSError, ValueError, TypeError):
            return
        done = CounterMetricFamily("model_server_swaps", "Completed model swaps")
        done.add_metric([], state.swaps)
        failed = CounterMetricFamily(
            "model_server_swap_failures", "Alias moves not followed because the version failed"
        )
        failed.add_metric([], state.swap_failures)
        challenger_failed = CounterMetricFamily(
            "model_server_challenger_check_failures",
            "@challenger versions not shadowed because they failed the check",
        )
        challenger_failed.add_metric([], state.challenger_failures)
        challenger = GaugeMetricFamily(
            "model_server_challenger_version_info",
            "1 for the @challenger version the workers shadow-score (absent: none)",
            labels=["model_name", "model_version"],
        )
        if state.challenger is not None:
            challenger.add_metric([state.name, state.challenger.version], 1)
        yield done
        yield failed
        yield challenger_failed
        yield challenger
