"""Render the OCI Container Instance request (CreateContainerInstanceDetails) from k8s/.

The gateway and the model server run side by side in one container instance, where they share
localhost. Images, environment, ports, probes, resources, security settings and writable
paths come from the rendered OKE overlay (`kubectl kustomize k8s/overlays/oke`), so the two
deployments cannot drift; only what OCI alone knows comes from the settings file. Secrets come
from a folder laid out as <secret>/<key> (create.sh fills it from OCI Vault); with
--placeholders they are stand-ins, for checks and for reading.

    python oci/render.py --settings oci/instance.env --secrets-dir DIR > request.json
    python oci/render.py --settings oci/instance.env.example --placeholders
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OVERLAY = REPO / "k8s" / "overlays" / "oke"
# The two Deployments that make up the instance, in start order.
COMPONENTS = ("model-server", "gateway")
# In the instance the containers share localhost: nginx reaches the model server there, the
# model server binds only loopback (the gateway is the one way in), and there is no MLflow UI.
# Only host names change: the ports are those of the shared plan (common/facts.py), in which
# no two listeners of one instance share a number (tests/deploy/test_port_plan.py).
# The decision log is off in the instance (oci/README.md): nothing there runs its migration,
# which creates the table and the INSERT-only role in the pod of MLflow, and the instance has
# no storage that outlives it; so the writer's store, its Secret files, the hashed mode's key
# and its retention setting stay out of the request.
OVERRIDES = {
    "model-server": {"SERVING_HOST": "127.0.0.1", "DECISIONS_MODE": "off"},
    "gateway": {"MODEL_SERVER_HOST": "127.0.0.1"},
}
DROPPED_ENV = {
    "gateway": {"MLFLOW_HOST", "MLFLOW_UPSTREAM"},
    "model-server": {
        "DECISIONS_STORE_URI_FILE", "DECISIONS_STORE_PASSWORD_FILE", "DECISIONS_PRUNE_INTERVAL",
        "DECISIONS_HASH_KEY_FILE",
    },
}  # fmt: skip
DROPPED_MOUNTS = {"model-server": {"decision-log", "decisions-hash-key"}}
REQUIRED_SETTINGS = (
    "DISPLAY_NAME", "COMPARTMENT_ID", "AVAILABILITY_DOMAIN", "SUBNET_ID", "SHAPE", "OCPUS",
    "MEMORY_GBS", "TRACKING_URI", "GATEWAY_SERVER_NAME",
)  # fmt: skip
_QUANTITY = re.compile(r"^(?P<number>[0-9.]+)(?P<unit>m|Ki|Mi|Gi|Ti|)$")
_BINARY = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


class RenderError(Exception):
    """A setting or manifest that cannot become a container instance; the message says why."""


def read_settings(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blanks ignored); every required key must be set."""
    settings = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    missing = [key for key in REQUIRED_SETTINGS if not settings.get(key)]
    if missing:
        raise RenderError(f"{path}: set {', '.join(missing)}")
    return settings


def render_overlay(overlay: Path) -> list[dict]:
    """The objects of `kubectl kustomize <overlay>`."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RenderError(f"kubectl kustomize {overlay} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def cpu_cores(quantity: str) -> float:
    match = _QUANTITY.match(str(quantity))
    if not match:
        raise RenderError(f"cannot read CPU quantity {quantity!r}")
    number = float(match["number"])
    return number / 1000 if match["unit"] == "m" else number


def memory_gb(quantity: str) -> float:
    match = _QUANTITY.match(str(quantity))
    if not match or match["unit"] == "m":
        raise RenderError(f"cannot read memory quantity {quantity!r}")
    return float(match["number"]) * _BINARY[match["unit"]] / 2**30


class SecretSource:
    """Secret values by <secret>/<key>: files in a folder, or placeholders."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.used: list[str] = []

    def read(self, secret: str, key: str) -> str:
        self.used.append(f"{secret}/{key}")
        if self.folder is None:
            return f"<from OCI Vault: {secret}/{key}>"
        path = self.folder / secret / key
        if not path.is_file():
            raise RenderError(f"missing secret file {path} (see oci/vault-secrets.example)")
        return path.read_text()


def _find(objects: list[dict], kind: str, name: str) -> dict:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise RenderError(f"the overlay has no {kind} {name}")


PART_OF = "app.kubernetes.io/part-of"


def _find_any(objects: list[dict], kind: str) -> dict:
    for obj in objects:
        if obj["kind"] == kind:
            return obj
    raise RenderError(f"the overlay has no {kind}")


def _config_map(objects: list[dict], generated_name: str) -> dict[str, str]:
    return _find(objects, "ConfigMap", generated_name).get("data", {})


def container_env(objects, name, container, secrets, settings) -> dict[str, str]:
    """Environment as the pod sees it: ConfigMaps, then explicit values and Secret references."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(_config_map(objects, source["configMapRef"]["name"]))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets.read(ref["name"], ref["key"]).strip()
        else:
            raise RenderError(f"{name}: env {item['name']} has an unsupported source")
    for key in DROPPED_ENV.get(name, ()):
        env.pop(key, None)
    env.update(OVERRIDES.get(name, {}))
    if name == "model-server":
        env["SERVING_TRACKING_URI"] = settings["TRACKING_URI"]
    if name == "gateway":
        env["GATEWAY_SERVER_NAME"] = settings["GATEWAY_SERVER_NAME"]
    return env


def health_check(name: str, container: dict) -> dict:
    """The liveness probe as an OCI health check (KILL, then the restart policy restarts it).

    OCI's HTTP checks speak plain HTTP, so an HTTPS probe (the gateway's /healthz on 8443)
    becomes an HTTP check of the same path on the container's plain-HTTP port (named `http`),
    where the gateway answers /healthz too: it fails when the model server behind it is down,
    which a TCP check of 8443 would not see. Without such a port it falls back to TCP. The
    startup probe's budget is the initial delay.
    """
    live, startup = container["livenessProbe"], container.get("startupProbe", {})
    http = live.get("httpGet")
    port_ref = live.get("httpGet", live.get("tcpSocket", {})).get("port")
    if http and http.get("scheme", "HTTP") == "HTTPS" and _has_port(container, "http"):
        http, port_ref = {**http, "scheme": "HTTP"}, "http"
    port = _port_number(container, port_ref)
    check = {
        "name": f"{name}-live",
        "port": port,
        "initialDelayInSeconds": startup.get("periodSeconds", 10)
        * startup.get("failureThreshold", 1),
        "intervalInSeconds": live.get("periodSeconds", 10),
        "timeoutInSeconds": live.get("timeoutSeconds", 1),
        "failureThreshold": live.get("failureThreshold", 3),
        "successThreshold": 1,
        "failureAction": "KILL",
    }
    if http and http.get("scheme", "HTTP") == "HTTP":
        check.update(healthCheckType="HTTP", path=http["path"])
    else:
        check["healthCheckType"] = "TCP"
    return check


def _has_port(container: dict, name: str) -> bool:
    return any(item.get("name") == name for item in container.get("ports", []))


def _port_number(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    for item in container.get("ports", []):
        if item.get("name") == port:
            return item["containerPort"]
    raise RenderError(f"{container['name']}: no port named {port!r}")


def volumes_and_mounts(name, pod, container, secrets):
    """k8s volumes as OCI ones: emptyDir -> EMPTYDIR, secret -> CONFIGFILE (base64 data)."""
    volumes, mounts = [], []
    by_name = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if mount["name"] in DROPPED_MOUNTS.get(name, ()):
            continue
        volume = by_name[mount["name"]]
        oci_name = f"{name}-{mount['name']}"
        if "emptyDir" in volume:
            medium = volume["emptyDir"].get("medium") == "Memory"
            volumes.append(
                {
                    "name": oci_name,
                    "volumeType": "EMPTYDIR",
                    "backingStore": "MEMORY" if medium else "EPHEMERAL_STORAGE",
                }
            )
        elif "secret" in volume:
            secret = volume["secret"]["secretName"]
            keys = [item["key"] for item in volume["secret"].get("items", [])] or _secret_keys(
                secret
            )
            configs = [
                {
                    "fileName": key,
                    "data": base64.b64encode(secrets.read(secret, key).encode()).decode(),
                }
                for key in keys
            ]
            volumes.append({"name": oci_name, "volumeType": "CONFIGFILE", "configs": configs})
        else:
            raise RenderError(f"{name}: volume {mount['name']} has no Container Instance form")
        mounts.append(
            {
                "volumeName": oci_name,
                "mountPath": mount["mountPath"],
                "isReadOnly": bool(mount.get("readOnly", False)),
            }
        )
    # Parents before children (/tmp before /tmp/metrics), whatever the manifest's order.
    mounts.sort(key=lambda mount: mount["mountPath"].count("/"))
    return volumes, mounts


def _secret_keys(secret: str) -> list[str]:
    """Keys of the Secrets mounted whole (their files are what the gateway reads)."""
    known = {"gateway-tls": ["tls.crt", "tls.key"], "gateway-api-keys": ["api-keys.map"]}
    if secret not in known:
        raise RenderError(f"secret {secret} is mounted whole; list its keys in render.py")
    return known[secret]


def security_context(pod: dict, container: dict) -> dict:
    pod_context, context = pod.get("securityContext", {}), container.get("securityContext", {})
    return {
        "securityContextType": "LINUX",
        "runAsUser": context.get("runAsUser", pod_context["runAsUser"]),
        "runAsGroup": context.get("runAsGroup", pod_context["runAsGroup"]),
        "isNonRootUserCheckEnabled": bool(
            context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        ),
        "isRootFileSystemReadonly": bool(context.get("readOnlyRootFilesystem")),
        "capabilities": {"dropCapabilities": context["capabilities"]["drop"]},
    }


def render(settings: dict[str, str], objects: list[dict], secrets: SecretSource) -> dict:
    """The CreateContainerInstanceDetails body (camelCase, as `oci ... --from-json` takes it)."""
    containers, volumes, grace = [], [], 0
    vcpus = memory = 0.0
    for name in COMPONENTS:
        pod = _find(objects, "Deployment", name)["spec"]["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == name)
        limits = container["resources"]["limits"]
        container_volumes, mounts = volumes_and_mounts(name, pod, container, secrets)
        volumes += container_volumes
        vcpus += cpu_cores(limits["cpu"])
        memory += memory_gb(limits["memory"])
        grace = max(grace, pod.get("terminationGracePeriodSeconds", 30))
        containers.append(
            {
                "displayName": name,
                "imageUrl": container["image"],
                "environmentVariables": container_env(objects, name, container, secrets, settings),
                "volumeMounts": mounts,
                "healthChecks": [health_check(name, container)],
                "resourceConfig": {
                    "vcpusLimit": cpu_cores(limits["cpu"]),
                    "memoryLimitInGBs": memory_gb(limits["memory"]),
                },
                "securityContext": security_context(pod, container),
                "isResourcePrincipalDisabled": True,
            }
        )
    # One OCPU is two vCPUs on the E4/E5 flexible shapes.
    instance_vcpus, instance_memory = 2 * float(settings["OCPUS"]), float(settings["MEMORY_GBS"])
    if vcpus > instance_vcpus or memory > instance_memory:
        raise RenderError(
            f"the containers' limits ({vcpus} vCPU, {memory:g} GB) exceed the shape "
            f"({instance_vcpus} vCPU, {instance_memory:g} GB): raise OCPUS or MEMORY_GBS"
        )
    vnic = {
        "subnetId": settings["SUBNET_ID"],
        "displayName": settings["DISPLAY_NAME"],
        "isPublicIpAssigned": settings.get("ASSIGN_PUBLIC_IP", "false").lower() == "true",
    }
    if settings.get("NSG_ID"):
        vnic["nsgIds"] = [settings["NSG_ID"]]
    return {
        "displayName": settings["DISPLAY_NAME"],
        "compartmentId": settings["COMPARTMENT_ID"],
        "availabilityDomain": settings["AVAILABILITY_DOMAIN"],
        "shape": settings["SHAPE"],
        "shapeConfig": {"ocpus": float(settings["OCPUS"]), "memoryInGBs": instance_memory},
        "containerRestartPolicy": "ALWAYS",
        "gracefulShutdownTimeoutInSeconds": grace,
        "containers": containers,
        "vnics": [vnic],
        "volumes": volumes,
        # The project label every Kubernetes object carries (k8s/base/kustomization.yaml).
        "freeformTags": {"app": _find_any(objects, "Deployment")["metadata"]["labels"][PART_OF]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=Path, required=True, help="instance.env")
    parser.add_argument("--overlay", type=Path, default=DEFAULT_OVERLAY)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--secrets-dir", type=Path, help="<secret>/<key> files from OCI Vault")
    source.add_argument("--placeholders", action="store_true", help="stand-ins for secrets")
    parser.add_argument("--output", type=Path, help="write here (mode 0600) instead of stdout")
    args = parser.parse_args(argv)
    try:
        request = render(
            read_settings(args.settings),
            render_overlay(args.overlay),
            SecretSource(None if args.placeholders else args.secrets_dir),
        )
    except RenderError as error:
        print(f"render: {error}", file=sys.stderr)
        return 2
    text = json.dumps(request, indent=2) + "\n"
    if args.output:
        args.output.touch(mode=0o600)
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
