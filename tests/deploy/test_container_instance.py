"""The OCI Container Instance request: rendered from the OKE overlay, shaped as OCI expects.

Shape is checked against the OCI CLI's own input skeleton
(`--generate-full-command-json-input`, offline) and the enums of the OCI Python SDK models.
"""

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import REPO, container_env, find, tool

from common import facts

RENDER = REPO / "oci" / "render.py"
SETTINGS = REPO / "oci" / "instance.env.example"
VARIANT_NOTE = "This parameter should actually be a JSON object"


def render(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RENDER), *args], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def request_body() -> dict:
    result = render("--settings", str(SETTINGS), "--placeholders")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def skeleton() -> dict:
    result = subprocess.run(
        [tool("oci"), "container-instances", "container-instance", "create",
         "--generate-full-command-json-input"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def conforms(value, shape, where="$") -> list[str]:
    """Problems where `value` has keys or types that the skeleton `shape` does not."""
    if isinstance(shape, list) and shape and isinstance(shape[0], str) and VARIANT_NOTE in shape[0]:
        variants = [v for v in shape[1:] if isinstance(v, dict)]
        tries = [conforms(value, variant, where) for variant in variants]
        return [] if any(not t for t in tries) else min(tries, key=len)
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        # Maps of free keys (environment variables, tags) are shown with sample keys.
        if shape and all(k.startswith(("string", "tagKey", "tagNamespace")) for k in shape):
            return []
        problems = []
        for key, item in value.items():
            if key not in shape:
                problems.append(f"{where}.{key}: not in the CLI's input")
            else:
                problems += conforms(item, shape[key], f"{where}.{key}")
        return problems
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        element = next((s for s in shape if s is not None), None)
        return [p for i, item in enumerate(value) for p in conforms(item, element, f"{where}[{i}]")]
    if isinstance(shape, bool):
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean"]
    if isinstance(shape, int | float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{where}: expected a number"]
    return [] if isinstance(value, str) else [f"{where}: expected a string"]


def test_request_matches_cli_skeleton(request_body, skeleton):
    assert conforms(request_body, skeleton) == []
    for required in ("compartmentId", "availabilityDomain", "shape", "shapeConfig", "containers"):
        assert request_body[required]
    assert request_body["vnics"][0]["subnetId"]


def test_the_checker_catches_a_wrong_key(skeleton):
    assert conforms({"containers": [{"imageURL": "x"}]}, skeleton) != []


SDK_ENUMS = """
import json, sys
from oci.container_instances import models as m
print(json.dumps({
  "restart": m.ContainerInstance.CONTAINER_RESTART_POLICY_ALWAYS,
  "health_types": [m.CreateContainerHealthCheckDetails.HEALTH_CHECK_TYPE_HTTP,
                   m.CreateContainerHealthCheckDetails.HEALTH_CHECK_TYPE_TCP],
  "actions": [m.ContainerHealthCheck.FAILURE_ACTION_KILL,
              m.ContainerHealthCheck.FAILURE_ACTION_NONE],
  "volume_types": [m.CreateContainerVolumeDetails.VOLUME_TYPE_EMPTYDIR,
                   m.CreateContainerVolumeDetails.VOLUME_TYPE_CONFIGFILE],
  "stores": [m.ContainerEmptyDirVolume.BACKING_STORE_EPHEMERAL_STORAGE,
             m.ContainerEmptyDirVolume.BACKING_STORE_MEMORY],
  "context": m.CreateLinuxSecurityContextDetails().security_context_type,
}))
"""


def test_request_values_are_sdk_enums(request_body):
    python = str(Path(tool("oci")).parent / "python")
    result = subprocess.run([python, "-c", SDK_ENUMS], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    enums = json.loads(result.stdout)
    assert request_body["containerRestartPolicy"] == enums["restart"]
    for container in request_body["containers"]:
        for check in container["healthChecks"]:
            assert check["healthCheckType"] in enums["health_types"]
            assert check["failureAction"] in enums["actions"]
        assert container["securityContext"]["securityContextType"] == enums["context"]
    for volume in request_body["volumes"]:
        assert volume["volumeType"] in enums["volume_types"]
        if volume["volumeType"] == "EMPTYDIR":
            assert volume["backingStore"] in enums["stores"]


def test_gateway_and_model_server_share_localhost(request_body, rendered):
    containers = {c["displayName"]: c for c in request_body["containers"]}
    assert list(containers) == ["model-server", "gateway"]
    server, gateway = containers["model-server"], containers["gateway"]
    assert gateway["environmentVariables"]["MODEL_SERVER_HOST"] == "127.0.0.1"
    assert server["environmentVariables"]["SERVING_HOST"] == "127.0.0.1"
    assert "MLFLOW_HOST" not in gateway["environmentVariables"]
    objects = rendered["oke"]["objects"]
    for name, container in containers.items():
        k8s = find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert container["imageUrl"] == k8s["image"]
        # The pod's variables, minus the MLflow UI and the decision log's store (off in the
        # instance), plus the loopback binds (render.py).
        k8s_env = set(container_env(objects, k8s)) - {"MLFLOW_HOST"} - DECISION_STORE_ENV
        assert set(container["environmentVariables"]) - {"SERVING_HOST", "MODEL_SERVER_HOST"} == (
            k8s_env - {"MODEL_SERVER_HOST"}
        )
        assert container["securityContext"]["isRootFileSystemReadonly"] is True
        assert container["securityContext"]["runAsUser"] == 10001
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        assert mounts == sorted(mounts, key=lambda p: p.count("/"))
    assert server["healthChecks"][0]["path"] == "/healthz/live"
    assert server["healthChecks"][0]["port"] == facts.MODEL_SERVER_PORT
    # OCI probes plain HTTP: the gateway's /healthz on its plain-HTTP port, which proxies to
    # the model server (a TCP check of 8443 would pass with the model server dead).
    check = gateway["healthChecks"][0]
    assert (check["healthCheckType"], check["port"], check["path"]) == (
        "HTTP",
        facts.GATEWAY_HTTP_PORT,
        "/healthz",
    )


# The decision log's store and the hashed mode's key: the pod's, not the instance's.
DECISION_STORE_ENV = {
    "DECISIONS_STORE_URI_FILE", "DECISIONS_STORE_PASSWORD_FILE", "DECISIONS_PRUNE_INTERVAL",
    "DECISIONS_HASH_KEY_FILE",
}  # fmt: skip


def test_decision_log_is_off_in_the_instance(request_body, rendered):
    """No migration and no lasting storage in the instance (oci/README.md): the OKE pod's
    decision log (on, as the writer role) becomes off, and no decision-log Secret is read."""
    objects = rendered["oke"]["objects"]
    k8s = find(objects, "Deployment", "model-server")["spec"]["template"]["spec"]["containers"][0]
    k8s_env = container_env(objects, k8s)
    assert k8s_env["DECISIONS_MODE"] == "full"
    assert set(k8s_env) >= DECISION_STORE_ENV
    server = request_body["containers"][0]
    assert server["displayName"] == "model-server"
    env = server["environmentVariables"]
    assert env["DECISIONS_MODE"] == "off"
    assert not {key for key in env if key.startswith("DECISIONS_")} - {"DECISIONS_MODE"}
    assert not any("decision-log" in m["volumeName"] for m in server["volumeMounts"])
    assert not any("decision" in v["name"] for v in request_body["volumes"])
    readme = (REPO / "oci" / "README.md").read_text()
    assert "DECISIONS_MODE=off" in readme


def test_secrets_become_config_files(request_body):
    volumes = {v["name"]: v for v in request_body["volumes"]}
    tls = volumes["gateway-tls"]
    assert tls["volumeType"] == "CONFIGFILE"
    assert {c["fileName"] for c in tls["configs"]} == {"tls.crt", "tls.key"}
    decoded = base64.b64decode(tls["configs"][0]["data"]).decode()
    assert decoded.startswith("<from OCI Vault: gateway-tls/")


def test_secrets_from_a_folder(tmp_path):
    for path in ("gateway-tls/tls.crt", "gateway-tls/tls.key", "gateway-api-keys/api-keys.map",
                 "model-server-registry/username", "model-server-registry/password"):  # fmt: skip
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text(f"value of {path}\n")
    out = tmp_path / "request.json"
    result = render(
        "--settings", str(SETTINGS), "--secrets-dir", str(tmp_path), "--output", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o077 == 0
    body = json.loads(out.read_text())
    server = body["containers"][0]["environmentVariables"]
    assert server["MLFLOW_TRACKING_PASSWORD"] == "value of model-server-registry/password"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("COMPARTMENT_ID=ocid1.compartment.oc1..replace-me", "COMPARTMENT_ID="), "COMPARTMENT_ID"),
        (("OCPUS=2", "OCPUS=1"), "exceed the shape"),
    ],
)
def test_bad_settings_are_refused(tmp_path, change, message):
    settings = tmp_path / "instance.env"
    settings.write_text(SETTINGS.read_text().replace(*change))
    result = render("--settings", str(settings), "--placeholders")
    assert result.returncode == 2 and message in result.stderr
