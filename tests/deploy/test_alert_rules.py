"""The alert rules (k8s/components/alert-rules/alerts.rules.yml): valid, unit-tested with
`promtool test rules`, on metric names the code really exports, and shipped from one file to
Kubernetes and compose."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_helpers import ALL_RENDERINGS, REPO, compose_services

from common import facts

RULES = REPO / "k8s" / "components" / "alert-rules" / "alerts.rules.yml"
RULE_TESTS = Path(__file__).parent / "alerts" / "alerts.test.yml"
# Where each family of metrics is defined; the blackbox exporter's probe_* are its own.
METRIC_SOURCES = [
    REPO / "serving" / "metrics.py",
    REPO / "serving" / "decisions" / "log.py",
    REPO / "serving" / "shadow.py",
    REPO / "training" / "monitor.py",
]
EXTERNAL_METRICS = {"probe_ssl_earliest_cert_expiry"}


def promtool() -> str:
    """$PROMTOOL, .local/promtool (make promtool), or promtool on PATH; fails with the fix."""
    candidates = [
        os.environ.get("PROMTOOL"),
        str(REPO / ".local" / "promtool" / "usr" / "bin" / "promtool"),
        shutil.which("promtool"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("promtool is not installed: run `make promtool` (Debian's prometheus package)")


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_rules_are_valid():
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_unit_tests_pass():
    result = run_promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_test_that_fires_it():
    alerts = {
        rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }  # fmt: skip
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == fired


def test_rules_use_metrics_the_code_exports():
    text = RULES.read_text()
    used = set(re.findall(r"\b((?:model_server|model_drift|probe)_[a-z_]+)\b", text))
    source = "\n".join(path.read_text() for path in METRIC_SOURCES if path.exists())
    for name in used - EXTERNAL_METRICS:
        # Counters are exported with _total; histograms with _bucket (prometheus_client).
        base = re.sub(r"_(total|bucket)$", "", name)
        assert f'"{base}' in source, f"{name}: no metric of that name in {METRIC_SOURCES}"


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_kubernetes_ships_the_file_itself(rendered, name):
    objects = rendered[name]["objects"]
    [configmap] = [
        o for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("alert-rules")
    ]  # fmt: skip
    assert configmap["data"] == {"alerts.rules.yml": RULES.read_text()}


def test_compose_prometheus_mounts_the_same_file_and_scrapes_the_model_server():
    services = compose_services()
    prometheus = services["prometheus"]
    mounts = [m.split(":") for m in prometheus["volumes"] if isinstance(m, str)]
    [(source, target, _mode)] = [m for m in mounts if m[0].endswith(".yml")]
    assert (REPO / source).resolve() == RULES
    config_text = yaml.safe_load((REPO / "docker-compose.yml").read_text())["configs"][
        "prometheus-config"
    ]["content"]
    config = yaml.safe_load(config_text)
    assert config["rule_files"] == [target]
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"model-server:{facts.MODEL_SERVER_PORT}"]
    assert "profiles" in prometheus and not prometheus.get("ports")


def test_monitor_pushes_the_threshold_the_drift_rule_compares_with():
    """ModelInputDrift compares with model_drift_psi_threshold{level="act"}: the monitor
    pushes its own MONITOR_PSI_ACT under that name, so the threshold has one owner."""
    text = RULES.read_text()
    assert 'model_drift_psi_threshold{level="act"}' in text
    assert not re.search(r"model_drift_psi\)?\s*>=?\s*0\.\d", text), "a copied PSI threshold"
    monitor = (REPO / "training" / "monitor.py").read_text()
    assert 'threshold.labels(report.model_name, "act").set(settings.psi_act)' in monitor
