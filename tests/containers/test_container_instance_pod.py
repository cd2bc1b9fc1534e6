"""The OCI Container Instance request, run as a Container Instance runs it.

`oci/render.py` renders the request from the OKE overlay with real (throwaway) secrets; its
containers start with the request's environment, volumes, user, read-only root, dropped
capabilities and resource limits, in one network namespace (an infra container holds it, as the
instance's VNIC does; every container joins it with `--network container:`), so the gateway
reaches the model server on 127.0.0.1 as in OCI. The model server follows @champion of the
compose stack's MLflow (the namespace is attached to the stack's backend network: TRACKING_URI
is http://mlflow:5000). Only the image addresses change: the request names the registry's
images, the check runs the ones it built (same name, local prefix and tag).

Health checks are probed the way the request defines them, from inside the instance's network
namespace (OCI's agent probes the containers' ports on the instance itself, which is why the
model server, bound to loopback, can have an HTTP check): HTTP GET of the path, or a TCP
connect, within timeoutInSeconds.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from common import facts

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parents[2]
PREDICT_ONE = ROOT / "tests" / "testdata" / "predict-one.json"
# run.sh removes containers with this label if pytest dies before its teardown.
LABEL = "credit-risk-check=container-instance"
PROBE = """
import socket, sys, urllib.request
kind, port, path, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
if kind == "HTTP":
    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout)
else:
    socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
"""


def engine(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [os.environ["CONTAINERS_ENGINE"], *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_image(image_url: str) -> str:
    """The image this check built for a request's image address (same name)."""
    name = image_url.rsplit("/", 1)[1].split(":")[0]
    return f"{os.environ['CONTAINERS_IMAGE_PREFIX']}/{name}:{os.environ['IMAGE_TAG']}"


def render_request(workdir: Path) -> dict:
    """oci/render.py with the check's secrets, the stack's MLflow as TRACKING_URI."""
    secrets = workdir / "secrets"
    tls = Path(os.environ["TLS_CERT_FILE"]).parent
    files = {
        "gateway-tls/tls.crt": (tls / "server.crt").read_text(),
        "gateway-tls/tls.key": (tls / "server.key").read_text(),
        "gateway-api-keys/api-keys.map": Path(os.environ["API_KEYS_FILE"]).read_text(),
        "model-server-registry/username": "model-server",
        "model-server-registry/password": (
            Path(os.environ["COMPOSE_SECRETS_DIR"]) / "mlflow-model-server-password"
        )
        .read_text()
        .strip(),
    }
    for name, text in files.items():
        path = secrets / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(text)
    settings = (ROOT / "oci" / "instance.env.example").read_text()
    settings = "\n".join(
        line
        for line in settings.splitlines()
        if not line.startswith(("TRACKING_URI=", "GATEWAY_SERVER_NAME="))
    )
    settings += f"\nTRACKING_URI=http://mlflow:{facts.MLFLOW_PORT}\nGATEWAY_SERVER_NAME=localhost\n"
    (workdir / "instance.env").write_text(settings)
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "oci" / "render.py"),
            "--settings",
            str(workdir / "instance.env"),
            "--secrets-dir",
            str(secrets),
            "--output",
            str(workdir / "request.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads((workdir / "request.json").read_text())


class Instance:
    """The request's containers in one network namespace; `remove()` takes everything away."""

    def __init__(self, request: dict, workdir: Path, project: str):
        self.request = request
        self.workdir = workdir
        self.name = f"ci-pod-{uuid.uuid4().hex[:8]}"
        self.project = project
        self.https_port = free_port()
        self.containers: dict[str, str] = {}
        self.started: list[str] = []
        self.volumes = {volume["name"]: volume for volume in request["volumes"]}
        self.cleanup: list[Path] = []

    @property
    def infra(self) -> str:
        return f"{self.name}-infra"

    def start(self) -> None:
        # The namespace holder: the edge network (a published port needs a non-internal first
        # network) and the stack's backend, where `mlflow` resolves. It runs nothing but sleep.
        gateway_image = local_image(
            next(c for c in self.request["containers"] if c["displayName"] == "gateway")["imageUrl"]
        )
        engine(
            "run", "-d", "--name", self.infra, "--label", LABEL,
            "--network", f"{self.project}_edge",
            "-p", f"127.0.0.1:{self.https_port}:{facts.GATEWAY_HTTPS_PORT}",
            "--read-only", "--cap-drop", "ALL", "--user", "10001:10001",
            "--entrypoint", "sleep", gateway_image, "infinity",
        )  # fmt: skip
        self.started.append(self.infra)
        engine("network", "connect", f"{self.project}_backend", self.infra)
        for container in self.request["containers"]:
            self.run_container(container)

    def run_container(self, container: dict) -> None:
        name = f"{self.name}-{container['displayName']}"
        env_file = self.workdir / f"{container['displayName']}.env"
        # Secrets in the environment go through a 0600 file, never argv.
        env_file.touch(mode=0o600)
        env_file.write_text(
            "".join(f"{k}={v}\n" for k, v in container["environmentVariables"].items())
        )
        context = container["securityContext"]
        args = [
            "run", "-d", "--name", name, "--label", LABEL, "--network", f"container:{self.infra}",
            "--env-file", str(env_file),
            "--user", f"{context['runAsUser']}:{context['runAsGroup']}",
            "--cap-drop", ",".join(context["capabilities"]["dropCapabilities"]),
            "--cpus", str(container["resourceConfig"]["vcpusLimit"]),
            "--memory", f"{int(container['resourceConfig']['memoryLimitInGBs'] * 1024)}m",
        ]  # fmt: skip
        if context["isRootFileSystemReadonly"]:
            args.append("--read-only")
        if self.request["containerRestartPolicy"] == "ALWAYS":
            args += ["--restart", "always"]
        for mount in container["volumeMounts"]:
            args += self.mount(mount, context)
        engine(*args, local_image(container["imageUrl"]))
        self.started.append(name)
        self.containers[container["displayName"]] = name

    def mount(self, mount: dict, context: dict) -> list[str]:
        volume = self.volumes[mount["volumeName"]]
        if volume["volumeType"] == "EMPTYDIR":
            # An empty directory the container's user owns, in memory for MEMORY. (Docker 20.10
            # gives a --tmpfs over an image directory that directory's mode and uid 0.)
            base = Path("/dev/shm") if volume["backingStore"] == "MEMORY" else self.workdir
            folder = base / f"{self.name}-emptydir" / volume["name"]
            self.cleanup.append(folder.parent)
            folder.mkdir(parents=True, mode=0o700)
            if os.geteuid() == 0:
                os.chown(folder, context["runAsUser"], context["runAsGroup"])
            return ["-v", f"{folder}:{mount['mountPath']}:rw"]
        # CONFIGFILE: each config is a file under the mount path.
        folder = self.workdir / "configfiles" / volume["name"]
        folder.mkdir(parents=True, mode=0o700)
        for config in volume["configs"]:
            path = folder / config["fileName"]
            path.write_bytes(base64.b64decode(config["data"]))
            path.chmod(0o400)
        if os.geteuid() == 0:
            for path in (folder, *folder.iterdir()):
                os.chown(path, context["runAsUser"], context["runAsGroup"])
        mode = "ro" if mount["isReadOnly"] else "rw"
        return ["-v", f"{folder}:{mount['mountPath']}:{mode}"]

    def probe(self, check: dict) -> bool:
        """One health check, as the request defines it, from inside the namespace."""
        image = local_image(
            next(c for c in self.request["containers"] if c["displayName"] == "model-server")[
                "imageUrl"
            ]
        )
        result = engine(
            "run", "--rm", "--label", LABEL, "--network", f"container:{self.infra}", "--read-only",
            "--cap-drop", "ALL", "--user", "10001:10001", "--entrypoint", "python", image,
            "-c", PROBE, check["healthCheckType"], str(check["port"]), check.get("path", "/"),
            str(check["timeoutInSeconds"]),
        timeout=60, check=False)  # fmt: skip
        return result.returncode == 0

    def wait_passing(self, check: dict) -> None:
        # OCI's budget before the first KILL: the initial delay, then failureThreshold misses.
        budget = (
            check["initialDelayInSeconds"] + check["intervalInSeconds"] * check["failureThreshold"]
        )
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            if self.probe(check):
                return
            time.sleep(min(check["intervalInSeconds"], 5))
        logs = {
            name: engine("logs", "--tail", "30", cid, check=False).stderr[-1500:]
            for name, cid in self.containers.items()
        }
        raise AssertionError(f"health check {check['name']} not passing in {budget}s: {logs}")

    def remove(self) -> None:
        for name in reversed(self.started):
            engine("rm", "-f", "-v", name, check=False, timeout=60)
        for folder in self.cleanup:
            shutil.rmtree(folder, ignore_errors=True)
        left = [n for n in self.started if engine("inspect", n, check=False).returncode == 0]
        assert not left, f"containers left behind: {left}"


@pytest.fixture(scope="module")
def instance(stack, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("container-instance")
    workdir.chmod(0o700)
    running = Instance(render_request(workdir), workdir, stack.project)
    try:
        running.start()
        for container in running.request["containers"]:
            for check in container["healthChecks"]:
                running.wait_passing(check)
        yield running
    finally:
        running.remove()


def keyed_prediction(instance: Instance, api_key: str, ca_file: str) -> requests.Response:
    return requests.post(
        f"https://localhost:{instance.https_port}/invocations",
        data=PREDICT_ONE.read_bytes(),
        headers={"Content-Type": "application/json", "X-API-Key": api_key},
        verify=ca_file,
        timeout=30,
    )


def test_request_runs_as_rendered(instance):
    for container in instance.request["containers"]:
        info = json.loads(engine("inspect", instance.containers[container["displayName"]]).stdout)
        info = info[0]
        context = container["securityContext"]
        assert info["State"]["Running"], container["displayName"]
        assert info["Config"]["User"] == f"{context['runAsUser']}:{context['runAsGroup']}"
        assert context["runAsUser"] != 0 and context["isNonRootUserCheckEnabled"]
        assert info["HostConfig"]["ReadonlyRootfs"] is context["isRootFileSystemReadonly"]
        if os.environ["CONTAINERS_ENGINE"] == "docker":
            assert "ALL" in (info["HostConfig"]["CapDrop"] or []), info["HostConfig"]["CapDrop"]
        else:  # podman lists every dropped capability; what is left must be nothing
            assert not info.get("EffectiveCaps"), info.get("EffectiveCaps")


def test_keyed_prediction_over_tls(instance, stack):
    response = keyed_prediction(instance, stack.api_key, stack.ca_file)
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"].isdigit()
    assert len(response.json()["predictions"]) == len(
        json.loads(PREDICT_ONE.read_text())["dataframe_records"]
    )


def test_prediction_without_key_is_401(instance, stack):
    response = requests.post(
        f"https://localhost:{instance.https_port}/invocations",
        data=PREDICT_ONE.read_bytes(),
        headers={"Content-Type": "application/json"},
        verify=stack.ca_file,
        timeout=30,
    )
    assert response.status_code == 401


def test_failing_model_server_fails_its_check_and_the_gateway_health(instance, stack):
    """The model server stops: its request check fails (OCI kills and restarts it), so does
    the gateway's (an HTTP check of /healthz on the plain-HTTP port, which proxies to the model
    server), the gateway's /healthz answers 503, and the instance serves again once it is back."""
    checks = {c["displayName"]: c["healthChecks"][0] for c in instance.request["containers"]}
    check = checks["model-server"]
    engine("stop", "-t", "10", instance.containers["model-server"])
    try:
        assert not instance.probe(check), "the model server's check passes while it is down"
        assert checks["gateway"]["healthCheckType"] == "HTTP", checks["gateway"]
        assert not instance.probe(checks["gateway"]), (
            "the gateway's check passes while the model server behind it is down"
        )
        health = requests.get(
            f"https://localhost:{instance.https_port}/healthz", verify=stack.ca_file, timeout=30
        )
        assert health.status_code >= 500, health.text
        predicted = keyed_prediction(instance, stack.api_key, stack.ca_file)
        assert predicted.status_code >= 500
        assert "Traceback" not in predicted.text
    finally:
        engine("start", instance.containers["model-server"])
    instance.wait_passing(check)
    instance.wait_passing(checks["gateway"])
    assert keyed_prediction(instance, stack.api_key, stack.ca_file).status_code == 200
