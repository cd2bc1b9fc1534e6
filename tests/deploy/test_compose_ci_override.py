"""The CI override swaps the base image of every service that builds one (no registry in CI).

A service added to docker-compose.yml with a `build:` but without its BASE_IMAGE override in
tests/containers/compose.ci.yml makes the container check pull from Docker Hub and fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.deploy
ROOT = Path(__file__).resolve().parents[2]


def test_every_built_service_has_its_base_image_swapped():
    stack = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    override = yaml.safe_load((ROOT / "tests/containers/compose.ci.yml").read_text())["services"]
    built = {name for name, service in stack.items() if "build" in service}
    assert built, "docker-compose.yml builds no image"
    missing = sorted(
        name
        for name in built
        if "BASE_IMAGE" not in (override.get(name, {}).get("build", {}).get("args") or {})
    )
    assert not missing, f"compose.ci.yml does not swap BASE_IMAGE for: {missing}"
    pulled = {
        name
        for name, service in stack.items()
        if "build" not in service and "image" in service and not service.get("profiles")
    }
    assert pulled - set(override) == set(), f"upstream images not swapped: {pulled - set(override)}"
