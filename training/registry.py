"""Talking to the MLflow tracking server and model registry from the command-line tools."""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import wraps

from common.facts import CHALLENGER, CHAMPION, MLFLOW_PORT, MODEL_NAME

DEFAULT_MODEL_NAME = MODEL_NAME
DEFAULT_TRACKING_URI = f"http://127.0.0.1:{MLFLOW_PORT}"
__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_TRACKING_URI",
    "CliError",
    "cli_main",
    "configure_client",
    "wait_until_up",
]

# MLflow's client retries an unreachable server for minutes by default; a person at a terminal
# wants to hear within seconds that the server is down. Callers can still override both.
_CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class CliError(Exception):
    """An error a person can fix; its message is printed as one line."""


def configure_client(tracking_uri: str | None) -> str:
    """Point MLflow at ``tracking_uri`` (or $MLFLOW_TRACKING_URI, or the local server)."""
    import mlflow

    for name, value in _CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def cli_main(program: str) -> Callable:
    """Run a CLI entry point: a CliError or an unreachable server becomes one line and exit 2."""

    def decorate(func: Callable[..., int]) -> Callable[..., int]:
        @wraps(func)
        def run(*args, **kwargs) -> int:
            import requests
            from mlflow.exceptions import MlflowException

            try:
                return func(*args, **kwargs)
            except CliError as error:
                print(f"{program}: error: {error}", file=sys.stderr)
            except (requests.exceptions.ConnectionError, MlflowException) as error:
                print(f"{program}: error: {_describe_mlflow_error(error)}", file=sys.stderr)
            return 2

        return run

    return decorate


def _describe_mlflow_error(error: Exception) -> str:
    import mlflow

    text = str(error)
    uri = mlflow.get_tracking_uri()
    if "Max retries exceeded" in text or "Connection refused" in text or "ConnectionError" in text:
        return (
            f"cannot reach the MLflow tracking server at {uri}; start it with 'make up' "
            "or set MLFLOW_TRACKING_URI"
        )
    first_line = text.splitlines()[0] if text else type(error).__name__
    return f"MLflow at {uri} refused the request: {first_line[:300]}"


def wait_until_up(tracking_uri: str, timeout: float) -> None:
    """Poll the tracking server's unauthenticated /health until it answers 200 or time runs out.

    For the one-shot jobs of the compose stack: `depends_on: condition: service_healthy` is
    not enforced by every compose implementation (podman-compose with podman < 4.6 skips it).
    """
    url = tracking_uri.rstrip("/") + "/health"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http(s) from settings)
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(2)
    raise SystemExit(f"tracking server {tracking_uri} not up after {timeout:.0f}s: {last}")
