"""Helpers of the deployment checks: the checkers, rendering, and reading rendered objects.

The checkers (checkov, kubernetes-validate, the OCI CLI) live in their own virtualenv,
.local/venv-tools (git-ignored; tests/deploy/install_tools.sh makes it), because their pins
would downgrade mlflow's dependencies in .venv. DEPLOY_TOOLS_BIN points elsewhere if needed.
A missing tool fails the test with the command that installs it; nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("dev", "oke")
# OKE with the alternative of each pair of components swapped in (k8s/overlays/oke says which).
OKE_VARIANTS = {
    "oke-nlb": ("oci-load-balancer", "oci-network-load-balancer"),
    "oke-block-volume": ("oci-object-storage-artifacts", "oci-block-volume-artifacts"),
}
ALL_RENDERINGS = OVERLAYS + tuple(OKE_VARIANTS)
INSTALL_HINT = "run `bash tests/deploy/install_tools.sh` (the project's install step runs it)"


def tool(name: str) -> str:
    """Path of a checker from .local/venv-tools (or DEPLOY_TOOLS_BIN); fails with how to install."""
    folder = Path(os.environ.get("DEPLOY_TOOLS_BIN", REPO / ".local" / "venv-tools" / "bin"))
    path = folder / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {folder}: {INSTALL_HINT}")
    return str(path)


def kubectl() -> str:
    path = shutil.which("kubectl")
    if not path:
        pytest.fail(
            "kubectl (1.30+, with built-in kustomize) is not on PATH: install it from your "
            "distribution or the Kubernetes packages; the tests render with `kubectl kustomize`"
        )
    return path


def kustomize(directory: Path) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
    return result.stdout


def variant_dir(tmp_root: Path, variant: str) -> Path:
    """A copy of k8s/ whose OKE overlay uses the other component of one pair."""
    default, alternative = OKE_VARIANTS[variant]
    copy = tmp_root / variant / "k8s"
    shutil.copytree(K8S, copy)
    kustomization = copy / "overlays" / "oke" / "kustomization.yaml"
    text = kustomization.read_text()
    swapped = re.sub(rf"(?m)^  - (\.\./\.\./components/{default})$", r"  # - \1", text)
    swapped = re.sub(rf"(?m)^  # - (\.\./\.\./components/{alternative})$", r"  - \1", swapped)
    assert swapped.count("components/") == text.count("components/") and swapped != text
    kustomization.write_text(swapped)
    return copy / "overlays" / "oke"


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_templates(objects: list[dict]):
    """(object, pod spec) for every workload, CronJobs included."""
    for obj in objects:
        kind = obj["kind"]
        if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield obj, obj["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield obj, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def container_env(objects: list[dict], container: dict) -> dict[str, str | None]:
    """Environment as the pod sees it; Secret-backed values are None."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        env.update(find(objects, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def compose_services() -> dict[str, dict]:
    """Services of docker-compose.yml (empty until the containers issue lands its stack).

    The compose comparison in test_manifests.py uses this; it is here so that the same
    helper serves any later check against compose.
    """
    path = REPO / "docker-compose.yml"
    if not path.exists():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("services") or {}


def dockerfile_env(path, target: str | None = None) -> dict[str, str]:
    """Names and values an image sets with ENV (continuation lines included): those of the
    stage `target` (default: the last) and of the stages it is built FROM."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    stages: dict[str, tuple[str, dict[str, str]]] = {}  # name: (parent, its own ENV)
    name = None
    for line in text.splitlines():
        stage = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if stage:
            name = stage.group(2) or f"#{len(stages)}"
            stages[name] = (stage.group(1), {})
        elif line.startswith("ENV ") and name:
            stages[name][1].update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", line))
    chain, name = [], target or name
    while name in stages:
        chain.append(stages[name][1])
        name = stages[name][0]
    assert chain, f"{path}: no stage {target}"
    return {k: v for env in reversed(chain) for k, v in env.items()}
