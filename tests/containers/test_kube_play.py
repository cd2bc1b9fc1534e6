"""The Kubernetes dev overlay, run: its workloads under `podman kube play` (podman 4.3).

`kubectl kustomize k8s/overlays/dev` is played workload by workload, in the order the Services
make them depend on each other (postgres, mlflow with its `migrate` init container, the trainer,
the model server, the gateway), on a network of its own, with the images the container check
built. What podman 4.3's subset cannot run is translated here, and only that:

- Services (and their DNS): each Service name is a host alias of the pod its selector picks,
  added to the pods started after it; a test checks every Service port is its target port, so
  the alias is all the wiring a Service gives here. NetworkPolicies, HorizontalPodAutoscalers,
  PodDisruptionBudgets, ServiceAccounts and the Namespace are not run (checked offline by
  tests/deploy, as before).
- StatefulSet postgres: its pod template as a Deployment and its volumeClaimTemplate as a PVC.
- CronJob trainer: its job's pod template, run once as a Pod.
- Init containers (mlflow's `migrate`): run first as a Pod of their own, the workload once they
  exited 0 (podman 4.3 fails a pod whose init container it removes "as it is running").
- Secrets: created as podman secrets for `secretKeyRef` (podman reads them as a JSON map of
  base64 values), and secret volumes as read-only host folders (podman 4.3 panics on `secret:`
  volumes, pkg/specgen/generate/kube/volume.go VolumeFromSecret), with throwaway values.
- Images: the check's local ones for the overlay's registry names; the upstream postgres for
  the CI stand-in (no registry). imagePullPolicy IfNotPresent.
- Ports: podman 4.3 publishes every containerPort on the host, so each gets a free hostPort on
  127.0.0.1; the gateway's https one is the test's way in.

Everything else (env, ConfigMaps, init containers, PVCs, emptyDirs, resources, the security
contexts) is the rendered manifest as it is.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import secrets
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parents[2]
PREDICT_ONE = ROOT / "tests" / "testdata" / "predict-one.json"
NOT_RUN = {
    "Namespace",
    "Service",
    "NetworkPolicy",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "ServiceAccount",
}
ORDER = ("postgres", "mlflow", "trainer", "model-server", "gateway")
PROBE = """
import socket, ssl, sys, urllib.request
kind, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if kind == "tcp":
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
else:
    context = ssl._create_unverified_context()  # as kubelet, which does not verify either
    urllib.request.urlopen(f"{kind}://127.0.0.1:{port}{path}", timeout=5, context=context)
"""


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode:
        raise AssertionError(f"podman {args[0]} {args[1:3]} failed: {result.stderr[-2000:]}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_image(image: str) -> str:
    name = image.rsplit("/", 1)[-1].split(":")[0]
    if name == "postgres":
        return "localhost/credit-risk-ci/postgres:15-bookworm"
    return f"{os.environ['CONTAINERS_IMAGE_PREFIX']}/{name}:{os.environ['IMAGE_TAG']}"


def pod_spec(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def all_containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def port_number(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


class KubePlay:
    def __init__(self, objects: list[dict], workdir: Path):
        self.objects = objects
        self.workdir = workdir
        self.network = f"ci-kube-{uuid.uuid4().hex[:8]}"
        self.https_port = free_port()
        self.pods: dict[str, str] = {}
        self.volumes: list[str] = []
        self.secrets: list[str] = []
        self.aliases: list[dict] = []
        self.init_pods: dict[str, dict] = {}
        self.init_logs: dict[str, str] = {}
        self.secret_values = self.make_secrets()

    # --- what the operator creates by hand on a cluster (k8s/README.md) -----------------------
    def make_secrets(self) -> dict[str, dict[str, str]]:
        pg_password = secrets.token_hex(16)
        tls = Path(os.environ["TLS_CERT_FILE"]).parent
        return {
            "postgres": {"password": pg_password},
            "mlflow": {
                "backend-store-uri": f"postgresql://mlflow:{pg_password}@postgres:5432/mlflow",
                "flask-secret-key": secrets.token_hex(16),
                "admin-password": secrets.token_hex(16),
            },
            "trainer-registry": {"username": "trainer", "password": secrets.token_hex(16)},
            # The decision log's database on the same server (k8s/components/decision-log).
            # The model server writes as the INSERT-only role the migration creates.
            "decision-log": {
                "store-uri": f"postgresql://mlflow:{pg_password}@postgres:5432/decisions",
                "writer-password": secrets.token_hex(16),
                "writer-store-uri": "postgresql://decisions_writer@postgres:5432/decisions",
            },
            "model-server-registry": {
                "username": "model-server",
                "password": secrets.token_hex(16),
            },
            "gateway-tls": {
                "tls.crt": (tls / "server.crt").read_text(),
                "tls.key": (tls / "server.key").read_text(),
            },
            "gateway-api-keys": {"api-keys.map": Path(os.environ["API_KEYS_FILE"]).read_text()},
        }

    def workload(self, name: str) -> dict:
        return next(
            o
            for o in self.objects
            if o["kind"] in {"Deployment", "StatefulSet", "CronJob"}
            and o["metadata"]["name"] == name
        )

    def translate(self, obj: dict) -> list[dict]:
        """The workload as podman 4.3 can play it (see the module docstring)."""
        obj = copy.deepcopy(obj)
        name = obj["metadata"]["name"]
        spec = pod_spec(obj)
        docs: list[dict] = []
        for container in all_containers(spec):
            container["image"] = local_image(container["image"])
            container["imagePullPolicy"] = "IfNotPresent"
            for ref in container.get("envFrom", []):
                docs.append(self.config_map(ref["configMapRef"]["name"]))
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                where = f"{name}-{volume['name']}"  # one folder per workload's volume
                folder = self.secret_folder(volume["secret"], spec, where)
                volume.pop("secret")
                volume["hostPath"] = {"path": str(folder), "type": "Directory"}
            if "persistentVolumeClaim" in volume:
                docs.append(self.claim(volume["persistentVolumeClaim"]["claimName"]))
        spec["hostAliases"] = list(self.aliases)
        spec.pop("serviceAccountName", None)
        # podman 4.3 publishes every containerPort on the host (same number, all addresses)
        # when hostPort is unset: on 127.0.0.1 and a free port instead; the gateway's https is
        # the test's way in.
        for container in spec["containers"]:
            for port in container.get("ports", []):
                host = self.https_port if (name, port["name"]) == ("gateway", "https") else None
                port.update(hostPort=host or free_port(), hostIP="127.0.0.1")
        if obj["kind"] == "StatefulSet":
            for template in obj["spec"].pop("volumeClaimTemplates"):
                claim = f"{template['metadata']['name']}-{name}-0"
                spec.setdefault("volumes", []).append(
                    {
                        "name": template["metadata"]["name"],
                        "persistentVolumeClaim": {"claimName": claim},
                    }
                )
                docs.append(
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "metadata": {"name": claim},
                        "spec": template["spec"],
                    }
                )
            obj = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": obj["metadata"],
                "spec": {
                    "replicas": 1,
                    "selector": obj["spec"]["selector"],
                    "template": obj["spec"]["template"],
                },
            }
        elif obj["kind"] == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
            obj = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": template["spec"],
            }
        elif obj["kind"] == "Deployment":
            obj["spec"]["replicas"] = 1
        for ref in self.secret_refs(spec):
            self.create_secret(ref)
        self.split_init_containers(name, spec)
        return [*docs, obj]

    def split_init_containers(self, name: str, spec: dict) -> None:
        """podman 4.3 fails the pod when it removes an init container that just exited
        ("cannot remove container ... as it is running"): the init containers run first as a
        Pod of their own, with the same pod settings, and the workload starts once they
        exited 0, which is the order Kubernetes gives them."""
        init = spec.pop("initContainers", [])
        if not init:
            return
        used = {m["name"] for c in init for m in c.get("volumeMounts", [])}
        volumes = [v for v in spec.get("volumes", []) if v["name"] in used]
        assert not any("persistentVolumeClaim" in v for v in volumes), "init with a PVC"
        pod_spec = {k: v for k, v in spec.items() if k not in {"containers", "volumes"}}
        self.init_pods[name] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-init"},
            "spec": {**pod_spec, "restartPolicy": "Never", "containers": init, "volumes": volumes},
        }

    def config_map(self, name: str) -> dict:
        return next(
            o for o in self.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name
        )

    def claim(self, name: str) -> dict:
        return next(
            o
            for o in self.objects
            if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == name
        )

    def secret_refs(self, spec: dict) -> set[str]:
        return {
            item["valueFrom"]["secretKeyRef"]["name"]
            for container in all_containers(spec)
            for item in container.get("env", [])
            if "secretKeyRef" in item.get("valueFrom", {})
        }

    def create_secret(self, name: str) -> None:
        if name in self.secrets:
            return
        data = {
            k: base64.b64encode(v.encode()).decode() for k, v in self.secret_values[name].items()
        }
        path = self.workdir / f"secret-{name}.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(data))
        podman("secret", "create", name, str(path))
        path.unlink()
        self.secrets.append(name)

    def secret_folder(self, secret: dict, spec: dict, volume: str) -> Path:
        """The Secret's files as the kubelet would mount them: only its `items` when listed
        (the model server gets two keys of `decision-log`, never the owner's store-uri)."""
        name = secret["secretName"]
        # An optional Secret the operator has not created (decisions-hash-key: the hashed
        # mode's key, not needed in the default full mode) mounts as an empty folder.
        if secret.get("optional") and name not in self.secret_values:
            files = {}
        else:
            values = self.secret_values[name]
            files = {item["path"]: values[item["key"]] for item in secret.get("items", [])}
            files = files or values
        folder = self.workdir / "secrets" / volume
        folder.mkdir(parents=True, mode=0o750)
        context = spec.get("securityContext", {})
        for key, value in files.items():
            (folder / key).write_text(value)
            (folder / key).chmod(0o440)
            if os.geteuid() == 0:
                os.chown(folder / key, context.get("runAsUser", 0), context.get("runAsGroup", 0))
        if os.geteuid() == 0:
            os.chown(folder, context.get("runAsUser", 0), context.get("runAsGroup", 0))
        return folder

    # --- running ---------------------------------------------------------------------------------
    def play(self, name: str) -> str:
        docs = self.translate(self.workload(name))
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self.volumes += [
            d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"
        ]
        if name in self.init_pods:
            init = self.init_pods[name]
            init_path = self.workdir / f"{name}-init.yaml"
            init_path.write_text(yaml.safe_dump(init, sort_keys=False))
            podman("kube", "play", "--network", self.network, str(init_path), timeout=600)
            self.pods[f"{name}-init"] = init["metadata"]["name"]
            for container in init["spec"]["containers"]:
                code = self.wait_exited(f"{name}-init", container["name"], timeout=600)
                logs = podman("logs", self.container(f"{name}-init", container["name"])).stdout
                assert code == 0, f"{name} init container {container['name']} exited {code}"
                # Every init container's log, in order (mlflow has two: the tracking store's
                # migration and the decision log's).
                self.init_logs[name] = self.init_logs.get(name, "") + logs
        podman("kube", "play", "--network", self.network, str(path), timeout=600)
        pod = name if docs[-1]["kind"] == "Pod" else f"{name}-pod-0"
        self.pods[name] = pod
        return pod

    def infra(self, pod: str) -> str:
        return podman("pod", "inspect", pod, "--format", "{{.InfraContainerID}}").stdout.strip()

    def address(self, pod: str) -> str:
        out = podman(
            "inspect",
            self.infra(pod),
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        )
        return out.stdout.strip()

    def publish_services(self, workload: str) -> None:
        """The Services selecting this workload become host aliases of its pod."""
        labels = pod_template_labels(self.workload(workload))
        address = self.address(self.pods[workload])
        for service in (o for o in self.objects if o["kind"] == "Service"):
            selector = service["spec"].get("selector", {})
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                svc = service["metadata"]["name"]
                self.aliases.append(
                    {
                        "ip": address,
                        "hostnames": [
                            svc,
                            f"{svc}.credit-risk.svc",
                            f"{svc}.credit-risk.svc.cluster.local",
                        ],
                    }
                )

    def container(self, workload: str, name: str) -> str:
        return f"{self.pods[workload]}-{name}"

    def probe_once(self, workload: str, container: dict, probe: dict) -> bool:
        if "exec" in probe:
            return (
                podman(
                    "exec",
                    self.container(workload, container["name"]),
                    *probe["exec"]["command"],
                    check=False,
                    timeout=60,
                ).returncode
                == 0
            )
        if "httpGet" in probe:
            get = probe["httpGet"]
            kind, port, path = get.get("scheme", "HTTP").lower(), get["port"], get["path"]
        else:
            kind, port, path = "tcp", probe["tcpSocket"]["port"], "/"
        result = podman(
            "run",
            "--rm",
            "--label",
            "credit-risk-check=kube-play",
            # Inside the pod: podman 4.3 refuses `--network container:<infra>` for a container
            # outside the pod ("containers not in pods cannot depend on containers in pods").
            "--pod",
            self.pods[workload],
            "--read-only",
            "--cap-drop",
            "ALL",
            "--user",
            "10001:10001",
            "--entrypoint",
            "python",
            local_image("credit-risk/model-server"),
            "-c",
            PROBE,
            kind,
            str(port_number(container, port)),
            path,
            check=False,
            timeout=60,
        )
        return result.returncode == 0

    def wait_ready(self, workload: str, timeout: float) -> None:
        spec = pod_spec(self.workload(workload))
        deadline = time.monotonic() + timeout
        for container in spec["containers"]:
            probe = container["readinessProbe"]
            while not self.probe_once(workload, container, probe):
                if time.monotonic() > deadline:
                    logs = podman(
                        "logs",
                        "--tail",
                        "40",
                        self.container(workload, container["name"]),
                        check=False,
                    ).stderr
                    raise AssertionError(f"{workload} not ready in {timeout:.0f}s:\n{logs[-3000:]}")
                time.sleep(3)

    def wait_exited(self, workload: str, container: str, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        name = self.container(workload, container)
        while time.monotonic() < deadline:
            state = json.loads(podman("inspect", name).stdout)[0]["State"]
            if state["Status"] in {"exited", "stopped"}:
                return state["ExitCode"]
            time.sleep(3)
        raise AssertionError(f"{name} still running after {timeout:.0f}s")

    def down(self) -> None:
        for pod in reversed(list(self.pods.values())):
            podman("pod", "rm", "-f", "-t", "10", pod, check=False)
        for volume in self.volumes:
            podman("volume", "rm", "-f", volume, check=False)
        for secret in self.secrets:
            podman("secret", "rm", secret, check=False)
        podman("network", "rm", "-f", self.network, check=False)
        left = [
            p for p in self.pods.values() if podman("pod", "exists", p, check=False).returncode == 0
        ]
        assert not left, f"pods left behind: {left}"


def pod_template_labels(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def rendered_dev_overlay() -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / "dev")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("kube-play")
    workdir.chmod(0o700)
    running = KubePlay(rendered_dev_overlay(), workdir)
    podman("network", "create", running.network)
    started = time.monotonic()
    try:
        for workload in ORDER:
            running.play(workload)
            if workload == "trainer":
                code = running.wait_exited("trainer", "trainer", timeout=900)
                logs = podman(
                    "logs", "--tail", "30", running.container("trainer", "trainer"), check=False
                ).stdout
                assert code == 0, f"trainer exited {code}:\n{logs}"
                continue
            running.wait_ready(workload, timeout=600)
            running.publish_services(workload)
        print(f"\nkube play: dev overlay up in {time.monotonic() - started:.0f}s")
        yield running
    finally:
        running.down()


def test_only_the_documented_kinds_are_left_out():
    kinds = {o["kind"] for o in rendered_dev_overlay()}
    played = {"Deployment", "StatefulSet", "CronJob", "ConfigMap", "PersistentVolumeClaim"}
    assert kinds - played == NOT_RUN, (
        f"kinds neither played nor documented: {kinds - played - NOT_RUN}"
    )


def test_every_service_port_is_its_target_port():
    """Host aliases stand in for Services, which is only faithful when no port is remapped."""
    objects = rendered_dev_overlay()
    for service in (o for o in objects if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        workload = next(
            o
            for o in objects
            if o["kind"] in {"Deployment", "StatefulSet"}
            and all(pod_template_labels(o).get(k) == v for k, v in selector.items())
        )
        container = pod_spec(workload)["containers"][0]
        for port in service["spec"]["ports"]:
            target = port_number(container, port.get("targetPort", port["port"]))
            if service["metadata"]["name"] == "gateway":
                # The way in from outside, not called by any pod: the test publishes the
                # container port the Service targets (a hostPort), whatever the Service's own.
                assert port.get("targetPort") in {"https", "http"}, port
                continue
            assert port["port"] == target, f"{service['metadata']['name']}: {port}"


def test_migration_init_container_migrated_the_store(kube):
    """The migration ran before the server (as its init container), it is in the database,
    and the server, which only checks the schema (TRACKING_UPGRADE_DB=false), started on it."""
    assert "tracking migrate: schema upgraded" in kube.init_logs["mlflow"]
    assert "decision log schema migrated" in kube.init_logs["mlflow"]
    from mlflow.store.db.utils import _get_latest_schema_revision

    revision = podman(
        "exec",
        kube.container("postgres", "postgres"),
        "psql",
        "-X",
        "-h",
        "/tmp",  # the stand-in's socket under kube play (stand-ins/postgres-entrypoint.sh)
        "-U",
        "mlflow",
        "-d",
        "mlflow",
        "-tAc",
        "select version_num from alembic_version",
    ).stdout.strip()
    assert revision == _get_latest_schema_revision()
    server_log = podman("logs", kube.container("mlflow", "mlflow")).stdout
    assert "tracking server: starting" in server_log
    assert "schema upgraded" not in server_log


def test_security_contexts_are_the_rendered_ones(kube):
    for workload in ORDER:
        spec = pod_spec(kube.workload(workload))
        pod_context = spec.get("securityContext", {})
        # podman removes init containers once they ran (tests/deploy checks theirs offline).
        for container in spec["containers"]:
            context = container["securityContext"]
            info = json.loads(
                podman("inspect", kube.container(workload, container["name"])).stdout
            )[0]
            user = context.get("runAsUser", pod_context.get("runAsUser"))
            group = context.get("runAsGroup", pod_context.get("runAsGroup"))
            assert user and user != 0, f"{workload}/{container['name']}: no non-root uid"
            assert info["Config"]["User"] == f"{user}:{group}", info["Config"]["User"]
            assert info["HostConfig"]["ReadonlyRootfs"] is context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert not info.get("EffectiveCaps"), info.get("EffectiveCaps")
            assert "no-new-privileges" in info["HostConfig"]["SecurityOpt"]


def test_keyed_prediction_through_the_gateway_pod(kube):
    response = requests.post(
        f"https://localhost:{kube.https_port}/invocations",
        data=PREDICT_ONE.read_bytes(),
        headers={"Content-Type": "application/json", "X-API-Key": os.environ["CONTAINERS_API_KEY"]},
        verify=os.environ["CONTAINERS_CA"],
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == "1"
    assert len(response.json()["predictions"]) == len(
        json.loads(PREDICT_ONE.read_text())["dataframe_records"]
    )
