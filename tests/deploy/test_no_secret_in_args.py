"""No Secret reaches a command line in any rendered manifest: a `$(VAR)` in `command` or `args`
expands into argv, which /proc/<pid>/cmdline and `ps` show to every user of the node (the
MLflow pod once passed --backend-store-uri=$(MLFLOW_BACKEND_STORE_URI) that way)."""

from __future__ import annotations

import re

import pytest
import yaml
from deploy_helpers import ALL_RENDERINGS, K8S, kustomize, pod_templates, variant_dir

REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def secret_variables(container: dict) -> set[str]:
    """Names of the container's variables that come from a Secret."""
    return {
        item["name"]
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }


@pytest.mark.parametrize("rendering", ALL_RENDERINGS)
def test_no_secret_variable_is_interpolated_into_argv(rendering, tmp_path):
    directory = (
        K8S / "overlays" / rendering
        if rendering in ("dev", "oke")
        else variant_dir(tmp_path, rendering)
    )
    objects = [o for o in yaml.safe_load_all(kustomize(directory)) if o]
    checked = 0
    for obj, spec in pod_templates(objects):
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            from_secrets = secret_variables(container)
            argv = " ".join(container.get("command", []) + container.get("args", []))
            leaked = set(REFERENCE.findall(argv)) & from_secrets
            assert not leaked, f"{obj['metadata']['name']}/{container['name']}: {leaked}"
            checked += bool(from_secrets)
    assert checked >= 3, "the check saw the containers that use Secrets"
