"""The tracking server's typed settings: every field is a TRACKING_ variable.

The defaults are 127.0.0.1, common.facts.MLFLOW_PORT and no auth (the tests' MlflowServer;
`make up` turns auth on in stack/local.py); what a
container needs differently is in the image's ENV (images/python.Dockerfile, target mlflow),
and what one deployment needs differently in its env file. An empty variable means "default".
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from common import facts

PREFIX = "TRACKING_"
MIN_PASSWORD_LENGTH = 12


class SettingsError(ValueError):
    """Settings that cannot start a server; the message names the variable to set."""


class TrackingSettings(BaseSettings):
    """Where the stores are, how the server listens, and the stack's users."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore")

    backend_store_uri: SecretStr | None = Field(
        None,
        description="Full SQLAlchemy URI of the tracking and registry store (SQLite natively, "
        "OKE's external PostgreSQL); when set, the TRACKING_DB_* parts are not used.",
    )
    db_host: str | None = Field(None, description="PostgreSQL host (compose: `postgres`).")
    db_port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port.")
    db_user: str = Field("mlflow", description="PostgreSQL user; owns both databases.")
    db_password: SecretStr | None = Field(None, description="PostgreSQL password.")
    db_name: str = Field("mlflow", description="Database of the tracking and registry store.")
    auth_db_name: str = Field(
        "mlflow_auth",
        description="Database of the basic-auth users, on the backend store's server (SQLite: "
        "`<name>.db` beside the backend file); created when missing.",
    )
    auth: bool = Field(
        False, description="MLflow basic auth (on in the image and in `make up`, off in tests)."
    )
    artifacts_destination: str = Field(
        description="Where --serve-artifacts keeps artifacts: a directory or an s3:// URI."
    )
    host: str = Field("127.0.0.1", description="Address to bind (the image: 0.0.0.0).")
    port: int = Field(facts.MLFLOW_PORT, ge=1, le=65535, description="Port to bind.")
    workers: int = Field(2, ge=1, le=32, description="uvicorn workers of the tracking server.")
    allowed_hosts: str | None = Field(
        None,
        description="Host headers accepted, comma-separated (--allowed-hosts, DNS-rebinding "
        "protection); unset: MLflow's localhost-only default.",
    )
    runtime_dir: Path | None = Field(
        None,
        description="Private directory for the generated basic-auth ini (a tmpfs in "
        "containers); unset: a new 0700 temporary directory.",
    )
    trainer_username: str = Field("trainer", description="User the trainer logs in as.")
    trainer_password: SecretStr | None = Field(
        None, description="Password of the trainer user (required with auth)."
    )
    model_server_username: str = Field(
        "model-server", description="Read-only user the model server logs in as."
    )
    model_server_password: SecretStr | None = Field(
        None, description="Password of the model-server user (required with auth)."
    )
    model_name: str = Field(
        facts.MODEL_NAME, description="Registered model the users get their permission on."
    )
    experiment_name: str = Field(
        facts.MODEL_NAME,
        description="Experiment the trainer logs to (training/train.py --experiment default).",
    )
    upgrade_db: bool = Field(
        True,
        description="Migrate the stores to this MLflow's schema before the server starts "
        "(tracking/migrate.py); the image sets false: compose and Kubernetes migrate in a "
        "one-shot step first and the server only checks.",
    )
    startup_timeout: float = Field(
        120, gt=0, description="Seconds to wait for PostgreSQL at start (it may start later)."
    )

    @model_validator(mode="after")
    def _complete(self) -> TrackingSettings:
        """Required-together settings, named as variables (a plain field cannot say this)."""
        if self.backend_store_uri is None and self.db_host is None:
            raise ValueError(f"set {PREFIX}BACKEND_STORE_URI or {PREFIX}DB_HOST")
        if self.backend_store_uri is None and self.db_password is None:
            raise ValueError(f"{PREFIX}DB_PASSWORD is required with {PREFIX}DB_HOST")
        if self.auth:
            for name in ("trainer_password", "model_server_password"):
                secret = getattr(self, name)
                if secret is None or len(secret.get_secret_value()) < MIN_PASSWORD_LENGTH:
                    raise ValueError(
                        f"{PREFIX}{name.upper()} is required with {PREFIX}AUTH=true "
                        f"({MIN_PASSWORD_LENGTH}+ characters)"
                    )
        return self

    def backend_uri(self) -> str:
        """The tracking store's URI (it holds the database password: environment only)."""
        if self.backend_store_uri is not None:
            return self.backend_store_uri.get_secret_value()
        assert self.db_password is not None  # checked by _complete
        user = quote(self.db_user, safe="")
        password = quote(self.db_password.get_secret_value(), safe="")
        return f"postgresql://{user}:{password}@{self.db_host}:{self.db_port}/{self.db_name}"

    def auth_store_uri(self) -> str:
        """The basic-auth user store: the backend's server with the auth database."""
        url = make_url(self.backend_uri())
        if url.get_backend_name() == "sqlite":
            folder = Path(url.database or ".").parent
            return f"sqlite:///{folder / f'{self.auth_db_name}.db'}"
        return url.set(database=self.auth_db_name).render_as_string(hide_password=False)

    def is_postgresql(self) -> bool:
        return make_url(self.backend_uri()).get_backend_name() == "postgresql"

    def local_artifacts_dir(self) -> Path | None:
        """The artifacts directory to create, or None for a remote store (s3://...)."""
        if "://" in self.artifacts_destination:
            return None
        return Path(self.artifacts_destination)


def load_settings() -> TrackingSettings:
    """Read the settings from the environment.

    Raises:
        SettingsError: one line naming every variable that is wrong and why.
    """
    try:
        return TrackingSettings()
    except ValidationError as error:
        problems = []
        for item in error.errors():
            message = str(item["msg"]).removeprefix("Value error, ")
            if item["loc"]:
                message = f"{PREFIX}{str(item['loc'][0]).upper()}: {message}"
            problems.append(message)
        raise SettingsError("; ".join(problems)) from None
