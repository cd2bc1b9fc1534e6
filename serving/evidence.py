"""What the request path hands a scored request to: the decision log and the shadow.

`Evidence.scored(...)` is the one call the model server makes once a scored request's answer
has been sent: the rows it scored, the outputs it answered, the latency. It records the
champion's decision (serving/decisions/) and offers the rows to the challenger's shadow
(serving/shadow.py); both only queue and return.

The API key's name comes from the gateway's `X-Client` header, which nginx sets from its key
map (`nginx/snippets/proxy.conf`: `proxy_set_header X-Client $api_client`, replacing whatever
a client sent) and the model server is reached only through the gateway. The key itself never
reaches the model server (`proxy_set_header X-API-Key ""`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from serving.decisions import DecisionLog, load_decision_settings
from serving.shadow import ShadowScorer, ShadowSettings

KEY_NAME_HEADER = b"x-client"


class RowView(Sequence):
    """A scored request's rows (lists in `columns` order) seen as dicts, made only when read.

    The batcher hands over the rows as it checked them; the writer thread (not the request
    path) turns them into column -> value mappings when it stores them.
    """

    __slots__ = ("columns", "data")

    def __init__(self, columns: list[str], data: list[list]):
        self.columns = columns
        self.data = data

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
    def for_worker(cls, model_name: str, version: str, challenger=None) -> Evidence:
        """From the DECISIONS_* and SHADOW_* settings; `challenger` is (model, version) of a
        checked @challenger, or None."""
        decision_log = DecisionLog(load_decision_settings())
        shadow = None
        if challenger is not None:
            model, challenger_version = challenger
            shadow = ShadowScorer(
                ShadowSettings(), model, model_name, challenger_version, decision_log
            )
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

    @property
    def enabled(self) -> bool:
        """Whether anything is recorded (DECISIONS_MODE is not `off`)."""
        return self.decision_log.enabled

    def close(self, timeout: float = 5.0) -> None:
        if self.shadow is not None:
            self.shadow.close(timeout)
        self.decision_log.close(timeout)
