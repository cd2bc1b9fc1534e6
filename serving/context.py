"""What one request's predict hook reports back to the wrapper around MLflow's app.

MLflow runs `model.predict` in a worker thread (`asyncio.to_thread`), which gets a copy of the
request's contextvars; the copy holds the same `RequestContext` object, so what the hook writes
on it is what the wrapper reads after MLflow answers.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

from serving.api_errors import ApiError


@dataclass
class RequestContext:
    """Per-request facts the predict hook reports back to the wrapper."""

    request_id: str
    headers: dict[bytes, bytes] = field(default_factory=dict)
    error: ApiError | None = None
    rows: int = 0
    predict_called: bool = False
    # time.monotonic() after which the predict hook stops (serving/contract.py), and the
    # timeout it came from, for the 504 message.
    deadline: float | None = None
    timeout: float = 0.0
    # Set by the wrapper for a request it hands to MLflow's app: the predict hook then keeps
    # the frame it scored and the model's output (references), for the decision log and the
    # shadow once the answer is sent (serving/evidence.py). The batch path has its own hook.
    keep_scored: bool = False
    scored_rows: object = None
    scored_outputs: object = None

    def report(self, error: ApiError) -> ApiError:
        """Remember `error` as this request's answer; returns it for `raise`."""
        self.error = error
        return error


current_request: contextvars.ContextVar[RequestContext] = contextvars.ContextVar("request")
