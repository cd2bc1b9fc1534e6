"""`python -m training.job`: the trainer container's one-shot job: train, register, promote.

1. Wait for the tracking server's /health (TRAINER_WAIT_SECONDS, default 300): compose starts
   this job after MLflow is healthy, but not every compose implementation enforces that.
2. With TRAINER_MODE=if-no-champion (the default) do nothing more when the model already has a
   `@champion`, so `docker compose up` on an existing stack does not train again; with
   TRAINER_MODE=always train a new version every time.
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

from training.registry import CHAMPION, DEFAULT_MODEL_NAME, DEFAULT_TRACKING_URI
from training.tracking_server import wait_until_up

MODES = ("if-no-champion", "always")
PROMOTED, NOT_PROMOTED = 0, 1


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
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    model_name = os.environ.get("TRAINER_MODEL_NAME", DEFAULT_MODEL_NAME)
    mode = os.environ.get("TRAINER_MODE", "if-no-champion")
    if mode not in MODES:
        raise SystemExit(f"trainer job: TRAINER_MODE must be one of {', '.join(MODES)}")
    wait_until_up(tracking_uri, float(os.environ.get("TRAINER_WAIT_SECONDS", "300")))

    if mode == "if-no-champion" and has_champion(tracking_uri, model_name):
        print(f"trainer job: {model_name}@{CHAMPION} exists; nothing to do", flush=True)
        return 0
    status = run_step("training.train", "--model-name", model_name, *extra)
    if status != 0:
        return status
    status = run_step("training.promote", "--model-name", model_name)
    if status == NOT_PROMOTED:
        print("trainer job: the new version was evaluated and not promoted", flush=True)
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
