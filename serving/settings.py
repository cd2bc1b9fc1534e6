"""The model server's settings: one typed object read from SERVING_* environment variables."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common import facts

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


class ServingSettings(BaseSettings):
    """Everything the model server can be told; every field has a SERVING_ variable."""

    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="ignore", env_ignore_empty=True)

    model_uri: str = Field(
        facts.MODEL_URI,
        description="Registry URI: models:/<name>@<alias> follows the alias, "
        "models:/<name>/<version> pins a version.",
    )
    tracking_uri: str = Field(
        f"http://127.0.0.1:{facts.MLFLOW_PORT}",
        validation_alias=AliasChoices("SERVING_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking server that holds the registry.",
    )
    host: str = Field("127.0.0.1", description="Address to bind; 0.0.0.0 inside a container.")
    port: int = Field(facts.MODEL_SERVER_PORT, ge=1, le=65535, description="Port to bind.")
    workers: int = Field(2, ge=1, le=64, description="gunicorn worker processes.")
    request_timeout: float = Field(
        float(facts.REQUEST_TIMEOUT_SECONDS),
        gt=0,
        le=600,
        description="Seconds a prediction may take before a 504.",
    )
    poll_interval: float = Field(
        10.0, ge=1, le=3600, description="Seconds between alias lookups in the registry."
    )
    registry_timeout: float = Field(
        5.0, gt=0, le=120, description="Seconds one registry call may take while polling."
    )
    cache_dir: Path = Field(
        Path(".local/model-cache"),
        description="Downloaded models and the last-known-good record (a volume in containers).",
    )
    metrics_dir: Path = Field(
        Path(".local/model-server-metrics"),
        description="prometheus_client multiprocess files; emptied at start (tmpfs in containers).",
    )
    max_body_bytes: int = Field(
        facts.MAX_BODY_BYTES, ge=1024, description="Largest request body accepted (413 above)."
    )
    max_rows: int = Field(
        facts.MAX_ROWS,
        ge=1,
        le=1_000_000,
        description="Most rows one request may score (413 above), counted before any frame "
        "is built, for every content type.",
    )
    accept_csv: bool = Field(True, description="Accept text/csv bodies (header row + rows).")
    accept_parquet: bool = Field(
        False,
        description="Accept application/vnd.apache.parquet bodies; off by default because a "
        "few KiB of parquet can encode millions of rows (capped by its footer when on).",
    )
    # 64, not the 16 of the thread-per-request days: a request waiting for a merged model
    # call holds its checked rows, not a thread, and 32 gateway connections can all land on
    # one worker (bench/README.md, issue 15 tuning log: 16 gave 503s at c=32).
    max_concurrent_predictions: int = Field(
        64,
        ge=1,
        le=1024,
        description="Requests one worker scores or holds queued at once; more get 503 + "
        "Retry-After.",
    )
    predict_chunk_rows: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Rows per model call; the timeout is checked between chunks, so a "
        "prediction past it stops within one chunk.",
    )
    batching: bool = Field(
        True,
        description="Score requests that wait at the same moment in one model call (a model "
        "with an input contract); false sends every request through MLflow's app alone.",
    )
    batch_max_rows: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Most rows one merged model call takes; a larger request is scored alone.",
    )
    batch_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Model calls one worker runs at once; requests arriving while all are "
        "busy queue and are merged into the next free call.",
    )
    batch_max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=100,
        description="Milliseconds the first queued request may wait for others to join its "
        "model call; 0 adds no waiting (a batch is only what queued meanwhile).",
    )
    balanced_accept: bool = Field(
        True,
        description="Workers take connections in turn from the shared socket, so a burst is "
        "spread evenly (serving/balance.py); false: uvicorn's own accept.",
    )
    keepalive: int = Field(
        75, ge=1, le=3600, description="Idle keep-alive seconds; longer than the gateway's."
    )
    log_level: str = Field("info", description="debug, info, warning or error.")

    @field_validator("model_uri")
    @classmethod
    def _check_model_uri(cls, value: str) -> str:
        if not _MODEL_URI.match(value):
            raise ValueError(
                "must look like models:/<name>@<alias> (follows the alias) or "
                "models:/<name>/<version> (pinned)"
            )
        return value

    @field_validator("accept_parquet")
    @classmethod
    def _check_parquet_reader(cls, value: bool) -> bool:
        # The model-server image leaves pyarrow out unless built with PARQUET=1 (130 MB, for a
        # content type that is off by default): say so at start, not as a 500 per request.
        if value and importlib.util.find_spec("pyarrow") is None:
            raise ValueError(
                "needs pyarrow, which this installation lacks (the model-server image: build "
                "it with --build-arg PARQUET=1)"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value.lower()

    @property
    def accepted_media_types(self) -> str:
        """The Content-Types this server reads, for the 415 message."""
        types = ["application/json"]
        if self.accept_csv:
            types.append("text/csv")
        if self.accept_parquet:
            types.append("application/vnd.apache.parquet")
        return ", ".join(types)

    @property
    def model_name(self) -> str:
        return _MODEL_URI.match(self.model_uri)["name"]

    @property
    def alias(self) -> str | None:
        """The alias to follow, or None when the URI pins a version."""
        return _MODEL_URI.match(self.model_uri)["alias"]

    @property
    def pinned_version(self) -> str | None:
        return _MODEL_URI.match(self.model_uri)["version"]


def load_settings() -> ServingSettings:
    """Read the settings; on invalid values raise SystemExit with what to set."""
    return load_or_exit(ServingSettings, "SERVING_", "model server")


def load_or_exit(settings_class, prefix: str, who: str):
    """`settings_class()` from the environment; on invalid values SystemExit with one line
    naming each variable to fix (`prefix` + field) and what is wrong, never the value."""
    try:
        return settings_class()
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = str(item["loc"][0]) if item["loc"] else ""
            variable = f"{prefix}{field.upper()}: " if field else ""
            problems.append(f"{variable}{item['msg'].removeprefix('Value error, ')}")
        raise SystemExit(f"{who}: invalid settings: " + "; ".join(problems)) from None
