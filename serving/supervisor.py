"""The supervisor: resolve the alias, check the model, run gunicorn, follow the alias.

MLflow resolves `models:/name@alias` once, at load time (mlflow/mlflow#4039). This process
closes that gap without touching MLflow's scoring server:

1. Resolve the alias to a concrete version once, download it into the cache, and check that it
   loads and predicts its input example in a separate process. All workers then load that same
   local copy, so they serve the same version.
2. Start gunicorn (uvicorn workers, no preload) on `serving.app:create_app()`.
3. Every poll interval, look the alias up with short timeouts. When it points at another
   version: download, check in a separate process, and only if that passes write the new
   record and send gunicorn SIGHUP. gunicorn starts new workers on the new model and lets the
   old ones finish their requests. A version that fails the check is never handed to gunicorn
   (new workers that fail to boot after a HUP would make gunicorn shut down): the old version
   keeps serving, and `/model` and `/metrics` report the failed attempt.

If the registry is unreachable at start, the last-known-good record in the cache is served.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from serving.logs import configure_logging
from serving.settings import ServingSettings, load_settings
from serving.state import ServedModel, SwapFailure

log = logging.getLogger("serving.supervisor")

STATE_FILE = "served.json"
VALIDATE_TIMEOUT = 300


class RegistryUnavailable(Exception):
    """The registry could not be asked or did not answer."""


class ModelRejected(Exception):
    """A version that was downloaded but does not load or predict its input example."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Registry:
    """The few registry calls the server needs, with short timeouts and few retries."""

    def __init__(self, settings: ServingSettings):
        # MLflow's client otherwise retries an unreachable server for minutes; set before the
        # first call, the values apply to every request this process makes.
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(max(1, settings.registry_timeout)))
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
        import mlflow
        from mlflow import MlflowClient

        # models:/ downloads go through the registry URI, which must be the same server.
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.tracking_uri)
        self.settings = settings
        self.client = MlflowClient(settings.tracking_uri, settings.tracking_uri)

    def current_version(self) -> tuple[str, str | None]:
        """(version, run_id) the URI points at now."""
        import requests
        from mlflow.exceptions import MlflowException

        name = self.settings.model_name
        try:
            if self.settings.alias:
                found = self.client.get_model_version_by_alias(name, self.settings.alias)
            else:
                found = self.client.get_model_version(name, self.settings.pinned_version)
        except (MlflowException, requests.RequestException, OSError) as error:
            raise RegistryUnavailable(_first_line(error)) from None
        return str(found.version), found.run_id

    def download(self, version: str) -> Path:
        """Download a version into the cache (once) and return its local directory."""
        import mlflow
        import requests
        from mlflow.exceptions import MlflowException

        target = self.settings.cache_dir / self.settings.model_name / version
        if (target / ".complete").exists():
            return target / "model"
        partial = target.with_name(f".{version}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{self.settings.model_name}/{version}",
                dst_path=str(partial / "model"),
                tracking_uri=self.settings.tracking_uri,
            )
        except (MlflowException, requests.RequestException, OSError) as error:
            shutil.rmtree(partial, ignore_errors=True)
            raise RegistryUnavailable(
                f"download of version {version} failed: {_first_line(error)}"
            ) from None
        (partial / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return target / "model"


def validate(model_path: Path) -> None:
    """Load the model and predict its input example in a separate process."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "serving.validate", str(model_path)],
            capture_output=True,
            text=True,
            timeout=VALIDATE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise ModelRejected(f"the check did not finish within {VALIDATE_TIMEOUT}s") from None
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).strip().splitlines()
        raise ModelRejected(lines[-1] if lines else f"check exited {result.returncode}")


class Supervisor:
    def __init__(self, settings: ServingSettings):
        self.settings = settings
        self.state_path = settings.cache_dir / STATE_FILE
        self.registry = Registry(settings)
        self.stopping = threading.Event()
        self.gunicorn: subprocess.Popen | None = None
        self.served: ServedModel | None = None

    def initial_model(self) -> ServedModel:
        """The version to start with: the registry's, or the cached last-known-good one."""
        try:
            version, run_id = self.registry.current_version()
            path = self.registry.download(version)
            validate(path)
            return ServedModel(
                name=self.settings.model_name,
                version=version,
                alias=self.settings.alias,
                run_id=run_id,
                path=str(path),
                source="registry",
                resolved_at=now(),
            )
        except (RegistryUnavailable, ModelRejected) as error:
            cached = self._cached()
            if cached is None:
                raise SystemExit(
                    f"model server: cannot start: {error}; and there is no cached model in "
                    f"{self.settings.cache_dir} (check SERVING_TRACKING_URI / "
                    f"MLFLOW_TRACKING_URI and SERVING_MODEL_URI)"
                ) from None
            log.warning("registry: %s; serving cached version %s", error, cached.version)
            cached.source = "cache"
            cached.extra["cache_reason"] = str(error)
            return cached

    def _cached(self) -> ServedModel | None:
        try:
            cached = ServedModel.read(self.state_path)
        except (OSError, ValueError, TypeError):
            return None
        if cached.name != self.settings.model_name or not Path(cached.path).is_dir():
            return None
        if self.settings.pinned_version and cached.version != self.settings.pinned_version:
            return None
        return cached

    def start_gunicorn(self) -> None:
        metrics_dir = self.settings.metrics_dir
        empty_directory(metrics_dir)
        env = {
            **os.environ,
            "SERVING_STATE_FILE": str(self.state_path.resolve()),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir.resolve()),
            # The wrapper owns the timeout (it answers 504 and the predict hook stops the
            # prediction); MLflow's own, which answers but leaves the thread running, is only
            # a backstop behind it.
            "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": str(int(self.settings.request_timeout) + 60),
            # The model is local and checked; workers never create environments or call out.
            "MLFLOW_DISABLE_ENV_CREATION": "true",
        }
        config = Path(__file__).with_name("gunicorn_conf.py")
        self.gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(config), "serving.app:create_app()"],
            env=env,
        )

    def follow(self) -> None:
        """Poll the alias until stopped; swap to a new version only after it passed the check."""
        failed_version = None
        while not self.stopping.wait(self.settings.poll_interval):
            try:
                version, run_id = self.registry.current_version()
            except RegistryUnavailable as error:
                log.warning(
                    "registry unreachable, still serving version %s: %s", self.served.version, error
                )
                continue
            if version in (self.served.version, failed_version):
                continue
            log.info(
                "alias %s moved to version %s (serving %s); checking it",
                self.settings.alias,
                version,
                self.served.version,
            )
            try:
                path = self.registry.download(version)
                validate(path)
            except (RegistryUnavailable, ModelRejected) as error:
                failed_version = version if isinstance(error, ModelRejected) else None
                self._record_failure(version, str(error))
                continue
            failed_version = None
            self._swap(version, run_id, path)

    def _record_failure(self, version: str, reason: str) -> None:
        log.error(
            "not swapping to version %s, still serving %s: %s", version, self.served.version, reason
        )
        self.served.swap_failures += 1
        self.served.last_swap_failure = SwapFailure(version=version, reason=reason[:500], at=now())
        self.served.write(self.state_path)

    def _swap(self, version: str, run_id: str | None, path: Path) -> None:
        previous = self.served.version
        self.served.version, self.served.run_id, self.served.path = version, run_id, str(path)
        self.served.source, self.served.resolved_at = "registry", now()
        self.served.swaps += 1
        self.served.extra.pop("cache_reason", None)
        self.served.write(self.state_path)
        self.gunicorn.send_signal(signal.SIGHUP)
        log.info("swapped %s -> %s: gunicorn reloads its workers gracefully", previous, version)

    def run(self) -> int:
        self.served = self.initial_model()
        self.served.write(self.state_path)
        log.info(
            "serving %s version %s (%s), alias %s",
            self.served.name,
            self.served.version,
            self.served.source,
            self.settings.alias or "none (pinned)",
        )
        self.start_gunicorn()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        # SIGHUP to the supervisor (e.g. `kill -HUP 1` in a container) reloads the workers.
        signal.signal(signal.SIGHUP, lambda signum, frame: self.gunicorn.send_signal(signum))
        if self.settings.alias:
            threading.Thread(target=self.follow, name="alias-follower", daemon=True).start()
        code = self.gunicorn.wait()
        self.stopping.set()
        return code

    def _stop(self, signum, frame) -> None:
        self.stopping.set()
        if self.gunicorn and self.gunicorn.poll() is None:
            self.gunicorn.send_signal(signal.SIGTERM)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def main() -> int:
    # Every file the server and its workers create (model cache, state record, metrics files)
    # is for the server's own user only: 0600 files, 0700 folders.
    os.umask(0o077)
    settings = load_settings()
    configure_logging(settings.log_level)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    return Supervisor(settings).run()


def empty_directory(path: Path) -> None:
    """Make `path` an empty directory without removing `path` itself.

    In Kubernetes and a Container Instance the metrics directory is a volume of its own (an
    emptyDir): its mount point cannot be removed, only emptied. Removing and re-creating it
    failed there (FileExistsError) and crash-looped the server.
    """
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
