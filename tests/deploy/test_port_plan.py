"""No two processes that share a network namespace listen on the same port, in every shape.

Computed from the rendered configuration of each shape, never from a list of numbers: the
native runner's environments (stack/local.py), each compose service (its image's ENV plus
compose's environment), every pod of every Kubernetes rendering, and the OCI Container
Instance request that oci/render.py makes. What each process binds is read the way it reads
it at start (stack/ports.py: the model server's typed settings, the gateway's nginx
configuration rendered by nginx/render.sh, the tracking server's port).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from deploy_helpers import ALL_RENDERINGS, REPO, compose_services, container_env, dockerfile_env

from common import facts
from stack import local
from stack.ports import PORTS_OF, collisions, gateway_ports, model_server_ports

IMAGES = {  # component: (Dockerfile, target)
    "model-server": ("images/python.Dockerfile", "model-server"),
    "mlflow": ("images/python.Dockerfile", "mlflow"),
    "gateway": ("nginx/Dockerfile", None),
}
COMPOSE_COMPONENT = {"model-server": "model-server", "mlflow": "mlflow", "nginx": "gateway"}


def image_env(component: str) -> dict[str, str]:
    dockerfile, target = IMAGES[component]
    return dockerfile_env(REPO / dockerfile, target)


def listening(component: str, env: dict[str, str]) -> set[int]:
    """What `component` binds in a container with this environment on top of its image's."""
    return PORTS_OF[component]({**image_env(component), **env})


def test_the_check_catches_the_old_container_instance_clash():
    """The defect this check exists for: gateway plain HTTP on the model server's port."""
    clashing = {
        "gateway": gateway_ports({"GATEWAY_HTTP_PORT": str(facts.MODEL_SERVER_PORT)}),
        "model-server": model_server_ports({}),
    }
    assert collisions(clashing) == {facts.MODEL_SERVER_PORT: ["gateway", "model-server"]}


def test_native_stack():
    listeners = {name: PORTS_OF[name](env) for name, env in local.listeners().items()}
    assert collisions(listeners) == {}
    assert listeners["gateway"] == {facts.GATEWAY_HTTPS_PORT, facts.GATEWAY_HTTP_PORT}
    assert listeners["model-server"] == {facts.MODEL_SERVER_PORT}


def _compose_value(value) -> str:
    """A compose environment value with ${VAR:-default} / ${VAR:?message} as an unset .env."""
    text = str(value)
    text = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", text)
    return re.sub(r"\$\{[A-Z0-9_]+:\?[^}]*\}", "set-in-env", text)


def _published(service: dict) -> list[tuple[str, int]]:
    out = []
    for mapping in service.get("ports", []):
        *_host, host_port, container_port = _compose_value(mapping).split(":")
        out.append((host_port, int(container_port)))
    return out


def test_compose_services_publish_what_they_listen_on():
    """Each compose service has its own namespace: what it publishes must be what it binds,
    and no host port is published twice."""
    services = compose_services()
    host_ports = []
    for service_name, component in COMPOSE_COMPONENT.items():
        service = services[service_name]
        env = {k: _compose_value(v) for k, v in (service.get("environment") or {}).items()}
        bound = listening(component, env)
        for host_port, container_port in _published(service):
            assert container_port in bound, (service_name, container_port, bound)
            host_ports.append(host_port)
    assert len(host_ports) == len(set(host_ports)), host_ports


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_kubernetes_pods(rendered, name):
    objects = rendered[name]["objects"]
    for obj in objects:
        if obj["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        pod = obj["spec"]["template"]["spec"]
        listeners = {}
        for container in pod["containers"]:
            if container["name"] not in PORTS_OF:
                continue
            bound = listening(container["name"], container_env(objects, container))
            declared = {p["containerPort"] for p in container.get("ports", [])}
            # The declared containerPorts are literals Kubernetes reads: they must be what the
            # process binds, computed from its configuration.
            assert declared == bound, (obj["metadata"]["name"], declared, bound)
            listeners[container["name"]] = bound
        assert collisions(listeners) == {}, obj["metadata"]["name"]


def test_container_instance_starts_both_containers():
    result = subprocess.run(
        [sys.executable, str(REPO / "oci" / "render.py"), "--settings",
         str(REPO / "oci" / "instance.env.example"), "--placeholders"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)
    listeners = {
        c["displayName"]: listening(c["displayName"], c["environmentVariables"])
        for c in request["containers"]
    }
    assert set(listeners) == {"model-server", "gateway"}
    assert collisions(listeners) == {}, listeners
    # The gateway reaches the model server on the shared localhost, at the port it binds, and
    # each health check probes a port its container binds.
    gateway = next(c for c in request["containers"] if c["displayName"] == "gateway")
    env = {**image_env("gateway"), **gateway["environmentVariables"]}
    assert env["MODEL_SERVER_HOST"] == "127.0.0.1"
    for container in request["containers"]:
        for check in container["healthChecks"]:
            assert check["port"] in listeners[container["displayName"]]
