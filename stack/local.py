"""The native stack behind `make up` / `make down`: processes on 127.0.0.1, no containers.

    python -m stack.local up      # start what is not running, wait until healthy
    python -m stack.local down    # stop everything this started
    python -m stack.local status

State lives in `.local/` (pid files, logs, generated config) and the MLflow store in `mlruns/`
(SQLite registry `mlruns/mlflow.db`, artifacts `mlruns/artifacts/`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from common import facts

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".local"
LOGS = STATE / "logs"
MLRUNS = ROOT / "mlruns"
PYTHON = sys.executable

MLFLOW_PORT = int(os.environ.get("MLFLOW_PORT") or facts.MLFLOW_PORT)
TRACKING_URI = f"http://127.0.0.1:{MLFLOW_PORT}"
MODEL_NAME = os.environ.get("MODEL_NAME", "credit-risk")


@dataclass
class Service:
    """A long-running process of the stack."""

    name: str
    command: list[str]
    health_url: str
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 90.0
    verify: str | bool = True

    @property
    def pid_file(self) -> Path:
        return STATE / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return LOGS / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def healthy(self) -> bool:
        try:
            return requests.get(self.health_url, timeout=2, verify=self.verify).status_code == 200
        except requests.RequestException:
            return False

    def start(self) -> None:
        if self.pid() and self.healthy():
            print(f"  {self.name}: already running (pid {self.pid()})")
            return
        LOGS.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(
                    f"make up: {self.name} exited with status {process.returncode}; "
                    f"see {self.log_file.relative_to(ROOT)}"
                )
            if self.healthy():
                print(
                    f"  {self.name}: running (pid {process.pid}), log "
                    f"{self.log_file.relative_to(ROOT)}"
                )
                return
            time.sleep(0.3)
        raise SystemExit(
            f"make up: {self.name} not healthy after {self.timeout:.0f}s; see "
            f"{self.log_file.relative_to(ROOT)}"
        )

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        print(f"  {self.name}: stopped")


def mlflow_service() -> Service:
    """`python -m tracking` (the one entry point) on SQLite under mlruns/, without auth."""
    MLRUNS.mkdir(exist_ok=True)
    return Service(
        name="mlflow",
        command=[PYTHON, "-m", "tracking"],
        health_url=f"{TRACKING_URI}/health",
        # Only what differs from tracking/settings.py's defaults (127.0.0.1, no auth).
        env={
            "TRACKING_BACKEND_STORE_URI": f"sqlite:///{MLRUNS / 'mlflow.db'}",
            "TRACKING_ARTIFACTS_DESTINATION": str(MLRUNS / "artifacts"),
            "TRACKING_PORT": str(MLFLOW_PORT),
        },
    )


def model_server_service() -> Service:
    port = int(os.environ.get("SERVING_PORT", "8080"))
    return Service(
        name="model-server",
        command=[PYTHON, "-m", "serving"],
        health_url=f"http://127.0.0.1:{port}/healthz/ready",
        env={
            "SERVING_TRACKING_URI": TRACKING_URI,
            "SERVING_MODEL_URI": f"models:/{MODEL_NAME}@champion",
            "SERVING_CACHE_DIR": str(STATE / "model-cache"),
            "SERVING_METRICS_DIR": str(STATE / "model-server-metrics"),
        },
        timeout=180,
    )


GATEWAY_PORT = int(os.environ.get("GATEWAY_HTTPS_PORT", "8443"))
TLS_DIR = STATE / "tls"
SECRETS = STATE / "secrets"
GATEWAY_DIR = STATE / "nginx"


def gateway_env() -> dict[str, str]:
    return {
        "GATEWAY_RUNTIME_DIR": str(GATEWAY_DIR),
        "GATEWAY_HTTPS_PORT": str(GATEWAY_PORT),
        "GATEWAY_HTTP_PORT": os.environ.get("GATEWAY_HTTP_PORT", "8000"),
        "MODEL_SERVER_ADDR": f"127.0.0.1:{os.environ.get('SERVING_PORT', '8080')}",
        "TLS_CERT_FILE": str(TLS_DIR / "server.crt"),
        "TLS_KEY_FILE": str(TLS_DIR / "server.key"),
        "API_KEYS_FILE": str(SECRETS / "api-keys.map"),
        "GATEWAY_ACCESS_LOG": str(LOGS / "gateway-access.log"),
        "GATEWAY_ERROR_LOG": str(LOGS / "gateway-error.log"),
    }


def gateway_service() -> Service:
    return Service(
        name="gateway",
        command=[
            "nginx",
            "-p",
            str(GATEWAY_DIR),
            "-c",
            str(GATEWAY_DIR / "nginx.conf"),
            "-e",
            "stderr",
            "-g",
            "daemon off;",
        ],
        health_url=f"https://localhost:{GATEWAY_PORT}/healthz",
        verify=str(TLS_DIR / "ca.crt"),
    )


def prepare_gateway() -> None:
    """Certificates, a first API key and the rendered nginx configuration."""
    env = {**os.environ, **gateway_env()}

    def run(*command: str) -> None:
        subprocess.run(command, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)

    run("sh", "nginx/certs.sh", str(TLS_DIR))
    if not (SECRETS / "api-key").exists():
        run(
            PYTHON,
            "nginx/keys.py",
            "--no-reload",
            "create",
            "local-dev",
            "--key-file",
            str(SECRETS / "api-key"),
        )
    run("sh", "nginx/render.sh")


def write_stack_env() -> Path:
    """`.local/stack.env`: what a shell, a test or a benchmark needs to call the stack."""
    path = STATE / "stack.env"
    path.write_text(
        "# Written by make up; source it: . .local/stack.env\n"
        f"export GATEWAY_URL=https://localhost:{GATEWAY_PORT}\n"
        f"export CA_CERT={TLS_DIR / 'ca.crt'}\n"
        f"export API_KEY_FILE={SECRETS / 'api-key'}\n"
        f"export MLFLOW_TRACKING_URI={TRACKING_URI}\n"
        f"export MODEL_NAME={MODEL_NAME}\n"
    )
    return path


def services() -> list[Service]:
    """The stack in start order."""
    return [mlflow_service(), model_server_service(), gateway_service()]


def ensure_champion() -> None:
    """Train, register and promote a first model when the registry has no champion yet."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(TRACKING_URI, TRACKING_URI)
    try:
        champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
        print(f"  registry: {MODEL_NAME}@champion is version {champion.version}")
        return
    except MlflowException:
        pass
    print("  registry: no champion yet; training and promoting a first model")
    env = {**os.environ, "MLFLOW_TRACKING_URI": TRACKING_URI}
    log = LOGS / "train.log"
    steps = [
        [PYTHON, "-m", "training.train", "--model-name", MODEL_NAME],
        [PYTHON, "-m", "training.promote", "--model-name", MODEL_NAME],
    ]
    with log.open("ab") as out:
        for step in steps:
            if (
                subprocess.run(
                    step, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
                ).returncode
                != 0
            ):
                raise SystemExit(f"make up: {step[2]} failed; see {log.relative_to(ROOT)}")
    print(f"  registry: {MODEL_NAME}@champion promoted")


def up() -> None:
    STATE.mkdir(exist_ok=True)
    print("Starting the native stack:")
    for service in services():
        if service.name == "gateway":
            prepare_gateway()
        service.start()
        if service.name == "mlflow":
            ensure_champion()
    write_stack_env()
    print(f"""
Ready.
  Gateway (the API):       https://localhost:{GATEWAY_PORT}   (POST /invocations, GET /model)
  MLflow UI and registry:  {TRACKING_URI}   (runs, plots, models:/{MODEL_NAME}@champion)
  Model server (direct):   http://127.0.0.1:8080   (follows @champion; not for clients)
  Settings for shells:     .local/stack.env   (GATEWAY_URL, CA_CERT, API_KEY_FILE, ...)
  Logs:                    .local/logs/
  Stop with:               make down

Try it:
  . .local/stack.env && curl --cacert "$CA_CERT" -H "X-API-Key: $(cat "$API_KEY_FILE")" \\
    -H "Content-Type: application/json" -d @tests/testdata/predict-one.json \\
    "$GATEWAY_URL/invocations" """)


def down() -> None:
    print("Stopping the native stack:")
    for service in reversed(services()):
        service.stop()


def status() -> int:
    state = 0
    for service in services():
        healthy = service.healthy()
        print(f"  {service.name:14} {'healthy' if healthy else 'DOWN':8} {service.health_url}")
        state |= not healthy
    return state


def main(argv: list[str]) -> int:
    commands = {"up": up, "down": down, "status": status}
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: python -m stack.local up|down|status", file=sys.stderr)
        return 2
    return commands[argv[0]]() or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
