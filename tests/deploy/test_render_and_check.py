"""Every overlay renders, validates against the Kubernetes schemas, and passes checkov."""

import json
import subprocess

import pytest
from deploy_helpers import ALL_RENDERINGS, REPO, tool

# The oldest Kubernetes the manifests support (preStop `sleep` is on by default from 1.30;
# kubernetes-validate's oldest bundled schema here is 1.32) and a current one.
KUBERNETES_VERSIONS = ("1.32.0", "1.35.0")


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_renders_objects(rendered, name):
    kinds = {obj["kind"] for obj in rendered[name]["objects"]}
    assert {"Namespace", "Deployment", "Service", "NetworkPolicy", "CronJob"} <= kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_kubernetes_validate_strict(rendered, name, version, tmp_path):
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(rendered[name]["text"])
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", version, "--quiet", str(manifest)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def run_checkov(target_args: list[str]) -> dict:
    result = subprocess.run(
        [tool("checkov"), *target_args, "--config-file", str(REPO / "k8s" / ".checkov.yaml"),
         "--output", "json", "--compact"],
        capture_output=True, text=True, check=False, env={"BC_SKIP_MAPPING": "TRUE",
                                                          "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def failures(report: dict) -> list[str]:
    return [
        f"{check['check_id']} {check['resource']}: {check['check_name']}"
        for check in report.get("results", {}).get("failed_checks", [])
    ]


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_checkov_no_failed_check(rendered, name, tmp_path):
    (tmp_path / f"{name}.yaml").write_text(rendered[name]["text"])
    report = run_checkov(["-d", str(tmp_path), "--framework", "kubernetes"])
    assert report["summary"]["passed"] > 300
    assert failures(report) == []
    for skipped in report["results"].get("skipped_checks", []):
        assert skipped.get("suppress_comment"), f"{skipped['check_id']} skipped without reason"


def dockerfiles() -> list:
    ignored = {".venv", ".git", "node_modules", ".local"}
    return sorted(
        path for path in REPO.rglob("*Dockerfile*")
        if path.is_file() and not ignored & set(path.relative_to(REPO).parts)
    )  # fmt: skip


def test_checkov_dockerfiles():
    found = dockerfiles()
    assert found, "no Dockerfile found in the repository"
    for path in found:
        report = run_checkov(["-f", str(path), "--framework", "dockerfile"])
        assert failures(report) == [], path
