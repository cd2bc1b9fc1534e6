"""The container check's fixtures: the compose stack, started once and always torn down.

Run through tests/containers/run.sh (`make test-containers`), which builds the images, makes
throwaway secrets and sets CONTAINERS_*; a plain `pytest` run does not collect these tests.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass

import pytest

UP_TIMEOUT = 1200  # seconds: includes training a first model


def pytest_configure(config):
    config.addinivalue_line("markers", "containers: builds the images and runs the compose stack")


def pytest_ignore_collect(collection_path, config):
    # Only run.sh sets the stage (images, secrets, .env); `make test` leaves these alone.
    if os.environ.get("CONTAINERS_CHECK") != "1" and collection_path.suffix == ".py":
        return True
    return None


@dataclass
class Stack:
    engine: str
    compose: list[str]
    project: str
    ca_file: str
    api_key: str

    @property
    def https(self) -> str:
        return f"https://localhost:{os.environ['GATEWAY_HTTPS_PUBLISH_PORT']}"

    @property
    def mlflow_ui(self) -> str:
        return f"https://localhost:{os.environ['GATEWAY_MLFLOW_PUBLISH_PORT']}"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.compose, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def containers(self, service: str | None = None) -> list[str]:
        """Ids of the project's containers (of one service if given), running or exited."""
        labels = [f"com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
        return subprocess.run(
            [self.engine, "ps", "-a", "-q", *filters],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()

    def container(self, service: str) -> str:
        """The id of the service's (only) container."""
        out = self.containers(service)
        assert len(out) == 1, f"{service}: expected one container, found {out}"
        return out[0]

    def inspect(self, service: str) -> dict:
        out = subprocess.run(
            [self.engine, "inspect", self.container(service)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        return json.loads(out)[0]

    def healthy(self, service: str) -> bool:
        """Run the image's HEALTHCHECK now (podman here has no timer that runs it)."""
        if self.engine == "podman":
            result = subprocess.run(
                ["podman", "healthcheck", "run", self.container(service)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            return result.returncode == 0
        return self.inspect(service)["State"].get("Health", {}).get("Status") == "healthy"

    def wait_healthy(self, service: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy(service):
                return
            time.sleep(3)
        logs = self.run("logs", "--tail", "40", service).stdout
        raise AssertionError(f"{service} not healthy after {timeout:.0f}s; last logs:\n{logs}")


@pytest.fixture(scope="session")
def stack():
    compose = shlex.split(os.environ["CONTAINERS_COMPOSE"])
    compose += [
        "-p",
        os.environ["CONTAINERS_PROJECT"],
        *shlex.split(os.environ["CONTAINERS_FILES"]),
    ]
    running = Stack(
        engine=os.environ["CONTAINERS_ENGINE"],
        compose=compose,
        project=os.environ["CONTAINERS_PROJECT"],
        ca_file=os.environ["CONTAINERS_CA"],
        api_key=os.environ["CONTAINERS_API_KEY"],
    )
    started = time.monotonic()
    try:
        # podman < 4.6 cannot start a container whose dependency is an exited one-shot job
        # (`--requires` on the trainer); the services wait for what they need themselves.
        # Docker: the README's own command (the images are built already: cache hits).
        flags = ["--no-deps"] if running.engine == "podman" else ["--build"]
        up = running.run("up", "-d", *flags, timeout=UP_TIMEOUT)
        assert up.returncode == 0, f"compose up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        for service in ("postgres", "mlflow", "model-server", "nginx"):
            # The model server is ready only after the first training (minutes on 2 cores).
            running.wait_healthy(service, timeout=900 if service == "model-server" else 300)
        print(f"\nstack up and healthy in {time.monotonic() - started:.0f}s")
        yield running
    finally:
        down = running.run("down", "-v", "-t", "10", timeout=300)
        assert down.returncode == 0, f"compose down failed:\n{down.stderr[-2000:]}"
        left = running.containers()
        assert not left, f"containers left behind: {left}"
