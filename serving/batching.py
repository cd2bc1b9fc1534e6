"""Opportunistic batching: requests waiting at the same moment share one model call.

The served pipeline costs about the same per call for 1 row as for 64 (bench/README.md), so
in each worker the requests that already passed intake (serving/intake.py: parsed, bounded and
checked on their own, so their errors stay their own) queue here, and one scoring thread takes
what is queued, builds one DataFrame of all their rows, predicts once, splits the output rows
back in request order and serialises each request's answer as MLflow's own
`predictions_to_json` (mlflow/pyfunc/scoring_server/__init__.py) writes it, so a request's
bytes are what MLflow's app would answer for it alone.

- No added waiting by default: a lone request is scored at once; a batch is only what queued
  while the previous calls ran (`SERVING_BATCH_CONCURRENCY` model calls may run at once, so
  one large request does not hold up the small ones behind it). `SERVING_BATCH_MAX_WAIT_MS`
  (0) may hold the first request a little for company; `SERVING_BATCH_MAX_ROWS` bounds the
  rows of one merged call.
- Only requests with the same MLflow `params` (their canonical JSON) are merged, and the
  params go to `pyfunc.predict(frame, params=params)`.
- Isolation: if a merged call fails, its requests are scored again one by one, so only the
  request that caused it fails (a timeout is not retried: every member is past its deadline).
- The model is called through the predict hook (serving/contract.py): chunks, the deadline
  (the latest of the batch's members), the model-call metrics, and errors as ApiError.
- `on_scored`: every scored request passes through `Batcher.scored` once, with its rows,
  outputs, params and latency (`ScoredRequest`), for the decision log and monitoring to hook
  into; a hook runs in the scoring thread and its exceptions are logged, never answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from serving.api_errors import ApiError, api_error
from serving.context import RequestContext, current_request
from serving.contract import log_model_failure

log = logging.getLogger("serving.batching")


@dataclass
class Pending:
    """One checked request waiting for its model call."""

    context: RequestContext
    columns: list[str]
    data: list[list]
    params: dict | None
    params_key: str
    enqueued: float = field(default_factory=time.perf_counter)
    future: asyncio.Future | None = None

    @property
    def rows(self) -> int:
        return len(self.data)


@dataclass
class ScoredRequest:
    """What the hooks see of one request the model scored (its answer is `body`)."""

    request_id: str
    headers: dict[bytes, bytes]  # the request's headers (the gateway's X-Client, ...)
    columns: list[str]
    data: list[list]
    outputs: object  # the model's output for this request's rows (a DataFrame slice, ...)
    params: dict | None
    queue_wait_s: float
    latency_s: float  # from entering the queue to the answer serialised
    batch_requests: int


@dataclass
class BatchStats:
    """What one model call was: for the histograms in /metrics."""

    requests: int
    rows: int
    queue_waits: list[float]


class Batcher:
    """The queue and the one scoring loop of a worker (one event loop: no locks needed).

    Args:
        predict: the pyfunc's (hooked) `predict(frame, params=...)`.
        build_frame: rows (lists in `columns` order) -> the DataFrame MLflow would build.
        serialise: the model output of one request -> its response body (bytes).
        max_rows: most rows in one merged call (a larger request is still scored, alone).
        max_wait: seconds the first queued request may wait for others (0: none).
        concurrency: model calls in flight at once (scoring loops); a request that finds a
            loop idle is scored at once, the others queue for the next free loop.
        on_batch: called with BatchStats once per model call (from the scoring thread).
        on_expired: called for a request dropped unscored because its deadline passed while
            it queued (it counts as a prediction stopped at the timeout).
    """

    def __init__(
        self,
        predict: Callable,
        build_frame: Callable[[list[str], list[list]], object],
        serialise: Callable[[object], bytes],
        max_rows: int,
        max_wait: float = 0.0,
        concurrency: int = 1,
        on_batch: Callable[[BatchStats], None] = lambda stats: None,
        on_expired: Callable[[], None] = lambda: None,
    ):
        self.predict = predict
        self.build_frame = build_frame
        self.serialise = serialise
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.on_batch = on_batch
        self.on_expired = on_expired
        self.on_scored: list[Callable[[ScoredRequest], None]] = []
        self.concurrency = concurrency
        self.queue: list[Pending] = []
        self._runners: set[asyncio.Task] = set()
        self._arrived = asyncio.Event()

    async def score(self, pending: Pending) -> bytes | ApiError:
        """Queue a checked request; its answer body, or its own error."""
        pending.future = asyncio.get_running_loop().create_future()
        self.queue.append(pending)
        self._arrived.set()
        if len(self._runners) < self.concurrency:
            runner = asyncio.ensure_future(self._run())
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)
        return await pending.future

    # ------------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        # Several loops may run (`concurrency`): each takes what is queued when it is free.
        while self.queue:
            if self.max_wait > 0:
                await self._gather_for(self.queue[0].enqueued + self.max_wait)
            batch = self.take()
            if not batch:
                continue
            try:
                answers = await asyncio.to_thread(self.score_batch, batch)
            except Exception as error:  # noqa: BLE001 - a bug of ours: each member gets a 500
                log_model_failure(error, batch[0].context.request_id)
                answers = [api_error("internal_error")] * len(batch)
            for item, answer in zip(batch, answers, strict=True):
                if not item.future.done():  # a request past its timeout was answered already
                    item.future.set_result(answer)
        # Leave the set in the same step that saw the queue empty (a done callback would run
        # later, and a request queued meanwhile would find no free loop and wait forever).
        self._runners.discard(asyncio.current_task())

    async def _gather_for(self, until: float) -> None:
        """Wait until `until` (perf_counter) or until max_rows of one params group queued."""
        while time.perf_counter() < until:
            first = self.queue[0].params_key
            if sum(p.rows for p in self.queue if p.params_key == first) >= self.max_rows:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), until - time.perf_counter())
            except TimeoutError:
                return

    def take(self) -> list[Pending]:
        """The next batch: the oldest request and, in order, the queued ones with the same
        params while the rows fit in max_rows. The others stay queued, in order. A request
        already past its deadline (answered 504 by the wrapper) is dropped unscored."""
        now = time.monotonic()
        for item in self.queue:
            if item.context.deadline is not None and now > item.context.deadline:
                item.future.set_result(api_error("timeout", timeout=item.context.timeout))
                self.on_expired()
        self.queue = [item for item in self.queue if not item.future.done()]
        if not self.queue:
            return []
        first = self.queue[0]
        batch, rest, rows = [first], [], first.rows
        for item in self.queue[1:]:
            if item.params_key == first.params_key and rows + item.rows <= self.max_rows:
                batch.append(item)
                rows += item.rows
            else:
                rest.append(item)
        self.queue = rest
        return batch

    # -------------------------------------------------------------- in the scoring thread
    def score_batch(self, batch: list[Pending]) -> list[bytes | ApiError]:
        """One model call for the whole batch; one by one again if it fails."""
        started = time.perf_counter()
        self.on_batch(BatchStats(len(batch), sum(p.rows for p in batch),
                                 [started - p.enqueued for p in batch]))  # fmt: skip
        if len(batch) == 1:
            return [self._score_alone(batch[0], started, 1)]
        columns = batch[0].columns
        data = [row for item in batch for row in item.data]
        context = RequestContext(
            f"batch-of-{batch[0].context.request_id}",
            deadline=max(item.context.deadline or 0.0 for item in batch) or None,
            timeout=batch[0].context.timeout,
        )
        outputs = self._predict(context, columns, data, batch[0].params)
        if isinstance(outputs, ApiError) and outputs.code == "timeout":
            return [outputs] * len(batch)
        parts = None if isinstance(outputs, ApiError) else split_rows(outputs, batch)
        if parts is None:  # the merged call failed: find the culprit, score each alone
            return [self._score_alone(item, time.perf_counter(), 1) for item in batch]
        return [
            self._answer(item, part, started, len(batch))
            for item, part in zip(batch, parts, strict=True)
        ]

    def _score_alone(self, item: Pending, started: float, size: int) -> bytes | ApiError:
        outputs = self._predict(item.context, item.columns, item.data, item.params)
        if isinstance(outputs, ApiError):
            return outputs
        return self._answer(item, outputs, started, size)

    def _predict(self, context: RequestContext, columns, data, params):
        """The hooked predict under `context` (the hook reports through it): outputs or error."""
        token = current_request.set(context)
        try:
            try:
                frame = self.build_frame(columns, data)
            except Exception as error:  # noqa: BLE001 - MLflow cannot make a frame of it
                log_model_failure(error, context.request_id)
                return api_error("invalid_input")
            try:
                return self.predict(frame, params=params)
            except ApiError as error:  # the hook's report: schema, model error, timeout
                return error
            except Exception as error:  # noqa: BLE001 - the hook lets nothing else out; a bug
                log_model_failure(error, context.request_id)
                return api_error("model_error")
        finally:
            current_request.reset(token)

    def _answer(self, item: Pending, outputs, started: float, size: int) -> bytes | ApiError:
        item.context.rows = item.rows
        item.context.predict_called = True
        try:
            body = self.serialise(outputs)
        except Exception as error:  # noqa: BLE001 - an output MLflow cannot serialise
            log_model_failure(error, item.context.request_id)
            return api_error("model_error")
        if self.on_scored:
            self.scored(item, outputs, started, size)
        return body

    def scored(self, item: Pending, outputs, started: float, size: int) -> None:
        """The one place each scored request is known whole: run the on_scored hooks."""
        record = ScoredRequest(
            request_id=item.context.request_id,
            headers=item.context.headers,
            columns=item.columns,
            data=item.data,
            outputs=outputs,
            params=item.params,
            queue_wait_s=started - item.enqueued,
            latency_s=time.perf_counter() - item.enqueued,
            batch_requests=size,
        )
        for hook in self.on_scored:
            try:
                hook(record)
            except Exception as error:  # noqa: BLE001 - a hook must never fail a request
                log.error(
                    "an on_scored hook failed",
                    extra={"fields": {"request_id": record.request_id,
                                      "error_type": type(error).__name__}},
                )  # fmt: skip


def split_rows(outputs, batch: list[Pending]) -> list | None:
    """The model's output cut into each request's rows, in order; None when it cannot be
    (an output of another length than the rows, or of a type without rows)."""
    total = sum(item.rows for item in batch)
    try:
        if len(outputs) != total:
            return None
    except TypeError:
        return None
    slicer = outputs.iloc if hasattr(outputs, "iloc") else outputs
    if not hasattr(outputs, "iloc") and not isinstance(outputs, list | tuple):
        import numpy as np

        if not isinstance(outputs, np.ndarray):
            return None
    parts, start = [], 0
    for item in batch:
        part = slicer[start : start + item.rows]
        if hasattr(part, "reset_index"):
            part = part.reset_index(drop=True)
        parts.append(part)
        start += item.rows
    return parts


def mlflow_serialiser():
    """MLflow's own answer body for one request's predictions: the bytes of
    `predictions_to_json`, made with `json.dumps` instead of its `json.dump`.

    `json.dump` to a stream runs the standard library's pure-Python encoder (the C encoder is
    only for one-shot `dumps`); the same encoder class and options give the same bytes twice
    as fast (1,000 rows: 2.7 -> 1.3 ms). Unit-tested against `predictions_to_json` itself, and
    the batching integration test compares whole answers with MLflow's app byte for byte.
    """
    from mlflow.utils.proto_json_utils import NumpyEncoder, _get_jsonable_obj

    def serialise(outputs) -> bytes:
        predictions = _get_jsonable_obj(outputs, pandas_orient="records")
        return json.dumps({"predictions": predictions}, cls=NumpyEncoder).encode()

    return serialise


def mlflow_frame_builder(input_schema):
    """Rows -> the DataFrame MLflow's app builds from a `dataframe_split` body with them."""
    from mlflow.utils.proto_json_utils import dataframe_from_parsed_json

    def build_frame(columns: list[str], data: list[list]):
        return dataframe_from_parsed_json(
            {"columns": columns, "data": data}, pandas_orient="split", schema=input_schema
        )

    return build_frame
