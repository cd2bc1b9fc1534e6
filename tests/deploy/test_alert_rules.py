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

COMPONENT = REPO / "k8s" / "components" / "alert-rules"
RULES = COMPONENT / "alerts.rules.yml"
BLACKBOX = COMPONENT / "blackbox.yml"
COMPOSE_PROMETHEUS = COMPONENT / "prometheus.compose.yml"
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
    """$PROMTOOL, .local/prometheus (make prometheus-tools), or on PATH; fails with the fix."""
    candidates = [
        os.environ.get("PROMTOOL"),
        str(REPO / ".local" / "prometheus" / "usr" / "bin" / "promtool"),
        shutil.which("promtool"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("promtool is not installed: run `make prometheus-tools` (Debian's packages)")


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
@pytest.mark.parametrize(
    ("configmap", "path"), [("alert-rules", RULES), ("blackbox-exporter", BLACKBOX)]
)
def test_kubernetes_ships_the_files_themselves(rendered, name, configmap, path):
    objects = rendered[name]["objects"]
    [shipped] = [
        o for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(f"{configmap}-")
    ]  # fmt: skip
    assert shipped["data"] == {path.name: path.read_text()}


def _mounts(service: dict) -> dict[Path, str]:
    """Bind mounts of a compose service: repository file -> path in the container."""
    out = {}
    for mount in service.get("volumes", []):
        source, target, *_mode = mount.split(":")
        if source.startswith("./"):
            out[(REPO / source).resolve()] = target
    return out


def test_compose_prometheus_mounts_the_same_files_and_scrapes_the_stack():
    """The compose Prometheus loads the rules file Kubernetes ships and the scrape file the
    live test runs; its targets are compose's services on the ports of common/facts.py and
    of the exporters' services."""
    services = compose_services()
    prometheus = services["prometheus"]
    mounts = _mounts(prometheus)
    assert mounts[COMPOSE_PROMETHEUS] == "/etc/prometheus/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load(COMPOSE_PROMETHEUS.read_text())
    assert config["rule_files"] == [mounts[RULES]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {name: job["static_configs"][0]["targets"] for name, job in jobs.items()}
    assert targets["model-server"] == [f"model-server:{facts.MODEL_SERVER_PORT}"]
    assert targets["gateway-certificate"] == [f"nginx:{facts.GATEWAY_HTTPS_PORT}"]
    assert targets["pushgateway"] == ["pushgateway:9091"]
    # Pushed labels (job, model_name) kept as pushed: the Pushgateway's documented setting.
    assert jobs["pushgateway"]["honor_labels"] is True
    probe = jobs["gateway-certificate"]
    [module] = probe["params"]["module"]
    assert module in yaml.safe_load(BLACKBOX.read_text())["modules"]
    [address] = [r for r in probe["relabel_configs"] if r.get("target_label") == "__address__"]
    assert address["replacement"] == "blackbox-exporter:9115"
    for name in ("prometheus", "pushgateway", "blackbox-exporter"):
        service = services[name]
        assert service["profiles"] == ["monitoring"], name
        assert not service.get("ports"), f"{name} publishes a port"
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert service["user"] == "65534:65534", name  # nobody, never root
        assert re.fullmatch(r"prom/[a-z-]+:v\d+\.\d+\.\d+", service["image"]), name
        assert "backend" in service["networks"], name
    blackbox = services["blackbox-exporter"]
    [config_path] = [a.split("=", 1)[1] for a in blackbox["command"] if a.startswith("--config")]
    assert _mounts(blackbox)[BLACKBOX] == config_path
    monitor = services["monitor"]["environment"]
    assert monitor["MONITOR_PUSHGATEWAY_URL"] == (
        "${MONITOR_PUSHGATEWAY_URL:-http://" + targets["pushgateway"][0] + "}"
    )


def test_monitor_pushes_the_threshold_the_drift_rule_compares_with():
    """ModelInputDrift compares with model_drift_psi_threshold{level="act"}: the monitor
    pushes its own MONITOR_PSI_ACT under that name, so the threshold has one owner."""
    text = RULES.read_text()
    assert 'model_drift_psi_threshold{level="act"}' in text
    assert not re.search(r"model_drift_psi\)?\s*>=?\s*0\.\d", text), "a copied PSI threshold"
    monitor = (REPO / "training" / "monitor.py").read_text()
    assert 'threshold.labels(report.model_name, "act").set(settings.psi_act)' in monitor
