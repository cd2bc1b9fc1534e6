"""The ASGI app each gunicorn worker runs: MLflow's scoring app inside a thin wrapper of ours.

MLflow's own code (`mlflow.pyfunc.scoring_server.init`, mirrored routes `/invocations`,
`/ping`, `/health`, `/version`; source: mlflow/pyfunc/scoring_server/__init__.py) parses the
body, enforces the signature and predicts, one model call per request. The wrapper adds what
that server lacks:

- batching: for a model with an input contract, requests waiting at the same moment share one
  model call, built and answered with MLflow's own functions so each answer is the bytes
  MLflow's app gives for that request alone (serving/batching.py);

- identity: `X-Model-Name` / `X-Model-Version` on every response, `GET /model`;
- one JSON error shape, `{"error": {"code", "message"}, "request_id"}`, whose message names a
  column or type from the model's schema but never repeats the caller's data or a stack trace
  (MLflow's bodies do both; the details go to the server log under the request id);
- the model's input contract enforced on the body before MLflow or the model sees it
  (serving/intake.py, serving/contract.py), a row cap for every content type, parquet only
  when enabled; a model without a contract keeps the older checks on MLflow's frame;
- bounded work: at most SERVING_MAX_CONCURRENT_PREDICTIONS per worker (503 + Retry-After
  above), and a timeout that answers 504 and stops the prediction between two chunks;
- 415 for a missing Content-Type (MLflow: 500) and 500 for an exception inside the model
  (MLflow: 400 with a stack trace);
- readiness and liveness routes, Prometheus metrics, a request id, no FastAPI docs routes.

This module holds the wrapper and its routes only: loading is serving/loading.py, reading the
body serving/intake.py, the contract and the predict hook serving/contract.py, the errors
serving/api_errors.py (the table) and serving/mlflow_errors.py (MLflow's answers mapped onto
it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from pathlib import Path

from common.facts import REASON_CODES_KEY
from serving.api_errors import ApiError, api_error
from serving.asgi import CapturedResponse, replay
from serving.batching import Batcher, Pending, mlflow_frame_builder, mlflow_serialiser
from serving.context import RequestContext, current_request
from serving.contract import install_predict_hook, log_model_failure
from serving.evidence import Evidence
from serving.intake import Accepted, precheck_without_contract, read_with_contract
from serving.loading import LoadedModel, load
from serving.logs import configure_logging
from serving.metrics import Metrics
from serving.mlflow_errors import classify_mlflow_error
from serving.settings import load_settings
from serving.shadow import ShadowMetrics, ShadowSettings, load_shadow_settings
from serving.state import ServedModel

log = logging.getLogger("serving.app")
access_log = logging.getLogger("serving.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_JSON = [(b"content-type", b"application/json")]
_DOCS_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# Bodies up to this size are checked on the event loop: a few rows take tens of microseconds,
# less than the hop to a thread and back (and its fight for the GIL with the scoring thread).
# Larger bodies are checked in a thread, so parsing 8 MB never stalls the loop.
_INLINE_INTAKE_BYTES = 16 * 1024


class ServingApp:
    """The pure-ASGI wrapper around MLflow's FastAPI app."""

    def __init__(
        self,
        settings,
        loaded: LoadedModel,
        mlflow_app,
        metrics: Metrics,
        state_path: Path,
        batcher: Batcher | None = None,
        evidence: Evidence | None = None,
        shadow_settings: ShadowSettings | None = None,
    ):
        self.settings = settings
        self.loaded = loaded
        self.mlflow_app = mlflow_app
        self.metrics = metrics
        self.state_path = state_path
        # Requests of a model with a contract are scored together (serving/batching.py);
        # `batcher.on_scored` is where each scored request can be observed whole.
        self.batcher = batcher
        # The worker's decision log and shadow (serving/evidence.py), fed by
        # `batcher.on_scored` or, on MLflow's path, after the answer; flushed and stopped at
        # the worker's lifespan shutdown.
        self.evidence = evidence
        self.shadow_settings = shadow_settings or ShadowSettings()
        metadata = getattr(loaded.pyfunc, "metadata", None)
        # The signature's params (reason codes, ...): a body's `params` is checked against it.
        self.params_schema = metadata.get_params_schema() if metadata is not None else None
        self.busy = 0  # predictions admitted and not finished (one event loop: no lock)
        served = loaded.served
        self.identity = [
            (b"x-model-name", served.name.encode()),
            (b"x-model-version", served.version.encode()),
        ]
        self.routes = {
            "/invocations": self.invocations,
            "/model": self.model_info,
            "/healthz/live": self.live,
            "/healthz/ready": self.ready,
            "/metrics": self.metrics_route,
            "/ping": self.mlflow_app,
            "/health": self.mlflow_app,
            "/version": self.mlflow_app,
        }

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # lifespan: MLflow's app handles start-up and shutdown
            if scope["type"] == "lifespan" and self.evidence is not None:
                receive = self._closing_evidence_on_shutdown(receive)
            await self.mlflow_app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        context = RequestContext(request_id, headers)
        token = current_request.set(context)
        status = 500
        started = time.perf_counter()
        extra_headers = [*self.identity, (b"x-request-id", request_id.encode())]
        path = scope["path"]
        route = self.routes.get(path)
        label = path if route is not None else "other"
        observed = False

        def observe() -> None:
            nonlocal observed
            if not observed:
                observed = True
                self.metrics.observe(label, status, time.perf_counter() - started, context.rows)

        async def send_with_identity(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *extra_headers]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Counted before the last bytes leave: a client that scrapes /metrics right
                # after its answer (possibly from another worker) must already see it.
                observe()
            await send(message)

        try:
            if route is None:
                await self.send_error(send_with_identity, context, api_error("not_found"))
            elif route is self.mlflow_app:
                await route(scope, receive, send_with_identity)
            else:
                await route(scope, receive, send_with_identity, context)
        finally:
            current_request.reset(token)
            observe()  # a response that never finished (the app raised) counts too
            elapsed = time.perf_counter() - started
            access_log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": label,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "model_version": self.loaded.served.version,
                        "rows": context.rows,
                        "client": headers.get(b"x-client", b"").decode("latin-1")[:64],
                        "worker": os.getpid(),
                        "error": context.error.code if context.error else None,
                        # The rule (the error table's row) and the column it names: what to
                        # fix, without the caller's value.
                        "rule": context.error.case if context.error else None,
                        "column": context.error.column if context.error else None,
                    }
                },
            )

    def _closing_evidence_on_shutdown(self, receive):
        """`receive` that writes the queued decisions before the worker's shutdown goes on."""

        async def wrapped() -> dict:
            message = await receive()
            if message.get("type") == "lifespan.shutdown" and self.evidence is not None:
                # In a thread: close waits for the writer (up to its timeout).
                await asyncio.to_thread(self.evidence.close)
            return message

        return wrapped

    async def send_json(self, send, status: int, payload: dict, headers=()) -> None:
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON, (b"content-length", str(len(body)).encode()), *headers],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def send_error(self, send, context: RequestContext, error: ApiError) -> None:
        context.error = error
        await self.send_json(send, error.status, error.body(context.request_id), error.headers)

    async def invocations(self, scope, receive, send, context: RequestContext) -> None:
        if scope["method"] != "POST":
            await self.send_error(send, context, api_error("method_not_allowed"))
            return
        headers = context.headers
        content_type = headers.get(b"content-type", b"").decode("latin-1").strip()
        if not content_type:
            await self.send_error(send, context, api_error("missing_content_type"))
            return
        body = await self._read_body(receive, headers)
        if isinstance(body, ApiError):
            await self.send_error(send, context, body)
            return
        limit = self.settings.max_concurrent_predictions
        if self.busy >= limit:
            await self.send_error(send, context, api_error("overloaded", limit=limit))
            return
        # The slot is held from here until MLflow's thread is done, also past a timeout:
        # a prediction still running counts, so slow requests cannot pile up threads.
        self.busy += 1
        self.metrics.in_flight.labels(self.loaded.served.version).inc()
        admitted = time.perf_counter()
        task = None
        try:
            context.timeout = self.settings.request_timeout
            context.deadline = time.monotonic() + context.timeout
            task = asyncio.ensure_future(
                self._intake_and_predict(scope, body, content_type, context)
            )
            done, _ = await asyncio.wait({task}, timeout=context.timeout)
            if not done:
                # The predict hook sees the same deadline and stops within one chunk.
                context.report(api_error("timeout", timeout=context.timeout))
                await self.send_error(send, context, context.error)
                return
            result = task.result()
            await self._answer(result, send, context)
            if (
                self.evidence is not None
                and context.scored_rows is not None
                and isinstance(result, CapturedResponse)
                and result.status < 400
            ):
                # MLflow's path, after its answer was sent: queue the decision (and the shadow).
                self.evidence.on_mlflow_scored(context, (time.perf_counter() - admitted) * 1000)
        finally:
            if task is None or task.done():
                self._release()
            else:
                task.add_done_callback(self._release)

    def _release(self, _task=None) -> None:
        self.busy -= 1
        self.metrics.in_flight.labels(self.loaded.served.version).dec()

    async def _read_body(self, receive, headers) -> bytes | ApiError:
        limit = self.settings.max_body_bytes
        too_large = api_error("payload_too_large", limit=limit)
        declared = headers.get(b"content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return too_large
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return api_error("client_disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return too_large
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _intake_and_predict(
        self, scope, body: bytes, content_type: str, context: RequestContext
    ) -> CapturedResponse | ApiError:
        """Check the body (in a thread: parsing 8 MB must not stall the event loop), then run
        MLflow's /invocations on what passed. Never raises: the timeout path does not wait."""
        contract = self.loaded.contract
        try:
            if contract is not None:
                arguments = (body, content_type, contract, self.settings, self.params_schema)
                if len(body) <= _INLINE_INTAKE_BYTES:
                    accepted = read_with_contract(*arguments)
                else:
                    accepted = await asyncio.to_thread(read_with_contract, *arguments)
                if isinstance(accepted, ApiError):
                    return accepted
                if self.batcher is not None:
                    return await self._score_in_batch(accepted, context)
                body, content_type = accepted.body, accepted.content_type.decode()
            else:
                problem = await asyncio.to_thread(
                    precheck_without_contract, body, content_type, self.settings
                )
                if problem is not None:
                    return problem
            if time.monotonic() > context.deadline:
                return api_error("timeout", timeout=context.timeout)
            return await self._call_mlflow(scope, body, content_type, context)
        except Exception as error:  # noqa: BLE001 - a bug of ours: logged without values
            log_model_failure(error, context.request_id)
            return api_error("internal_error")

    async def _score_in_batch(
        self, accepted: Accepted, context: RequestContext
    ) -> CapturedResponse | ApiError:
        """Score the checked rows in the worker's batcher; MLflow's answer bytes for them."""
        if time.monotonic() > context.deadline:
            return api_error("timeout", timeout=context.timeout)
        pending = Pending(
            context, accepted.columns, accepted.data, accepted.params, accepted.params_key
        )
        answer = await self.batcher.score(pending)
        if isinstance(answer, ApiError):
            return context.report(answer)
        response = CapturedResponse(200, [*_JSON, (b"content-length", str(len(answer)).encode())])
        response.chunks.append(answer)
        return response

    async def _call_mlflow(
        self, scope, body: bytes, content_type: str, context: RequestContext
    ) -> CapturedResponse | ApiError:
        """Run MLflow's /invocations on the buffered body and keep its answer."""
        response = CapturedResponse()
        # The predict hook keeps the scored frame and output on the context for the decision
        # log (the batch path records through Batcher.on_scored instead).
        context.keep_scored = self.evidence is not None
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"content-type", b"content-length")
        ]
        headers += [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
        ]
        try:
            await self.mlflow_app({**scope, "headers": headers}, replay(body), response.send)
        except Exception as error:  # noqa: BLE001 - turned into a JSON error, type logged
            # MLflow lets non-MLflow exceptions escape (e.g. pandas failing on a strange
            # dataframe_split). Before the model ran, that is the caller's input.
            if context.error is not None:
                return context.error
            if context.predict_called:
                log_model_failure(error, context.request_id)
                return api_error("internal_error")
            return api_error("invalid_input")
        return response

    async def _answer(self, result, send, context: RequestContext) -> None:
        if isinstance(result, ApiError):
            await self.send_error(send, context, result)
            return
        response = result
        if response.status < 400:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": response.headers,
                }
            )
            await send({"type": "http.response.body", "body": response.body})
            return
        # MLflow's message repeats the caller's data: it only picks the row of our table,
        # and it is never logged (the access line has the code, the rule and the column).
        error = context.error or classify_mlflow_error(
            response.status,
            response.body,
            self.settings.request_timeout,
            self.loaded.inputs,
            self.settings.accepted_media_types,
        )
        if error.status >= 500:
            log.warning(
                "request failed",
                extra={
                    "fields": {
                        "request_id": context.request_id,
                        "status": error.status,
                        "code": error.code,
                        "mlflow_status": response.status,
                    }
                },
            )
        await self.send_error(send, context, error)

    async def model_info(self, scope, receive, send, context: RequestContext) -> None:
        served = self.loaded.served
        try:
            current = ServedModel.read(self.state_path)
        except (OSError, ValueError, TypeError):
            current = served
        failure = current.last_swap_failure
        challenger_failure = current.last_challenger_failure
        contract = self.loaded.contract
        await self.send_json(
            send,
            200,
            {
                "name": served.name,
                "version": served.version,
                "alias": served.alias,
                "run_id": served.run_id,
                "source": served.source,
                "cache_reason": served.extra.get("cache_reason"),
                "loaded_at": self.loaded.loaded_at,
                "load_seconds": round(self.loaded.load_seconds, 3),
                "following": served.alias is not None,
                "poll_interval_seconds": self.settings.poll_interval,
                "inputs": self.loaded.inputs,
                "outputs": self.loaded.outputs,
                "contract": contract.to_dict() if contract else None,
                # The reason table (training/explain.py): what `params.reasons` can answer.
                "reason_codes": (self.loaded.pyfunc.metadata.metadata or {}).get(REASON_CODES_KEY),
                "limits": {
                    "max_rows": self.settings.max_rows,
                    "max_body_bytes": self.settings.max_body_bytes,
                    "accepted_content_types": self.settings.accepted_media_types.split(", "),
                },
                "swaps": {
                    "completed": current.swaps,
                    "failed": current.swap_failures,
                    "last_failure": failure.__dict__ if failure else None,
                },
                # The challenger this worker scores in the shadow (serving/shadow.py), or null.
                "challenger": self._challenger_info(served),
                "challenger_checks": {
                    "failed": current.challenger_failures,
                    "last_failure": challenger_failure.__dict__ if challenger_failure else None,
                },
            },
        )

    def _challenger_info(self, served: ServedModel) -> dict | None:
        shadow = self.evidence.shadow if self.evidence is not None else None
        if shadow is None:
            return None
        record = served.challenger
        return {
            "version": shadow.version,
            "alias": self.shadow_settings.alias,
            "run_id": record.run_id if record is not None else None,
            "share": self.shadow_settings.share,
            "queue_size": self.shadow_settings.queue_size,
        }

    async def live(self, scope, receive, send, context: RequestContext) -> None:
        await self.send_json(send, 200, {"status": "alive"})

    async def ready(self, scope, receive, send, context: RequestContext) -> None:
        # A worker exists only after its model loaded and predicted its input example.
        await self.send_json(
            send, 200, {"status": "ready", "model_version": self.loaded.served.version}
        )

    async def metrics_route(self, scope, receive, send, context: RequestContext) -> None:
        body, content_type = self.metrics.render(self.state_path)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_app() -> ServingApp:
    """The gunicorn app factory (`serving.app:create_app()`), called once per worker."""
    from mlflow.pyfunc import scoring_server

    settings = load_settings()
    configure_logging(settings.log_level)
    state_path = Path(os.environ["SERVING_STATE_FILE"])
    served = ServedModel.read(state_path)
    loaded = load(served)
    metrics = Metrics(served)
    install_predict_hook(
        loaded.pyfunc,
        loaded.inputs,
        settings.predict_chunk_rows,
        on_call=metrics.model_calls.labels(served.version).inc,
        on_abort=metrics.aborted.labels(served.version).inc,
    )
    mlflow_app = scoring_server.init(loaded.pyfunc)
    # FastAPI's generated docs would describe MLflow's internals, not our API: the wrapper
    # never routes to them, and they are removed from MLflow's app as well.
    mlflow_app.router.routes = [
        route
        for route in mlflow_app.router.routes
        if getattr(route, "path", "") not in _DOCS_ROUTES
    ]
    mlflow_app.openapi_url = mlflow_app.docs_url = mlflow_app.redoc_url = None
    metrics.model_loaded(loaded.load_seconds)
    batcher = None
    if loaded.contract is not None and settings.batching:
        batcher = Batcher(
            loaded.pyfunc.predict,
            mlflow_frame_builder(loaded.pyfunc.metadata.get_input_schema()),
            mlflow_serialiser(),
            max_rows=settings.batch_max_rows,
            max_wait=settings.batch_max_wait_ms / 1000,
            concurrency=settings.batch_concurrency,
            on_batch=metrics.batch_scored,
            on_expired=metrics.aborted.labels(served.version).inc,
        )
    # Per worker (no preload: create_app runs after the fork), and the writer and shadow
    # threads start on the first decision, so no thread crosses a fork. The batch path
    # records through `batcher.on_scored`; MLflow's path (batching off, or a model without a
    # contract) after its answer was sent, from what the predict hook kept (serving/context.py).
    shadow_settings = load_shadow_settings()
    # Created whenever shadowing is on, so /metrics shows the counters (at 0) also while no
    # challenger is loaded.
    shadow_metrics = ShadowMetrics() if shadow_settings.share > 0 else None
    evidence = Evidence.for_worker(
        served.name, served.version, served.challenger, shadow_settings, shadow_metrics
    )
    if not evidence.enabled:
        evidence = None
    elif batcher is not None:
        batcher.on_scored.append(evidence.on_scored)
    log.info(
        "worker ready",
        extra={
            "fields": {
                "model": served.name,
                "version": served.version,
                "pid": os.getpid(),
                "load_seconds": round(loaded.load_seconds, 3),
            }
        },
    )
    return ServingApp(
        settings, loaded, mlflow_app, metrics, state_path, batcher, evidence, shadow_settings
    )
