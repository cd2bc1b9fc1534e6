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

Shadow scoring (SHADOW_SHARE > 0, serving/shadow.py): the supervisor resolves `@challenger`
(SHADOW_ALIAS) of the same model the same way, downloads and checks it in the same separate
process, and records it in the served-model state; each worker loads it next to the champion.
Every poll follows that alias too: a move or a deletion rewrites the record and reloads the
workers (SIGHUP, as for the champion; both changes of one poll share one reload). A challenger
that fails its check is never recorded: whatever was loaded stays, the champion is untouched,
and `/model` (`challenger_checks`) and `/metrics` report the failure.
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
from serving.shadow import ShadowSettings, alias_is_absent, load_shadow_settings
from serving.state import ServedModel, ShadowModel, SwapFailure

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
        name = self.settings.model_name
        if self.settings.alias:
            return self._ask(
                lambda: self.client.get_model_version_by_alias(name, self.settings.alias)
            )
        return self._ask(lambda: self.client.get_model_version(name, self.settings.pinned_version))

    def alias_version(self, alias: str) -> tuple[str, str | None] | None:
        """(version, run_id) that `alias` of the served model points at, or None when the
        alias (or the model) does not exist."""
        name = self.settings.model_name
        return self._ask(
            lambda: self.client.get_model_version_by_alias(name, alias), absent_is_none=True
        )

    def _ask(self, call, absent_is_none: bool = False):
        """(version, run_id) of the model version `call` fetches. A registry that fails or
        does not answer is RegistryUnavailable, and so is a missing alias, unless
        `absent_is_none`: then it is None."""
        import requests
        from mlflow.exceptions import MlflowException

        try:
            found = call()
        except MlflowException as error:
            if absent_is_none and alias_is_absent(error.error_code):
                return None
            raise RegistryUnavailable(_first_line(error)) from None
        except (requests.RequestException, OSError) as error:
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
        # The check prints its one line on stdout; stderr may end with a library's warning
        # (a model's own logging), which must not become the reason.
        lines = result.stdout.strip().splitlines() or result.stderr.strip().splitlines()
        raise ModelRejected(lines[-1] if lines else f"check exited {result.returncode}")


class Supervisor:
    def __init__(self, settings: ServingSettings, shadow: ShadowSettings | None = None):
        self.settings = settings
        self.shadow = shadow or ShadowSettings()
        self.state_path = settings.cache_dir / STATE_FILE
        self.registry = Registry(settings)
        self.stopping = threading.Event()
        self.gunicorn: subprocess.Popen | None = None
        self.served: ServedModel | None = None
        # A version that failed its check is not checked again until its alias moves.
        self.failed_version: str | None = None
        self.failed_challenger: str | None = None

    @property
    def shadowing(self) -> bool:
        return self.shadow.share > 0

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
            if not self.shadowing or (
                cached.challenger is not None and not Path(cached.challenger.path).is_dir()
            ):
                cached.challenger = None
            return cached

    def initial_challenger(self) -> None:
        """Resolve and check `@challenger` once at start (shadowing on); a failure is recorded
        and the server starts without a challenger."""
        if not self.shadowing:
            return
        try:
            found = self.registry.alias_version(self.shadow.alias)
        except RegistryUnavailable as error:
            log.warning("registry: %s; @%s not resolved at start", error, self.shadow.alias)
            return
        self._follow_challenger_to(found)

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
        """Poll the aliases until stopped; reload the workers once per poll that changed the
        record, only with versions that passed the check."""
        while not self.stopping.wait(self.settings.poll_interval):
            if self.poll_once():
                self._reload()

    def poll_once(self) -> bool:
        """One look at `@champion` (when followed) and `@challenger` (when shadowing); True
        when the record changed and the workers must reload."""
        changed = False
        if self.settings.alias:
            changed |= self._follow_champion()
        if self.shadowing:
            try:
                found = self.registry.alias_version(self.shadow.alias)
            except RegistryUnavailable as error:
                log.warning("registry unreachable, keeping the challenger as it is: %s", error)
            else:
                changed |= self._follow_challenger_to(found)
        return changed

    def _follow_champion(self) -> bool:
        try:
            version, run_id = self.registry.current_version()
        except RegistryUnavailable as error:
            log.warning(
                "registry unreachable, still serving version %s: %s", self.served.version, error
            )
            return False
        if version in (self.served.version, self.failed_version):
            return False
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
            self.failed_version = version if isinstance(error, ModelRejected) else None
            self._record_failure(version, str(error))
            return False
        self.failed_version = None
        self._swap(version, run_id, path)
        return True

    def _follow_challenger_to(self, found: tuple[str, str | None] | None) -> bool:
        """Make the record's challenger what `@challenger` points at (`found`, or None when
        the alias is gone); True when the record changed."""
        current = self.served.challenger
        step = challenger_step(
            current.version if current else None,
            found[0] if found else None,
            self.failed_challenger,
        )
        if found is None:
            self.failed_challenger = None
        if step == KEEP:
            return False
        if step == DROP:
            log.info("@%s deleted: no more shadow scoring of v%s", self.shadow.alias,
                     current.version)  # fmt: skip
            self.served.challenger = None
            self.served.write(self.state_path)
            return True
        version, run_id = found
        log.info("@%s points at version %s; checking it for shadow scoring",
                 self.shadow.alias, version)  # fmt: skip
        try:
            path = self.registry.download(version)
            validate(path)
        except (RegistryUnavailable, ModelRejected) as error:
            self.failed_challenger = version if isinstance(error, ModelRejected) else None
            log.error("not shadowing version %s: %s", version, error)
            self.served.challenger_failures += 1
            self.served.last_challenger_failure = SwapFailure(
                version=version, reason=str(error)[:500], at=now()
            )
            self.served.write(self.state_path)
            return False
        self.failed_challenger = None
        self.served.challenger = ShadowModel(
            version=version, alias=self.shadow.alias, run_id=run_id, path=str(path),
            resolved_at=now(),
        )  # fmt: skip
        self.served.write(self.state_path)
        return True

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
        log.info("swapping %s -> %s", previous, version)

    def _reload(self) -> None:
        self.gunicorn.send_signal(signal.SIGHUP)
        log.info(
            "gunicorn reloads its workers gracefully: version %s, challenger %s",
            self.served.version,
            self.served.challenger.version if self.served.challenger else "none",
        )

    def run(self) -> int:
        self.served = self.initial_model()
        self.initial_challenger()
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
        if self.settings.alias or self.shadowing:
            threading.Thread(target=self.follow, name="alias-follower", daemon=True).start()
        code = self.gunicorn.wait()
        self.stopping.set()
        return code

    def _stop(self, signum, frame) -> None:
        self.stopping.set()
        if self.gunicorn and self.gunicorn.poll() is None:
            self.gunicorn.send_signal(signal.SIGTERM)


KEEP, DROP, CHECK = "keep", "drop", "check"


def challenger_step(loaded: str | None, aliased: str | None, failed: str | None) -> str:
    """What one poll does about the challenger: `loaded` is the recorded version (or None),
    `aliased` the version @challenger points at now (None: no such alias), `failed` the
    version that last failed its check. KEEP the record, DROP the challenger, or CHECK the
    aliased version (and record it if it passes)."""
    if aliased is None:
        return KEEP if loaded is None else DROP
    if aliased in (loaded, failed):
        return KEEP
    return CHECK


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def main() -> int:
    # Every file the server and its workers create (model cache, state record, metrics files)
    # is for the server's own user only: 0600 files, 0700 folders.
    os.umask(0o077)
    settings = load_settings()
    shadow = load_shadow_settings()
    configure_logging(settings.log_level)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    return Supervisor(settings, shadow).run()


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
