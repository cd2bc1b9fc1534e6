"""Deployment checks (marker `deploy`): render k8s/ and oci/ offline and check the result."""

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from deploy_helpers import K8S, OKE_VARIANTS, OVERLAYS, kustomize, variant_dir  # noqa: E402


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/deploy/" in str(item.fspath):
            item.add_marker(pytest.mark.deploy)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, dict]:
    """Every overlay and variant: {"text": the YAML, "objects": the parsed objects}."""
    tmp_root = tmp_path_factory.mktemp("variants")
    sources = {name: K8S / "overlays" / name for name in OVERLAYS}
    sources.update({name: variant_dir(tmp_root, name) for name in OKE_VARIANTS})
    out = {}
    for name, directory in sources.items():
        text = kustomize(directory)
        out[name] = {"text": text, "objects": [d for d in yaml.safe_load_all(text) if d]}
    return out
