"""The decision log's settings: one typed object read from DECISIONS_* environment variables.

The model server (the writer), the migration, `make monitor` and `make compare` (the readers)
all read this one object, so the store and what is kept are set once per deployment.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from serving.settings import load_or_exit

SECRET_VARIABLES = ("DECISIONS_STORE_URI", "DECISIONS_STORE_PASSWORD", "DECISIONS_WRITER_PASSWORD")
"""The settings that may come as NAME_FILE (common/secret_files.py): entry points read them."""

REGULATION_B_DAYS = 762
"""25 months (Regulation B, 12 CFR 1002.12: keep application records 25 months), rounded up."""


class InputMode(StrEnum):
    """What the log keeps of a scored row's inputs (serving/decisions/README.md: privacy)."""

    FULL = "full"
    """Every input value as sent: traceable and usable for drift, and personal data at rest."""
    HASHED = "hashed"
    """A keyed hash (HMAC-SHA256) per input value: proves which inputs were scored, no drift."""
    OFF = "off"
    """Nothing is logged at all."""


class DecisionSettings(BaseSettings):
    """Where decisions go and what of them is kept; every field has a DECISIONS_ variable."""

    model_config = SettingsConfigDict(
        env_prefix="DECISIONS_", extra="ignore", env_ignore_empty=True
    )

    mode: InputMode = Field(
        InputMode.FULL,
        description="full (inputs as sent), hashed (a keyed hash per input value) or off.",
    )
    store_uri: SecretStr = Field(
        SecretStr("sqlite:///.local/decisions.db"),
        description="sqlite:///<path> (native) or postgresql://user:pw@host:port/db (compose, "
        "Kubernetes); a secret, because it may hold the password.",
    )
    store_password: SecretStr | None = Field(
        None,
        description="PostgreSQL password, when not in the URI (compose and Kubernetes: from "
        "a secret file, DECISIONS_STORE_PASSWORD_FILE).",
    )
    hash_key_file: Path | None = Field(
        None,
        description="File holding the HMAC key of the hashed mode (32+ bytes; a Secret mount); "
        "required when DECISIONS_MODE=hashed.",
    )
    queue_size: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Scored requests one worker holds for the writer; more are dropped and "
        "counted (model_server_decisions_dropped_total), never waited for.",
    )
    batch_size: int = Field(
        500, ge=1, le=100_000, description="Requests the writer stores in one transaction."
    )
    flush_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds the writer waits to fill a batch."
    )
    retention_days: int = Field(
        REGULATION_B_DAYS,
        ge=1,
        le=36_500,
        description="Days a decision is kept; older rows are deleted by the writer.",
    )
    prune_interval: float = Field(
        3600.0,
        ge=0,
        description="Seconds between two deletions of rows past the retention by the writer; "
        "0: the writer never deletes (compose and Kubernetes: its role may only insert, and "
        "`python -m serving.decisions prune` runs on a schedule instead).",
    )
    reconnect_backoff_max: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Longest wait, in seconds, between two attempts to reach a failing store; "
        "the wait starts at 0.5 s and doubles. Entries wait in the queue meanwhile.",
    )
    writer_role: str = Field(
        "decisions_writer",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL role the migration creates for the model server: LOGIN, "
        "INSERT on the decisions table and nothing else.",
    )
    writer_password: SecretStr | None = Field(
        None,
        description="The writer role's password (DECISIONS_WRITER_PASSWORD_FILE); when set, "
        "`migrate` creates the role or sets its password. Unset: no role is made.",
    )
    connect_timeout: float = Field(
        5.0, gt=0, le=120, description="Seconds one connection attempt to the store may take."
    )

    @field_validator("store_uri")
    @classmethod
    def _check_store_uri(cls, value: SecretStr) -> SecretStr:
        uri = value.get_secret_value()
        if not uri.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @model_validator(mode="after")
    def _check_writer_password(self) -> DecisionSettings:
        if self.writer_password is not None and self.store_uri.get_secret_value().startswith(
            "sqlite:"
        ):
            raise ValueError(
                "DECISIONS_WRITER_PASSWORD: a writer role exists only in PostgreSQL; unset it "
                "for a SQLite store"
            )
        return self

    @model_validator(mode="after")
    def _check_hash_key(self) -> DecisionSettings:
        if self.mode is InputMode.HASHED:
            if self.hash_key_file is None:
                raise ValueError(
                    "DECISIONS_HASH_KEY_FILE: required with DECISIONS_MODE=hashed "
                    "(a file of 32+ random bytes, e.g. openssl rand -hex 32)"
                )
            if len(self.hash_key()) < 32:
                raise ValueError("DECISIONS_HASH_KEY_FILE: the key must hold 32 bytes or more")
        return self

    def open_store(self):
        """The store these settings name (serving/decisions/stores.py)."""
        from serving.decisions.stores import open_store

        password = self.store_password.get_secret_value() if self.store_password else None
        return open_store(self.store_uri.get_secret_value(), self.connect_timeout, password)

    def hash_key(self) -> bytes:
        """The HMAC key of the hashed mode (surrounding whitespace removed)."""
        assert self.hash_key_file is not None
        try:
            return self.hash_key_file.read_bytes().strip()
        except OSError as error:
            raise ValueError(
                f"DECISIONS_HASH_KEY_FILE: cannot read {self.hash_key_file}: {error.strerror}"
            ) from None


def load_decision_settings() -> DecisionSettings:
    """Read the settings; on invalid values raise SystemExit with what to set."""
    return load_or_exit(DecisionSettings, "DECISIONS_", "decision log")
