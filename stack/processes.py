"""Process helpers shared by the native stack, the tests and the benchmark.

Free ports, readiness polled with a deadline, real processes started in their own session and
stopped with their whole group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
"""The repository: the working directory of every process started here."""
PYTHON = sys.executable


def free_port() -> int:
    """A port that was free a moment ago (bind to port 0 and let the kernel choose)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    process: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` (and the log tail) at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: process exited with {process.returncode}\n{tail(log)}")
        try:
            if condition():
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what}: not reached within {timeout}s\n{tail(log)}")


def http_ok(url: str, **kwargs) -> Callable[[], bool]:
    return lambda: requests.get(url, timeout=2, **kwargs).status_code == 200


def tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


class Process:
    """A real process started in its own session, stopped with its whole group."""

    def __init__(
        self, command: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT
    ):
        self.command, self.log = command, log
        self._log_handle = log.open("ab")
        self.popen = subprocess.Popen(
            command,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
            except ProcessLookupError:
                pass
        # Make sure nothing of the group is left behind (workers, children).
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log_handle.close()


def tcp_open(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    return check
