"""`python -m training.job`: train, register and promote, once or every time.

The one implementation of "train a first model when there is no champion": the trainer image
runs it (compose's one-shot `trainer`, the Kubernetes trainer Job) and so does `make up`.

1. Wait for the tracking server's /health (TRAINER_WAIT_SECONDS): compose starts this job
   after MLflow is healthy, but not every compose implementation enforces that.
2. With TRAINER_MODE=if-no-champion (the default) do nothing more when the model already has
   a `@champion`, so `docker compose up` or `make up` on an existing stack does not train
   again; with TRAINER_MODE=always train a new version every time (the Kubernetes Job: "train
   and promote if better").
3. `python -m training.train --model-name NAME [extra args]`, then
   `python -m training.promote --model-name NAME`.

Exit status: 0 when the job did its work, including a candidate that was evaluated and not
promoted (promote's exit 1 is a decision, not a failure); the failing step's status otherwise.
Extra arguments go to `training.train` (for example `--classifier logreg`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.facts import CHAMPION, MODEL_NAME
from common.secret_files import read_or_exit
from training.registry import DEFAULT_TRACKING_URI, wait_until_up

MODES = ("if-no-champion", "always")
PROMOTED, NOT_PROMOTED = 0, 1


class TrainerSettings(BaseSettings):
    """What the trainer job can be told; every field has a TRAINER_ variable."""

    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore", env_ignore_empty=True)

    mode: Literal["if-no-champion", "always"] = Field(
        "if-no-champion",
        description="if-no-champion: train only when there is no @champion; always: every run.",
    )
    model_name: str = Field(MODEL_NAME, description="Registered model to train and promote.")
    wait_seconds: float = Field(300, ge=0, description="How long to wait for the tracking server.")


def load_settings(environ: dict[str, str] | None = None) -> TrainerSettings:
    """The job's settings from `environ` (default: the process environment)."""
    try:
        if environ is None:
            return TrainerSettings()
        # pydantic-settings reads os.environ; a given mapping replaces it for this call.
        values = {
            key[len("TRAINER_") :].lower(): value
            for key, value in environ.items()
            if key.startswith("TRAINER_") and value != ""
        }
        return TrainerSettings.model_validate(values)
    except ValidationError as error:
        item = error.errors()[0]
        field = str(item["loc"][0]) if item["loc"] else "?"
        if field == "mode":
            modes = ", ".join(MODES)
            raise SystemExit(f"trainer job: TRAINER_MODE must be one of {modes}") from None
        raise SystemExit(f"trainer job: TRAINER_{field.upper()}: {item['msg']}") from None


def has_champion(tracking_uri: str, model_name: str) -> bool:
    """Whether `model_name@champion` exists.

    A search, not a lookup by alias: with MLflow's auth app on, asking for a model that does not
    exist yet is answered 403, not 404.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri, tracking_uri)
    found = client.search_registered_models(filter_string=f"name = '{model_name}'")
    return any(CHAMPION in (model.aliases or {}) for model in found)


def run_step(*argv: str) -> int:
    print("trainer job: " + " ".join(argv), flush=True)
    return subprocess.run([sys.executable, "-m", *argv], check=False).returncode


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    # The trainer's MLflow password may come as a file (compose `secrets:`); the steps it runs
    # inherit it as MLflow's own variable.
    read_or_exit(["MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"])
    settings = load_settings()
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    wait_until_up(tracking_uri, settings.wait_seconds)

    if settings.mode == "if-no-champion" and has_champion(tracking_uri, settings.model_name):
        print(f"trainer job: {settings.model_name}@{CHAMPION} exists; nothing to do", flush=True)
        return 0
    status = run_step("training.train", "--model-name", settings.model_name, *extra)
    if status != 0:
        return status
    status = run_step("training.promote", "--model-name", settings.model_name)
    if status == NOT_PROMOTED:
        print("trainer job: the new version was evaluated and not promoted", flush=True)
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
