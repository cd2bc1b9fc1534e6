"""Start and stop the systems under test with the stack's own process helpers.

The helpers come from `stack/` on purpose: the benchmark then starts the mlflow server, the
model server and nginx exactly as the integration tests and `make up` do (free ports,
readiness polled with a deadline, whole process group stopped), with no second copy to drift.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from common.facts import CHAMPION, MODEL_NAME
from stack.services import (
    PYTHON,
    Gateway,
    MlflowServer,
    ModelServer,
    Process,
    free_port,
    http_ok,
    keys_cli,
    make_certs,
    run_cli,
    tail,
    wait_until,
)

__all__ = [
    "MlflowServer",
    "System",
    "free_port",
    "prepare_registry",
    "run_cli",
    "start_flask",
    "start_gateway",
    "start_mlflow_serve",
    "start_model_server",
    "tail",
]

# The benchmark must never be throttled by the gateway; production keeps 100 r/s per key and
# 200 r/s per address (nginx/render.sh).
UNTHROTTLED = {
    "GATEWAY_RATE_PER_KEY": "100000r/s",
    "GATEWAY_BURST_PER_KEY": "100000",
    "GATEWAY_RATE_PER_ADDRESS": "100000r/s",
    "GATEWAY_BURST_PER_ADDRESS": "100000",
}


@dataclass
class System:
    """One system under test: where to send load, which process groups to charge CPU to."""

    key: str
    label: str
    url: str
    stoppers: list = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)
    api_key: str = ""
    check_url: str = ""  # the same route for the correctness check (a name the CA covers)
    verify: str | bool = True
    logs: list[Path] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            stop()


def prepare_registry(tracking_uri: str, rows: int, workdir: Path) -> tuple[str, Path]:
    """Train and promote the default pipeline; export it as joblib for the Flask app.

    Returns:
        The registered version and the path of `model.joblib`.
    """
    trained = run_cli(
        "training.train", "--model-name", MODEL_NAME, "--rows", str(rows), tracking_uri=tracking_uri
    )
    if trained.returncode != 0:
        raise RuntimeError(f"training failed:\n{trained.stderr[-3000:]}")
    version = trained.stdout.split(" version ")[1].split()[0]
    promoted = run_cli("training.promote", "--model-name", MODEL_NAME, tracking_uri=tracking_uri)
    if promoted.returncode != 0:
        raise RuntimeError(f"promotion failed:\n{promoted.stderr[-3000:]}")
    joblib_path = workdir / "model.joblib"
    export_joblib(tracking_uri, version, joblib_path)
    return version, joblib_path


def export_joblib(tracking_uri: str, version: str, target: Path) -> None:
    """Dump the registered model's fitted pipeline the way the tutorial does (joblib)."""
    import joblib
    import mlflow
    import skops.io

    from training.credit_model import PIPELINE_ARTIFACT, TRUSTED_TYPES

    mlflow.set_tracking_uri(tracking_uri)
    local = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{MODEL_NAME}/{version}", dst_path=str(target.parent / "model-copy")
        )
    )
    pipeline = skops.io.load(
        local / "artifacts" / f"{PIPELINE_ARTIFACT}.skops", trusted=TRUSTED_TYPES
    )
    joblib.dump(pipeline, target)


def start_flask(workdir: Path, joblib_path: Path) -> System:
    """(a) The tutorial's Flask app: joblib.load + app.run."""
    port = free_port()
    log = workdir / "flask.log"
    process = Process([PYTHON, "-m", "bench.flask_app", str(joblib_path), str(port)], log=log)
    url = f"http://127.0.0.1:{port}"
    system = System("a", "Flask app (joblib, app.run)", f"{url}/predict", [process.stop])
    system.sessions, system.logs = [process.pid], [log]
    _ready(system, http_ok(f"{url}/ping"), process, log)
    return system


def start_mlflow_serve(workdir: Path, tracking_uri: str, version: str) -> System:
    """(b) `mlflow models serve` with its defaults (one uvicorn worker)."""
    port = free_port()
    log = workdir / "mlflow-serve.log"
    process = Process(
        [
            PYTHON, "-m", "mlflow", "models", "serve",
            "-m", f"models:/{MODEL_NAME}/{version}",
            "--env-manager", "local",
            "-p", str(port),
        ],
        log=log,
        # MLflow runs `uvicorn` from PATH: put this interpreter's scripts first.
        env={
            "MLFLOW_TRACKING_URI": tracking_uri,
            "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    system = System("b", "mlflow models serve", f"{url}/invocations", [process.stop])
    system.sessions, system.logs = [process.pid], [log]
    _ready(system, http_ok(f"{url}/ping"), process, log)
    return system


def start_model_server(workdir: Path, tracking_uri: str, env: dict[str, str]) -> System:
    """(c) The project's model server on @champion, with its own defaults unless `env` says."""
    server = ModelServer(workdir / "model-server", tracking_uri, f"models:/{MODEL_NAME}@{CHAMPION}")
    # ModelServer is tuned for tests (2 workers, 1 s alias polling); the benchmark measures the
    # settings' defaults, so drop those two and apply only what the caller sets.
    for name in ("SERVING_WORKERS", "SERVING_POLL_INTERVAL"):
        server.env.pop(name)
    server.env.update(env)
    system = System("c", "model server (gunicorn)", f"{server.url}/invocations", [server.stop])
    try:
        server.start()
    except AssertionError:
        server.stop()
        raise
    system.sessions, system.logs = [server.process.pid], [server.process.log]
    return system


def start_gateway(workdir: Path, model_server: System, env: dict[str, str]) -> System:
    """(d) nginx over TLS with an API key in front of a running model server (c)."""
    tls_dir = make_certs(workdir / "tls")
    keys_file = workdir / "secrets" / "api-keys.map"
    runtime = workdir / "gateway" / "nginx"
    api_key = keys_cli(keys_file, runtime, "--no-reload", "create", "bench").stdout.strip()
    port = model_server.url.split(":")[2].split("/")[0]
    gateway = Gateway(
        workdir / "gateway", tls_dir, keys_file, f"127.0.0.1:{port}", **{**UNTHROTTLED, **env}
    )
    url = f"https://127.0.0.1:{gateway.https_port}"
    system = System("d", "gateway (nginx TLS + key) -> model server", f"{url}/invocations")
    system.stoppers = [gateway.stop]
    system.api_key = api_key
    # wrk does not verify certificates; the correctness check does, against the dev CA.
    system.check_url, system.verify = f"{gateway.url}/invocations", gateway.ca_cert
    try:
        gateway.start()
        wait_until(http_ok(f"{gateway.url}/healthz", verify=gateway.ca_cert), 30, "gateway healthy")
    except AssertionError:
        gateway.stop()
        raise
    system.sessions = [gateway.process.pid, *model_server.sessions]
    system.logs = [gateway.workdir / "nginx.log", *model_server.logs]
    return system


def _ready(system: System, condition, process: Process, log: Path, timeout: float = 120) -> None:
    try:
        wait_until(condition, timeout, f"{system.label} ready", process.popen, log)
    except AssertionError:
        system.stop()
        raise
