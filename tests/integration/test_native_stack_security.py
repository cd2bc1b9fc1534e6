"""`make up` on a fresh copy of the tree, as a real native stack: who runs it, where it
listens, who can read its files, and that its registry asks for a password (issue 13's local
takeover path). Uses the native ports of common/facts.py, so no other native stack may run."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from common import facts
from stack.local import SERVICE_USER
from stack.services import ROOT

NATIVE_PORTS = (
    facts.MLFLOW_PORT,
    facts.MODEL_SERVER_PORT,
    facts.GATEWAY_HTTPS_PORT,
    facts.GATEWAY_HTTP_PORT,
)


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stack(clone: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stack.local", command],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def native_stack():
    """A fresh copy of the tracked files (what a clone has) brought up by `stack.local up`, in
    a private mktemp directory as on the CI machine (not under pytest's basetemp, which every
    pytest session on the machine chmods again)."""
    taken = [port for port in NATIVE_PORTS if port_taken(port)]
    if taken:
        pytest.fail(f"ports {taken} are in use: stop the other native stack (make down) first")
    clone = Path(tempfile.mkdtemp(prefix="native-stack-"))
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source, target = ROOT / name.decode(), clone / name.decode()
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode & 0o777)
    started = stack(clone, "up")
    try:
        logs = "".join(
            f"\n--- {log.name}\n" + log.read_text(errors="replace")[-1500:]
            for log in sorted((clone / ".local" / "logs").glob("*.log"))
        )
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:] + logs
        yield clone, started.stdout
    finally:
        stopped = stack(clone, "down")
        shutil.rmtree(clone, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stderr


def stack_processes(clone: Path) -> dict[int, int]:
    """pid -> uid of every process in the sessions the stack started (workers included)."""
    sessions = {int(p.read_text()) for p in (clone / ".local").glob("*.pid")}
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) in sessions:
                found[int(entry.name)] = entry.stat().st_uid
        except (OSError, ProcessLookupError):
            continue
    return found


def listening_addresses(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by these processes."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            if width == 8:
                text = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                text = socket.inet_ntop(socket.AF_INET6, words)
            found.add((text, int(port, 16)))
    return found


def test_no_process_runs_as_root_and_all_listen_on_loopback(native_stack):
    clone, output = native_stack
    processes = stack_processes(clone)
    assert len(processes) >= 3, processes
    if os.geteuid() == 0:
        assert f"services run as {SERVICE_USER}" in output
        assert set(processes.values()) == {pwd.getpwnam(SERVICE_USER).pw_uid}, processes
    else:
        assert set(processes.values()) == {os.geteuid()}, processes
    listening = listening_addresses(set(processes))
    assert {port for _, port in listening} >= set(NATIVE_PORTS), listening
    assert {address for address, _ in listening} == {"127.0.0.1"}, listening


def test_state_is_readable_by_the_service_user_alone(native_stack):
    clone, _ = native_stack
    owner = pwd.getpwnam(SERVICE_USER).pw_uid if os.geteuid() == 0 else os.geteuid()
    for top in (clone / ".local", clone / "mlruns"):
        assert top.stat().st_mode & 0o077 == 0, top
        assert top.stat().st_uid == owner, top
    secrets = [*(clone / ".local" / "secrets").rglob("*"), clone / ".local/tls/server.key"]
    assert len(secrets) >= 6, secrets
    for path in secrets:
        assert path.stat().st_mode & 0o077 == 0 and path.stat().st_uid == owner, path


def test_registry_requires_a_password_and_the_model_server_only_reads(native_stack):
    clone, output = native_stack
    base = f"http://127.0.0.1:{facts.MLFLOW_PORT}/api/2.0/mlflow"
    anonymous = requests.get(f"{base}/registered-models/get?name={facts.MODEL_NAME}", timeout=10)
    assert anonymous.status_code == 401
    secrets = clone / ".local" / "secrets" / "mlflow"
    reader = ("model-server", (secrets / "model-server-password").read_text().strip())
    alias = {"name": facts.MODEL_NAME, "alias": "champion", "version": "1"}
    moved = requests.post(f"{base}/registered-models/alias", json=alias, auth=reader, timeout=10)
    assert moved.status_code == 403
    created = requests.post(
        f"{base}/experiments/create", json={"name": "mine"}, auth=reader, timeout=10
    )
    assert created.status_code == 403
    assert "admin-password" in output, "make up says where the UI's password is"
    assert (secrets / "admin-password").read_text().strip() not in output


def test_the_stack_still_answers_through_the_gateway(native_stack):
    clone, _ = native_stack
    local = clone / ".local"
    response = requests.post(
        f"https://localhost:{facts.GATEWAY_HTTPS_PORT}/invocations",
        data=(ROOT / "tests" / "testdata" / "predict-one.json").read_bytes(),
        headers={
            "X-API-Key": (local / "secrets" / "api-key").read_text().strip(),
            "Content-Type": "application/json",
        },
        verify=str(local / "tls" / "ca.crt"),
        timeout=30,
    )
    assert response.status_code == 200, response.text
