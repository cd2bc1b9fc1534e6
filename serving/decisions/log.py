"""The decision log's writer: a bounded queue per worker and one thread that writes batches.

`DecisionLog.record` is all the request path calls. It puts one small tuple on a bounded
queue and returns; it never waits, never touches the store and never raises. When the queue
is full the entry is dropped and counted. The writer thread turns entries into rows (the
inputs' JSON or keyed hashes), writes up to DECISIONS_BATCH_SIZE requests per transaction, and
deletes rows past the retention every DECISIONS_PRUNE_INTERVAL seconds (0: never; compose and
Kubernetes prune on a schedule instead). A store that fails (database down, disk full) costs
the entries of that batch, counted; the writer then waits before it tries again (0.5 s,
doubling up to DECISIONS_RECONNECT_BACKOFF_MAX) while new entries wait in the queue (dropped
and counted once it is full), and reconnects, so logging resumes by itself when the store
returns, without a connection attempt per batch against a database that is down.

This is the pattern of Seldon's and MLflow's trace export (a bounded queue that drops), not
KServe's payload logger (a goroutine per event, kserve #6167).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import queue
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from prometheus_client import Counter

from serving.background import BackgroundQueue
from serving.decisions.settings import DecisionSettings, InputMode
from serving.decisions.stores import SQLiteStore, StoredRow, StoreError

log = logging.getLogger("serving.decisions")

CHAMPION_ROLE = "champion"
CHALLENGER_ROLE = "challenger"
RETRY_FIRST_WAIT = 0.5
"""Seconds the writer waits after a first store failure before it tries again (then doubling)."""


@dataclass(frozen=True)
class _Entry:
    """What `record` queues: references only, converted by the writer thread."""

    decided_at: float
    request_id: str
    key_name: str | None
    model_name: str
    model_version: str
    role: str
    rows: object
    outputs: object
    latency_ms: float
    row_count: int


class Backoff:
    """When to try a failing store again: `initial` seconds after the first failure, doubling
    after each further one, never more than `maximum`; a success resets it. Clock-free (the
    caller passes `now`), so it is unit-tested without waiting."""

    def __init__(self, initial: float, maximum: float):
        self.initial = min(initial, maximum)
        self.maximum = maximum
        self.failures = 0
        self.retry_at = 0.0

    def failed(self, now: float) -> float:
        """Count a failure at `now`; returns the wait before the next attempt."""
        delay = min(self.maximum, self.initial * 2 ** min(self.failures, 30))
        self.failures += 1
        self.retry_at = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    def wait(self, now: float) -> float:
        """Seconds left before the next attempt may start (0: now)."""
        return max(0.0, self.retry_at - now)


class DecisionMetrics:
    """The log's counters. registry=None: prometheus_client's multiprocess files (the model
    server); a test passes its own CollectorRegistry."""

    def __init__(self, registry=None):
        self.logged = Counter(
            "model_server_decisions_logged_total",
            "Scored rows written to the decision log, by role (champion or challenger)",
            ["role"],
            registry=registry,
        )
        self.dropped = Counter(
            "model_server_decisions_dropped_total",
            "Scored rows not written to the decision log: queue_full (the writer is behind), "
            "store_error (the store failed) or shutdown (still queued when the worker stopped)",
            ["role", "reason"],
            registry=registry,
        )


class DecisionLog(BackgroundQueue):
    """Record decisions without ever slowing or failing the request that made them."""

    thread_name = "decision-log-writer"

    def __init__(
        self, settings: DecisionSettings, metrics: DecisionMetrics | None = None, store=None
    ):
        super().__init__(settings.queue_size)
        self.settings = settings
        self.metrics = metrics or DecisionMetrics()
        self.enabled = settings.mode is not InputMode.OFF
        self._hash_key = settings.hash_key() if settings.mode is InputMode.HASHED else None
        self._store = store
        self._backoff = Backoff(RETRY_FIRST_WAIT, settings.reconnect_backoff_max)
        self._next_prune = 0.0

    # --- the request path -----------------------------------------------------------------
    def record(
        self,
        request_id: str,
        key_name: str | None,
        model: str,
        version: str,
        rows: Sequence[Mapping] | object,
        outputs: Sequence[Mapping] | object,
        latency_ms: float,
        role: str = CHAMPION_ROLE,
    ) -> bool:
        """Queue one scored request (rows and outputs: lists of dicts or DataFrames).

        Returns True when queued, False when the log is off or the entry was dropped (counted).
        Never blocks and never raises for a full queue.
        """
        if not self.enabled:
            return False
        count = len(rows)
        entry = _Entry(
            time.time(), request_id, key_name, model, str(version), role,
            rows, outputs, float(latency_ms), count,
        )  # fmt: skip
        if not self._offer(entry):
            self.metrics.dropped.labels(role, "queue_full").inc(count)
            return False
        return True

    # --- lifecycle ------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to `timeout`), then stop the writer and close the store.

        What is still queued then (the store was failing and the writer was waiting to try
        again) is counted as dropped, reason `shutdown`: it dies with the worker.
        """
        super().close(timeout)
        left = []
        while True:
            try:
                left.append(self._queue.get_nowait())
            except queue.Empty:
                break
            self._queue.task_done()
        self._count_dropped(left, "shutdown")
        if self._store is not None:
            self._store.close()

    # --- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self._backoff.wait(time.monotonic())
            if wait > 0:
                # The store failed: entries wait in the queue (record() still never blocks).
                self._stop.wait(wait)
                continue
            batch = self._next_batch()
            if batch:
                self._write(batch)
            self._maybe_prune()

    def _next_batch(self) -> list[_Entry]:
        try:
            first = self._queue.get(timeout=self.settings.flush_interval)
        except queue.Empty:
            return []
        # Let the batch fill for up to 50 ms, then take what is queued. Not a get() per entry
        # with a timeout: each put would wake this thread, which then takes the GIL from the
        # event loop once per scored request (bench/README.md, "Paired comparisons").
        self._stop.wait(min(0.05, self.settings.flush_interval))
        batch = [first]
        while len(batch) < self.settings.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, batch: list[_Entry]) -> None:
        try:
            store = self._store_or_open()
            rows = [row for entry in batch for row in self._rows(entry, store.time_value)]
            store.write(rows)
        except StoreError as error:
            self._count_dropped(batch, "store_error")
            first = self._backoff.failures == 0
            delay = self._backoff.failed(time.monotonic())
            if first:
                log.warning("decision log: store failing, entries are dropped: %s", error)
            log.info("decision log: next attempt to reach the store in %.1f s", delay)
        else:
            for entry in batch:
                self.metrics.logged.labels(entry.role).inc(entry.row_count)
            if self._backoff.failures:
                log.warning("decision log: store reachable again, logging resumed")
            self._backoff.succeeded()
        finally:
            for _ in batch:
                self._queue.task_done()

    def _count_dropped(self, batch: list[_Entry], reason: str) -> None:
        for entry in batch:
            self.metrics.dropped.labels(entry.role, reason).inc(entry.row_count)

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if not self.settings.prune_interval or now < self._next_prune or self._backoff.failures:
            return
        self._next_prune = now + self.settings.prune_interval
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
        try:
            deleted = self._store_or_open().prune(cutoff)
        except StoreError as error:
            log.warning("decision log: retention not applied: %s", error)
            return
        if deleted:
            log.info("decision log: deleted %d rows older than %s", deleted, cutoff.date())

    def _store_or_open(self):
        if self._store is None:
            store = self.settings.open_store()
            if isinstance(store, SQLiteStore):
                # The native store is this server's own file: it makes its table itself.
                # PostgreSQL is migrated by the stack (python -m serving.decisions migrate).
                store.migrate()
            self._store = store
        return self._store

    # --- entries to rows (writer thread only) ---------------------------------------------
    def _rows(self, entry: _Entry, time_value) -> list[StoredRow]:
        if self._hash_key is None:
            inputs = _json_lines(entry.rows)
        else:
            inputs = [self._hashed_text(row) for row in _records(entry.rows)]
        outputs = _json_lines(entry.outputs)
        decided_at = time_value(datetime.fromtimestamp(entry.decided_at, UTC))
        mode = self.settings.mode.value
        return [
            StoredRow(
                decided_at,
                entry.request_id,
                index,
                entry.key_name,
                entry.model_name,
                entry.model_version,
                entry.role,
                mode,
                row,
                output,
                entry.latency_ms,
            )  # fmt: skip
            for index, (row, output) in enumerate(zip(inputs, outputs, strict=True))
        ]

    def _hashed_text(self, row: Mapping) -> str:
        return _dumps({column: self.hash_value(column, value) for column, value in row.items()})

    def hash_value(self, column: str, value) -> str:
        """The keyed hash the hashed mode keeps for one input value: HMAC-SHA256 of the column
        name and the value's canonical JSON, so the same value in two columns differs."""
        assert self._hash_key is not None
        message = f"{column}\x00{_dumps(value)}".encode()
        return hmac.new(self._hash_key, message, hashlib.sha256).hexdigest()


def _records(rows) -> list[Mapping]:
    """A DataFrame or a sequence of mappings as a list of dicts.

    Not DataFrame.to_dict(orient="records"): it costs about a millisecond per call even for
    one row (an .iloc per column), which would make the writer the bottleneck of single-row
    traffic; one object array per frame is a few microseconds.
    """
    to_numpy = getattr(rows, "to_numpy", None)
    if to_numpy is not None:
        columns = [str(column) for column in rows.columns]
        return [dict(zip(columns, values, strict=True)) for values in to_numpy(dtype=object)]
    return list(rows)


def _json_lines(rows) -> list[str]:
    """One JSON object per row (keys sorted, NaN and infinities as null).

    A DataFrame goes through pandas' C encoder in one call (full double precision). Rows handed
    over as lists (the batch path's RowView) or mappings go through orjson, one C call per row:
    the standard library's json.dumps with a Python pass per value cost 6.9 ms per 1,000 rows,
    orjson 1.0 ms, and that time is taken under the GIL from the event loop and the model.
    A RowView keeps its lines, so the challenger's shadow entry for the same rows reuses them.
    """
    to_json = getattr(rows, "to_json", None)
    if to_json is not None:
        if not len(rows):
            return []
        text = to_json(orient="records", lines=True, double_precision=15, date_format="iso")
        return text.splitlines()
    cached = getattr(rows, "json_lines", None)
    if cached is not None:
        return cached
    lines = [_fast_dumps(row) for row in rows]
    if hasattr(rows, "json_lines"):
        rows.json_lines = lines
    return lines


_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _fast_dumps(row) -> str:
    """orjson's JSON of one row, as `_dumps` would write it in content (NaN as null, numpy
    scalars as numbers); anything orjson refuses (an integer past 64 bits) goes to `_dumps`."""
    try:
        return orjson.dumps(row, default=str, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return _dumps(row)


def _dumps(value) -> str:
    """Canonical JSON (sorted keys, no spaces); NaN and numpy scalars as plain JSON values."""
    if isinstance(value, Mapping):
        value = {str(key): _scalar(item) for key, item in value.items()}
    else:
        value = _scalar(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)


def _scalar(value):
    item = getattr(value, "item", None)
    if item is not None and not isinstance(value, str | bytes):
        value = item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
