"""What the request path hands a scored request to: the decision log and the shadow.

`Evidence.scored(...)` is the one call the model server makes for a scored request once its
answer is written: the rows it scored, the outputs it answered, the latency. It records the
champion's decision (serving/decisions/) and offers the rows to the challenger's shadow
(serving/shadow.py); both only queue and return. Two paths call it: the batcher's
`on_scored` hook (`Evidence.on_scored`, rows as a `RowView`) and, for a request MLflow's own
app scored (batching off, or a model without a contract), the wrapper after the answer was
sent (rows and outputs as the predict hook saw them, DataFrames; serving/app.py).

The API key's name comes from the gateway's `X-Client` header, which nginx sets from its key
map (`nginx/snippets/proxy.conf`: `proxy_set_header X-Client $api_client`, replacing whatever
a client sent) and the model server is reached only through the gateway. The key itself never
reaches the model server (`proxy_set_header X-API-Key ""`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from serving.decisions import DecisionLog, load_decision_settings
from serving.shadow import ShadowMetrics, ShadowScorer, ShadowSettings, load_shadow

KEY_NAME_HEADER = b"x-client"


class RowView(Sequence):
    """A scored request's rows (lists in `columns` order) seen as dicts, made only when read.

    The batcher hands over the rows as it checked them; the writer thread (not the request
    path) turns them into column -> value mappings when it stores them. The writer keeps the
    rows' JSON in `json_lines`: the shadow's challenger entry holds the same RowView, and its
    inputs are then not encoded twice.
    """

    __slots__ = ("columns", "data", "json_lines")

    def __init__(self, columns: list[str], data: list[list]):
        self.columns = columns
        self.data = data
        self.json_lines: list[str] | None = None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        return dict(zip(self.columns, self.data[index], strict=True))

    def __iter__(self) -> Iterator[dict]:
        columns = self.columns
        return (dict(zip(columns, row, strict=True)) for row in self.data)


class Evidence:
    """One worker's decision log and shadow scorer (None when shadowing is off)."""

    def __init__(
        self,
        decision_log: DecisionLog,
        model_name: str,
        version: str,
        shadow: ShadowScorer | None = None,
    ):
        self.decision_log = decision_log
        self.model_name = model_name
        self.version = str(version)
        self.shadow = shadow

    @classmethod
    def for_worker(
        cls,
        model_name: str,
        version: str,
        challenger=None,
        shadow_settings: ShadowSettings | None = None,
        shadow_metrics: ShadowMetrics | None = None,
    ) -> Evidence:
        """From the DECISIONS_* and SHADOW_* settings. `challenger` is the checked
        @challenger the supervisor recorded (serving.state.ShadowModel) or None; it is loaded
        here only when the decision log is on (its decisions have nowhere else to go)."""
        decision_log = DecisionLog(load_decision_settings())
        settings = shadow_settings or ShadowSettings()
        loaded = load_shadow(challenger, settings) if decision_log.enabled else None
        shadow = None
        if loaded is not None:
            from serving.batching import mlflow_frame_builder

            model, challenger_version = loaded
            shadow = ShadowScorer(
                settings, model, model_name, challenger_version, decision_log, shadow_metrics,
                build_frame=mlflow_frame_builder(model.metadata.get_input_schema()),
            )  # fmt: skip
        return cls(decision_log, model_name, version, shadow)

    def scored(
        self, request_id: str, headers: dict[bytes, bytes], rows, outputs, latency_ms: float
    ) -> None:
        """Record the champion's decision and offer the rows to the shadow; never blocks."""
        key_name = headers.get(KEY_NAME_HEADER, b"").decode("latin-1") or None
        self.decision_log.record(
            request_id, key_name, self.model_name, self.version, rows, outputs, latency_ms
        )
        if self.shadow is not None:
            self.shadow.offer(request_id, key_name, rows)

    def on_scored(self, record) -> None:
        """The batcher's hook (`Batcher.on_scored`, a serving.batching.ScoredRequest)."""
        self.scored(
            record.request_id,
            record.headers,
            RowView(record.columns, record.data),
            record.outputs,
            record.latency_s * 1000,
        )

    def on_mlflow_scored(self, context, latency_ms: float) -> bool:
        """A request MLflow's app scored and answered 2xx (serving/app.py): record what the
        predict hook kept on its context (serving/context.py). Only a table of outputs with
        one row per input row is recorded (False otherwise): the log stores one row each."""
        rows, outputs = context.scored_rows, context.scored_outputs
        if not (_is_table(rows) and _is_table(outputs) and len(rows) == len(outputs)):
            return False
        self.scored(context.request_id, context.headers, rows, outputs, latency_ms)
        return True

    @property
    def enabled(self) -> bool:
        """Whether anything is recorded (DECISIONS_MODE is not `off`)."""
        return self.decision_log.enabled

    def close(self, timeout: float = 5.0) -> None:
        if self.shadow is not None:
            self.shadow.close(timeout)
        self.decision_log.close(timeout)


def _is_table(value) -> bool:
    """A pandas DataFrame (duck-typed: pandas is not imported on the request path)."""
    return hasattr(value, "iloc") and hasattr(value, "columns") and hasattr(value, "to_json")
