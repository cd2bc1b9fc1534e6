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

TRACKING_URI = f"http://127.0.0.1:{facts.MLFLOW_PORT}"


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
        },
    )


def model_server_env() -> dict[str, str]:
    """The model server's settings natively: its defaults (serving/settings.py) but the paths."""
    return {
        "SERVING_TRACKING_URI": TRACKING_URI,
        "SERVING_CACHE_DIR": str(STATE / "model-cache"),
        "SERVING_METRICS_DIR": str(STATE / "model-server-metrics"),
    }


def model_server_service() -> Service:
    return Service(
        name="model-server",
        command=[PYTHON, "-m", "serving"],
        health_url=f"http://127.0.0.1:{facts.MODEL_SERVER_PORT}/healthz/ready",
        env=model_server_env(),
        timeout=180,
    )


GATEWAY_PORT = facts.GATEWAY_HTTPS_PORT
TLS_DIR = STATE / "tls"
SECRETS = STATE / "secrets"
GATEWAY_DIR = STATE / "nginx"


def gateway_env() -> dict[str, str]:
    """The gateway's settings natively: ports and upstream from the shared facts, local paths."""
    return {
        "GATEWAY_RUNTIME_DIR": str(GATEWAY_DIR),
        "TLS_CERT_FILE": str(TLS_DIR / "server.crt"),
        "TLS_KEY_FILE": str(TLS_DIR / "server.key"),
        "API_KEYS_FILE": str(SECRETS / "api-keys.map"),
        "GATEWAY_ACCESS_LOG": str(LOGS / "gateway-access.log"),
        "GATEWAY_ERROR_LOG": str(LOGS / "gateway-error.log"),
    }


def gateway_service() -> Service:
    return Service(
        name="gateway",
        # The gateway's own start command (render, then nginx in the foreground).
        command=["sh", "nginx/gateway.sh", "start"],
        env=gateway_env(),
        health_url=f"https://localhost:{GATEWAY_PORT}/healthz",
        verify=str(TLS_DIR / "ca.crt"),
    )


def prepare_gateway() -> None:
    """Certificates and a first API key (the configuration is rendered at start)."""
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


def write_stack_env() -> Path:
    """`.local/stack.env`: what a shell, a test or a benchmark needs to call the stack."""
    path = STATE / "stack.env"
    path.write_text(
        "# Written by make up; source it: . .local/stack.env\n"
        f"export GATEWAY_URL=https://localhost:{GATEWAY_PORT}\n"
        f"export CA_CERT={TLS_DIR / 'ca.crt'}\n"
        f"export API_KEY_FILE={SECRETS / 'api-key'}\n"
        f"export MLFLOW_TRACKING_URI={TRACKING_URI}\n"
        f"export MODEL_NAME={facts.MODEL_NAME}\n"
    )
    return path


def services() -> list[Service]:
    """The stack in start order."""
    return [mlflow_service(), model_server_service(), gateway_service()]


def ensure_champion() -> None:
    """Train, register and promote a first model when the registry has no champion yet.

    The trainer image's job (training/job.py) in its default mode, so `make up`, compose and
    Kubernetes decide "is there a champion yet" with the same code.
    """
    log = LOGS / "train.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": TRACKING_URI, "TRAINER_MODE": "if-no-champion"}
    print("  registry: training and promoting a first model unless there is a champion")
    with log.open("ab") as out:
        status = subprocess.run(
            [PYTHON, "-m", "training.job"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        ).returncode
    if status != 0:
        raise SystemExit(f"make up: the trainer job failed; see {log.relative_to(ROOT)}")
    print(f"  registry: {facts.MODEL_URI} is set")


def listeners() -> dict[str, dict[str, str]]:
    """Each process of the native stack and its environment, for the port plan check: they
    all share the host's network namespace."""
    return {
        "mlflow": {"TRACKING_PORT": str(facts.MLFLOW_PORT)},
        "model-server": model_server_env(),
        "gateway": gateway_env(),
    }


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
  MLflow UI and registry:  {TRACKING_URI}   (runs, plots, {facts.MODEL_URI})
  Model server (direct):   http://127.0.0.1:{facts.MODEL_SERVER_PORT}   (not for clients)
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
