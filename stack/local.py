"""The native stack behind `make up` / `make down`: processes on 127.0.0.1, no containers.

    python -m stack.local up      # start what is not running, wait until healthy
    python -m stack.local down    # stop everything this started
    python -m stack.local status

State lives in `.local/` (pid files, logs, generated config, secrets) and the MLflow store in
`mlruns/` (SQLite registry `mlruns/mlflow.db`, artifacts `mlruns/artifacts/`), both readable by
the stack's user alone.

Nobody else on the machine may take the stack over: every service listens on 127.0.0.1 only;
the MLflow server asks for a password (the trainer, the model server and the UI's admin have
their own, generated into `.local/secrets/mlflow/`, mode 600), so only the trainer can move
`@champion` to a version whose code the model server will run; and started as root, `make up`
runs every service as the unprivileged system user SERVICE_USER instead (created if missing).
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import signal
import stat
import struct
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
LOOPBACK = "127.0.0.1"
SERVICE_USER = "model-stack"
"""The system user the services run as when `make up` runs as root."""
MLFLOW_SECRETS = STATE / "secrets" / "mlflow"
TRAINER_USERNAME = "trainer"
MODEL_SERVER_USERNAME = "model-server"
ADMIN_USERNAME = "admin"


@dataclass(frozen=True)
class Identity:
    """Who the services run as: the invoking user, or SERVICE_USER under root."""

    uid: int
    gid: int
    name: str

    @property
    def dropped(self) -> bool:
        return self.uid != os.geteuid()

    def popen_args(self) -> dict:
        if not self.dropped:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def service_identity() -> Identity:
    """The invoking user; under root SERVICE_USER, created as a system user if missing."""
    if os.geteuid() != 0:
        return Identity(os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name)
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
        )
        print(f"  created the system user {SERVICE_USER} for the services")
        entry = pwd.getpwnam(SERVICE_USER)
    return Identity(entry.pw_uid, entry.pw_gid, SERVICE_USER)


# POSIX ACL xattr (linux/posix_acl_xattr.h): version 2, entries (tag, perm, id).
_ACL_VERSION, _USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 2, 0x01, 0x02, 0x04, 0x10, 0x20
_NO_ID = 0xFFFFFFFF


def _acl_with_search(current: bytes | None, mode: int, uid: int) -> bytes:
    """An access ACL that adds search (x) for `uid` to the directory's current one."""
    if current:
        entries = [struct.unpack_from("<HHI", current, 4 + 8 * i) for i in range(len(current) // 8)]
    else:
        entries = [
            (_USER_OBJ, (mode >> 6) & 7, _NO_ID),
            (_GROUP_OBJ, (mode >> 3) & 7, _NO_ID),
            (_OTHER, mode & 7, _NO_ID),
        ]
    table = {(tag, ident): perm for tag, perm, ident in entries}
    table[(_USER, uid)] = table.get((_USER, uid), 0) | 1
    group_perm = table.get((_GROUP_OBJ, _NO_ID), 0)
    table[(_MASK, _NO_ID)] = table.get((_MASK, _NO_ID), group_perm) | 1
    body = b"".join(
        struct.pack("<HHI", tag, perm, ident) for (tag, ident), perm in sorted(table.items())
    )
    return struct.pack("<I", _ACL_VERSION) + body


def grant_search(identity: Identity, paths: list[Path]) -> None:
    """Let the service user enter the directories above the clone and the venv, and no more.

    A clone in a private directory (mode 700, as mktemp makes, or /root) is closed to any other
    user; an ACL entry gives this one user search (x) permission only: it can open the paths it
    knows, not list the directory or read other files.
    """
    groups = {g.gr_gid for g in grp.getgrall() if identity.name in g.gr_mem} | {identity.gid}
    seen: set[Path] = set()
    for path in paths:
        for directory in [path, *path.parents]:
            if directory in seen:
                continue
            seen.add(directory)
            info = directory.stat()
            if (
                info.st_mode & stat.S_IXOTH
                or (info.st_gid in groups and info.st_mode & stat.S_IXGRP)
                or info.st_uid == identity.uid
            ):
                continue
            try:
                current = os.getxattr(directory, "system.posix_acl_access")
            except OSError:
                current = None
            try:
                os.setxattr(
                    directory,
                    "system.posix_acl_access",
                    _acl_with_search(current, info.st_mode, identity.uid),
                )
            except OSError as error:
                raise SystemExit(
                    f"make up: the service user {identity.name} cannot enter {directory} and "
                    f"an ACL could not be set ({error.strerror}); allow it with "
                    f"'chmod o+x {directory}' or clone elsewhere"
                ) from None
            print(f"  {directory}: search permission for {identity.name} (ACL)")


def own_privately(identity: Identity, *roots: Path) -> None:
    """The stack's state and store: owned by the service user, closed to everyone else."""
    for root in roots:
        root.mkdir(parents=True, exist_ok=True)
        for path in [root, *root.rglob("*")]:
            if path.is_symlink():
                continue
            if identity.dropped:
                os.chown(path, identity.uid, identity.gid)
            if path.is_dir():
                path.chmod(0o700)
            else:
                path.chmod(path.stat().st_mode & 0o700)


SECRET_NAMES = ("admin-password", "trainer-password", "model-server-password", "flask-secret-key")


def create_secrets(identity: Identity) -> None:
    """The MLflow passwords in .local/secrets/mlflow/ (mode 600), generated once."""
    MLFLOW_SECRETS.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in SECRET_NAMES:
        path = MLFLOW_SECRETS / name
        if path.exists():
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24) + "\n")
        if identity.dropped:
            os.chown(path, identity.uid, identity.gid)


def secret(name: str) -> str:
    """One of the generated passwords; empty before `make up` made it (`down`, `status`)."""
    path = MLFLOW_SECRETS / name
    return path.read_text().strip() if path.exists() else ""


@dataclass
class Service:
    """A long-running process of the stack."""

    name: str
    command: list[str]
    health_url: str
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 90.0
    verify: str | bool = True
    identity: Identity | None = None

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
        identity = self.identity or service_identity()
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, **service_home(identity), **self.env},
                start_new_session=True,
                **identity.popen_args(),
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


def service_home(identity: Identity) -> dict[str, str]:
    """HOME for a dropped service (the system user has none): a private directory in .local."""
    if not identity.dropped:
        return {}
    return {"HOME": str(STATE / "home"), "USER": identity.name, "LOGNAME": identity.name}


def mlflow_service(identity: Identity | None = None) -> Service:
    """`python -m tracking` (the one entry point) on SQLite under mlruns/, with basic auth:
    the trainer's and the model server's users, and the admin for the UI."""
    MLRUNS.mkdir(exist_ok=True)
    return Service(
        name="mlflow",
        command=[PYTHON, "-m", "tracking"],
        health_url=f"{TRACKING_URI}/health",
        # Only what differs from tracking/settings.py's defaults (127.0.0.1).
        env={
            "TRACKING_BACKEND_STORE_URI": f"sqlite:///{MLRUNS / 'mlflow.db'}",
            "TRACKING_ARTIFACTS_DESTINATION": str(MLRUNS / "artifacts"),
            "TRACKING_AUTH": "true",
            "TRACKING_RUNTIME_DIR": str(STATE / "mlflow-runtime"),
            "TRACKING_TRAINER_USERNAME": TRAINER_USERNAME,
            "TRACKING_TRAINER_PASSWORD": secret("trainer-password"),
            "TRACKING_MODEL_SERVER_USERNAME": MODEL_SERVER_USERNAME,
            "TRACKING_MODEL_SERVER_PASSWORD": secret("model-server-password"),
            "MLFLOW_AUTH_ADMIN_PASSWORD": secret("admin-password"),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secret("flask-secret-key"),
        },
        identity=identity,
    )


def trainer_credentials() -> dict[str, str]:
    """MLflow's client reads these itself (the trainer job, make train, make promote)."""
    return {
        "MLFLOW_TRACKING_USERNAME": TRAINER_USERNAME,
        "MLFLOW_TRACKING_PASSWORD": secret("trainer-password"),
    }


def model_server_env() -> dict[str, str]:
    """The model server's settings natively: its defaults (serving/settings.py: 127.0.0.1) but
    the paths."""
    return {
        "SERVING_TRACKING_URI": TRACKING_URI,
        "SERVING_CACHE_DIR": str(STATE / "model-cache"),
        "SERVING_METRICS_DIR": str(STATE / "model-server-metrics"),
        # The native decision store (serving/decisions/README.md), whatever the working dir.
        "DECISIONS_STORE_URI": f"sqlite:///{STATE / 'decisions.db'}",
    }


def model_server_service(identity: Identity | None = None) -> Service:
    return Service(
        name="model-server",
        command=[PYTHON, "-m", "serving"],
        health_url=f"http://127.0.0.1:{facts.MODEL_SERVER_PORT}/healthz/ready",
        env={
            **model_server_env(),
            # The read-only user: it resolves @champion and downloads, nothing else.
            "MLFLOW_TRACKING_USERNAME": MODEL_SERVER_USERNAME,
            "MLFLOW_TRACKING_PASSWORD": secret("model-server-password"),
        },
        timeout=180,
        identity=identity,
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
        "GATEWAY_LISTEN_ADDRESS": LOOPBACK,
    }


def gateway_service(identity: Identity | None = None) -> Service:
    return Service(
        identity=identity,
        name="gateway",
        # The gateway's own start command (render, then nginx in the foreground).
        command=["sh", "nginx/gateway.sh", "start"],
        env=gateway_env(),
        health_url=f"https://localhost:{GATEWAY_PORT}/healthz",
        verify=str(TLS_DIR / "ca.crt"),
    )


def prepare_gateway(identity: Identity) -> None:
    """Certificates and a first API key (the configuration is rendered at start), owned by the
    service user: nginx runs as it and reads them."""
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
    own_privately(identity, TLS_DIR, SECRETS)
    # Clients (curl, the tests) need the CA certificate, which is no secret.
    (TLS_DIR / "ca.crt").chmod(0o644)


def write_stack_env() -> Path:
    """`.local/stack.env`: what a shell, a test or a benchmark needs to call the stack. The
    trainer's password is read from its file when the shell sources this, never copied here."""
    path = STATE / "stack.env"
    path.write_text(
        "# Written by make up; source it: . .local/stack.env\n"
        f"export GATEWAY_URL=https://localhost:{GATEWAY_PORT}\n"
        f"export CA_CERT={TLS_DIR / 'ca.crt'}\n"
        f"export API_KEY_FILE={SECRETS / 'api-key'}\n"
        f"export MLFLOW_TRACKING_URI={TRACKING_URI}\n"
        f"export MLFLOW_TRACKING_USERNAME={TRAINER_USERNAME}\n"
        f'export MLFLOW_TRACKING_PASSWORD="$(cat {MLFLOW_SECRETS / "trainer-password"})"\n'
        f"export MODEL_NAME={facts.MODEL_NAME}\n"
    )
    path.chmod(0o600)
    return path


def services(identity: Identity | None = None) -> list[Service]:
    """The stack in start order."""
    return [mlflow_service(identity), model_server_service(identity), gateway_service(identity)]


def ensure_champion(identity: Identity) -> None:
    """Train, register and promote a first model when the registry has no champion yet.

    The trainer image's job (training/job.py) in its default mode, so `make up`, compose and
    Kubernetes decide "is there a champion yet" with the same code.
    """
    log = LOGS / "train.log"
    env = {
        **os.environ,
        **service_home(identity),
        **trainer_credentials(),
        "MLFLOW_TRACKING_URI": TRACKING_URI,
        "TRAINER_MODE": "if-no-champion",
    }
    print("  registry: training and promoting a first model unless there is a champion")
    with log.open("ab") as out:
        status = subprocess.run(
            [PYTHON, "-m", "training.job"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            **identity.popen_args(),
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
    identity = service_identity()
    print(f"Starting the native stack (services run as {identity.name}):")
    # Every directory a service writes (nginx opens its own logs) exists before it is handed over.
    for directory in (STATE / "home", LOGS):
        directory.mkdir(parents=True, exist_ok=True)
    create_secrets(identity)
    own_privately(identity, STATE, MLRUNS)
    if identity.dropped:
        # The clone, the venv and the interpreter the venv links to (pyenv keeps it in /root).
        python = [Path(sys.prefix), Path(sys.base_prefix), Path(PYTHON).resolve().parent]
        grant_search(identity, [ROOT, *python])
    for service in services(identity):
        if service.name == "gateway":
            prepare_gateway(identity)
        service.start()
        if service.name == "mlflow":
            ensure_champion(identity)
    write_stack_env()
    admin_password_file = (MLFLOW_SECRETS / "admin-password").relative_to(ROOT)
    print(f"""
Ready.
  Gateway (the API):       https://localhost:{GATEWAY_PORT}   (POST /invocations, GET /model)
  MLflow UI and registry:  {TRACKING_URI}   (runs, plots, {facts.MODEL_URI})
    sign in as {ADMIN_USERNAME}, password: cat {admin_password_file}
    make train / make promote: run . .local/stack.env first (the trainer's user)
  Model server (direct):   http://127.0.0.1:{facts.MODEL_SERVER_PORT}   (not for clients)
  Settings for shells:     .local/stack.env   (GATEWAY_URL, CA_CERT, API_KEY_FILE, ...)
  Logs:                    .local/logs/
  Stop with:               make down

Try it:
  . .local/stack.env && curl --cacert "$CA_CERT" -H "X-API-Key: $(cat "$API_KEY_FILE")" \\
    -H "Content-Type: application/json" -d @tests/testdata/predict-one.json \\
    "$GATEWAY_URL/invocations" """)


def current_identity() -> Identity:
    """For `down` and `status`: only pid files and health routes matter, no user is created."""
    return Identity(os.getuid(), os.getgid(), "")


def down() -> None:
    print("Stopping the native stack:")
    for service in reversed(services(current_identity())):
        service.stop()


def status() -> int:
    state = 0
    for service in services(current_identity()):
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
