"""The project's servers as real processes on free ports: what tests and bench/ start.

Each class starts one component exactly as production does (the same module, the same
settings variables), on a free port, and waits for its readiness route with a deadline.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from stack.processes import (
    PYTHON,
    ROOT,
    Process,
    free_port,
    http_ok,
    tail,
    tcp_open,
    wait_until,
)

__all__ = [
    "PYTHON",
    "ROOT",
    "Gateway",
    "MlflowServer",
    "ModelServer",
    "Process",
    "free_port",
    "http_ok",
    "keys_cli",
    "make_certs",
    "run_cli",
    "tail",
    "tcp_open",
    "wait_until",
]


class MlflowServer:
    """The tracking server's one entry point (`python -m tracking`) on a free port.

    SQLite in `workdir` unless `backend_uri` names another store (a PostgreSQL URI); one worker.
    `settings` become TRACKING_<NAME> variables (auth="true", trainer_password=...), as for
    ModelServer; `start()` after `stop()` restarts with the current `env`.
    """

    def __init__(self, workdir: Path, backend_uri: str | None = None, **settings: str):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.backend_uri = backend_uri or f"sqlite:///{workdir / 'mlflow.db'}"
        self.env = {
            "TRACKING_BACKEND_STORE_URI": self.backend_uri,
            "TRACKING_ARTIFACTS_DESTINATION": str(workdir / "artifacts"),
            "TRACKING_PORT": str(self.port),
            "TRACKING_WORKERS": "1",
            **{f"TRACKING_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.process: Process | None = None

    def start(self, timeout: float = 90) -> MlflowServer:
        self.process = Process(
            [PYTHON, "-m", "tracking"], log=self.workdir / "mlflow-server.log", env=self.env
        )
        _wait_ready(self.process, f"{self.uri}/health", timeout, "mlflow server healthy")
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()


def run_cli(
    module: str,
    *args: str,
    tracking_uri: str,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run one of the project's CLIs the way a person does, and capture what it says."""
    return subprocess.run(
        [PYTHON, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, **(env or {})},
    )


class ModelServer:
    """The project's model server (`python -m serving`) on a free port."""

    def __init__(
        self,
        workdir: Path,
        tracking_uri: str,
        model_uri: str,
        workers: int = 2,
        poll_interval: float = 1.0,
        env: dict[str, str] | None = None,
        **settings: str,
    ):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "SERVING_TRACKING_URI": tracking_uri,
            "SERVING_MODEL_URI": model_uri,
            "SERVING_PORT": str(self.port),
            "SERVING_WORKERS": str(workers),
            "SERVING_POLL_INTERVAL": str(poll_interval),
            "SERVING_REGISTRY_TIMEOUT": "3",
            "SERVING_CACHE_DIR": str(workdir / "cache"),
            "SERVING_METRICS_DIR": str(workdir / "metrics"),
            **{f"SERVING_{k.upper()}": str(v) for k, v in settings.items()},
            # The decision log's SQLite file in the workdir, never the repository's .local/
            # (serving/decisions/README.md); `env` may name another store or mode.
            "DECISIONS_STORE_URI": f"sqlite:///{workdir / 'decisions.db'}",
            **(env or {}),
        }
        self.process: Process | None = None
        self.starts = 0

    def start(self, timeout: float = 120) -> ModelServer:
        self.starts += 1
        self.process = Process(
            [PYTHON, "-m", "serving"],
            log=self.workdir / f"model-server-{self.starts}.log",
            env=self.env,
        )
        _wait_ready(self.process, f"{self.url}/healthz/ready", timeout, "model server ready")
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def log_text(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.workdir.glob("model-server-*.log"))
        )


def make_certs(directory: Path) -> Path:
    """A development CA and server certificate from the project's own script."""
    subprocess.run(
        ["sh", str(ROOT / "nginx" / "certs.sh"), str(directory)], check=True, capture_output=True
    )
    return directory


def keys_cli(keys_file: Path, runtime_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """The project's key management CLI (`make keys`)."""
    return subprocess.run(
        [
            PYTHON,
            str(ROOT / "nginx" / "keys.py"),
            "--file",
            str(keys_file),
            "--runtime-dir",
            str(runtime_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )


class Gateway:
    """Real nginx with the project's configuration, rendered by nginx/render.sh."""

    def __init__(
        self, workdir: Path, tls_dir: Path, keys_file: Path, model_server_addr: str, **env: str
    ):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.runtime = workdir / "nginx"
        self.https_port, self.http_port = free_port(), free_port()
        self.url = f"https://localhost:{self.https_port}"
        self.ca_cert = str(tls_dir / "ca.crt")
        self.keys_file = keys_file
        self.env = {
            "GATEWAY_RUNTIME_DIR": str(self.runtime),
            "GATEWAY_HTTPS_PORT": str(self.https_port),
            "GATEWAY_HTTP_PORT": str(self.http_port),
            "MODEL_SERVER_ADDR": model_server_addr,
            "TLS_CERT_FILE": str(tls_dir / "server.crt"),
            "TLS_KEY_FILE": str(tls_dir / "server.key"),
            "API_KEYS_FILE": str(keys_file),
            "GATEWAY_ACCESS_LOG": str(workdir / "access.log"),
            "GATEWAY_ERROR_LOG": str(workdir / "error.log"),
            **env,
        }
        self.process: Process | None = None

    def render(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sh", str(ROOT / "nginx" / "render.sh")],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
        )

    def start(self) -> Gateway:
        # The gateway's own start command: render, then nginx in the foreground.
        self.process = Process(
            ["sh", str(ROOT / "nginx" / "gateway.sh"), "start"],
            log=self.workdir / "nginx.log",
            env=self.env,
        )
        wait_until(
            tcp_open(self.https_port), 30, "gateway listening", self.process.popen, self.process.log
        )
        return self

    def keys(self, *args: str) -> subprocess.CompletedProcess:
        """Change keys with the project's CLI, which reloads this nginx gracefully."""
        return keys_cli(self.keys_file, self.runtime, *args)

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("*.log"))


def _wait_ready(process: Process, url: str, timeout: float, what: str) -> None:
    """Poll `url` until it answers 200; fail with the process's log tail if it exits first."""
    wait_until(http_ok(url), timeout, what, process.popen, process.log)
