"""The alert rules evaluated live by a real Prometheus, on the exporters they depend on.

`promtool test rules` (tests/deploy/test_alert_rules.py) checks the rules on series it is
given; this test checks the part it cannot: that the series really arrive under those names
and labels. Real processes on 127.0.0.1, all from Debian's packages (`make prometheus-tools`):
Prometheus with the project's rules file and the compose scrape configuration
(k8s/components/alert-rules/prometheus.compose.yml, addresses and intervals replaced), the
Pushgateway, fed by training/monitor.py's own push, and the blackbox exporter with the
project's probe modules (blackbox.yml), probing two real gateways (nginx with the project's
configuration): one with a certificate that expires in 10 days, one with certs.sh's 90 days.

CertificateExpiresSoon has `for: 1h`: the test checks it turns *pending* (the expression holds
and Prometheus has started the hour), not that it fires an hour later; promtool's test covers
the `for:` part. The drift rules have no `for:`, so they fire at the next evaluation.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from stack.services import (
    ROOT,
    Gateway,
    Process,
    free_port,
    http_ok,
    keys_cli,
    make_certs,
    wait_until,
)
from training.data import NUMERIC_COLUMNS, builtin_data
from training.drift import column_bins
from training.monitor import MonitorSettings, Report, push_gauges

COMPONENT = ROOT / "k8s" / "components" / "alert-rules"
RULES = COMPONENT / "alerts.rules.yml"
BLACKBOX_CONFIG = COMPONENT / "blackbox.yml"
PROMETHEUS_CONFIG = COMPONENT / "prometheus.compose.yml"
SHORT_LIVED_DAYS = 10
# Fast enough that a test takes seconds, slow enough for two cores: a scrape every second.
INTERVAL = "1s"
DEADLINE = 60


def binary(name: str) -> str:
    folder = Path(os.environ.get("PROMETHEUS_BIN_DIR", ROOT / ".local/prometheus/usr/bin"))
    path = folder / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make prometheus-tools` (Debian's packages, unpacked)")
    return str(path)


def pushgateway_assets() -> Path:
    """The Pushgateway's page templates, unpacked beside its binary (usr/share/prometheus)."""
    return Path(binary("prometheus-pushgateway")).parents[1] / "share/prometheus/pushgateway"


def short_lived_certificate(directory: Path, days: int) -> Path:
    """A self-signed server certificate valid for `days` (the probe reads, not trusts, it)."""
    directory.mkdir(parents=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", str(days), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(directory / "server.key"), "-out", str(directory / "server.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    return directory


def live_config(pushgateway: str, blackbox: str, gateways: list[str]) -> dict:
    """The compose configuration with this test's addresses and intervals: same jobs, same
    relabelling, same honor_labels. A job added to compose fails here until the test runs it."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"model-server", "pushgateway", "gateway-certificate"}, sorted(jobs)
    config["global"] = {
        "scrape_interval": INTERVAL,
        "scrape_timeout": INTERVAL,
        "evaluation_interval": INTERVAL,
    }
    config["rule_files"] = [str(RULES)]
    jobs["pushgateway"]["static_configs"] = [{"targets": [pushgateway]}]
    probe = jobs["gateway-certificate"]
    probe["static_configs"] = [{"targets": gateways}]
    [address] = [r for r in probe["relabel_configs"] if r.get("target_label") == "__address__"]
    address["replacement"] = blackbox
    # The model server's alerts are promtool's tests; no model server runs here.
    config["scrape_configs"] = [jobs["pushgateway"], probe]
    return config


@dataclass
class Monitoring:
    prometheus: str
    pushgateway: str
    expiring: str
    """The `instance` (probe target) of the gateway whose certificate expires soon."""
    current: str
    """The `instance` of the gateway with certs.sh's certificate (90 days)."""

    def api(self, path: str, **params) -> dict:
        answer = requests.get(f"{self.prometheus}/api/v1/{path}", params=params, timeout=5)
        answer.raise_for_status()
        return answer.json()["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def alerts(self, name: str) -> list[dict]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def group(self, name: str) -> dict:
        [group] = [g for g in self.api("rules")["groups"] if g["name"] == name]
        return group

    def evaluated_since(self, group: str, moment: datetime) -> bool:
        """The rule group has been evaluated after `moment` (Prometheus' RFC 3339 time)."""
        last = self.group(group)["lastEvaluation"]
        # Nanoseconds and a Z or an offset: datetime takes microseconds.
        seconds, fraction, zone = re.fullmatch(r"([^.]+?)(?:\.(\d+))?(Z|[+-][\d:]+)", last).groups()
        iso = f"{seconds}.{(fraction or '0')[:6]:0<6}{'+00:00' if zone == 'Z' else zone}"
        return datetime.fromisoformat(iso) > moment


def start(command: list[str], log: Path, ready_url: str, what: str) -> Process:
    process = Process(command, log)
    wait_until(http_ok(ready_url), DEADLINE, what, process.popen, log)
    return process


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory):
    work = tmp_path_factory.mktemp("alerts")
    processes: list = []
    try:
        keys = work / "api-keys.map"
        keys_cli(keys, work / "keys-runtime", "--no-reload", "create", "probe-test")
        gateways = []
        for name, tls in (
            ("expiring", short_lived_certificate(work / "tls-expiring", SHORT_LIVED_DAYS)),
            ("current", make_certs(work / "tls-current")),
        ):
            # No model server behind it: the probe is a TLS handshake only (blackbox.yml).
            gateway = Gateway(
                work / name, tls, keys, f"127.0.0.1:{free_port()}",
                GATEWAY_LISTEN_ADDRESS="127.0.0.1",
            ).start()  # fmt: skip
            processes.append(gateway)
            gateways.append(f"127.0.0.1:{gateway.https_port}")

        pushgateway_port = free_port()
        processes.append(
            start(
                [
                    binary("prometheus-pushgateway"),
                    f"--web.listen-address=127.0.0.1:{pushgateway_port}",
                    "--persistence.file=",  # in memory: nothing written outside the test
                    f"--web.local-assets={pushgateway_assets()}",
                ],
                work / "pushgateway.log",
                f"http://127.0.0.1:{pushgateway_port}/-/ready",
                "pushgateway ready",
            )  # fmt: skip
        )
        blackbox_port = free_port()
        processes.append(
            start(
                [
                    binary("prometheus-blackbox-exporter"),
                    f"--config.file={BLACKBOX_CONFIG}",
                    f"--web.listen-address=127.0.0.1:{blackbox_port}",
                ],
                work / "blackbox.log",
                f"http://127.0.0.1:{blackbox_port}/-/healthy",
                "blackbox exporter ready",
            )  # fmt: skip
        )
        config = work / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                live_config(f"127.0.0.1:{pushgateway_port}", f"127.0.0.1:{blackbox_port}", gateways)
            )
        )
        prometheus_port = free_port()
        processes.append(
            start(
                [
                    binary("prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={work / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                ],
                work / "prometheus.log",
                f"http://127.0.0.1:{prometheus_port}/-/ready",
                "prometheus ready",
            )  # fmt: skip
        )
        yield Monitoring(
            prometheus=f"http://127.0.0.1:{prometheus_port}",
            pushgateway=f"http://127.0.0.1:{pushgateway_port}",
            expiring=gateways[0],
            current=gateways[1],
        )
    finally:
        for process in reversed(processes):
            process.stop()


def test_prometheus_loads_the_projects_rules_file(monitoring):
    groups = monitoring.api("rules")["groups"]
    assert {g["file"] for g in groups} == {str(RULES)}
    loaded = {r["name"] for g in groups for r in g["rules"]}
    written = {
        rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }  # fmt: skip
    assert loaded == written


def test_certificate_expiring_in_10_days_turns_the_alert_pending(monitoring):
    """The blackbox probe of the 10-day gateway makes CertificateExpiresSoon pending (its
    `for: 1h` running); the 90-day gateway, probed by the same job, raises nothing."""

    def days_left() -> dict[str, float]:
        expr = "(probe_ssl_earliest_cert_expiry - time()) / 86400"
        return {r["metric"]["instance"]: float(r["value"][1]) for r in monitoring.query(expr)}

    wait_until(lambda: len(days_left()) == 2, DEADLINE, "both certificates probed")
    seen = datetime.now(UTC)
    left = days_left()
    assert SHORT_LIVED_DAYS - 1 < left[monitoring.expiring] <= SHORT_LIVED_DAYS, left
    assert left[monitoring.current] > 21, left

    def pending() -> list[dict]:
        return monitoring.alerts("CertificateExpiresSoon")

    wait_until(lambda: pending(), DEADLINE, "CertificateExpiresSoon pending")
    wait_until(lambda: monitoring.evaluated_since("credit-risk-gateway", seen), DEADLINE, "eval")
    [alert] = pending()
    assert alert["labels"]["instance"] == monitoring.expiring
    assert alert["state"] == "pending"
    assert monitoring.expiring in alert["annotations"]["summary"]
    [rule] = monitoring.group("credit-risk-gateway")["rules"]
    assert rule["duration"] == 3600  # why it is pending, not firing: `for: 1h`


def drift_report(column: str, shift: float, model_name: str = "credit-risk", end=None) -> Report:
    """A report of one input column, its live values shifted by `shift` standard deviations,
    binned and scored by the monitor's own PSI (training/drift.py)."""
    frame = builtin_data(4000, seed=3).frame
    reference, live = frame.iloc[:2000], frame.iloc[2000:]
    values = live[column] + shift * reference[column].std()
    end = end or datetime.now(UTC)
    return Report(
        model_name=model_name,
        version="3",
        start=end - timedelta(hours=24),
        end=end,
        rows=len(live),
        reference_rows=len(reference),
        bins={column: column_bins(reference[column], values)},
    )


def pushed(monitoring: Monitoring, report: Report) -> bool:
    """Prometheus has scraped this report's PSI from the Pushgateway."""
    [(column, psi)] = report.psi.items()
    result = monitoring.query(
        f'model_drift_psi{{model_name="{report.model_name}", column="{column}"}}'
    )
    return len(result) == 1 and math.isclose(float(result[0]["value"][1]), psi, rel_tol=1e-6)


def drift_alerts(monitoring: Monitoring, model_name: str) -> list[dict]:
    return [
        a for a in monitoring.alerts("ModelInputDrift") if a["labels"]["model_name"] == model_name
    ]


def test_psi_above_the_act_threshold_fires_model_input_drift_and_below_does_not(monitoring):
    settings = MonitorSettings(pushgateway_url=monitoring.pushgateway)
    column = NUMERIC_COLUMNS[0]
    calm, drifted = drift_report(column, 0.0), drift_report(column, 1.0)
    assert calm.psi[column] < settings.psi_watch < settings.psi_act < drifted.psi[column]

    # Below: pushed, scraped, evaluated after the scrape, and no alert.
    push_gauges(calm, settings)
    wait_until(lambda: pushed(monitoring, calm), DEADLINE, "calm PSI scraped")
    seen = datetime.now(UTC)
    wait_until(lambda: monitoring.evaluated_since("credit-risk-drift", seen), DEADLINE, "eval")
    assert drift_alerts(monitoring, "credit-risk") == []
    threshold = monitoring.query('model_drift_psi_threshold{level="act"}')
    assert [float(r["value"][1]) for r in threshold] == [settings.psi_act]

    # Above: the same push, a shifted column: firing at once (no `for:`), for that column.
    push_gauges(drifted, settings)
    wait_until(lambda: drift_alerts(monitoring, "credit-risk"), DEADLINE, "ModelInputDrift")
    [alert] = drift_alerts(monitoring, "credit-risk")
    assert alert["state"] == "firing"
    assert alert["labels"]["column"] == column and alert["labels"]["model_version"] == "3"
    assert f"{drifted.psi[column]:.2f}" in alert["annotations"]["summary"]

    # Back below: the next report replaces the group on the Pushgateway, the alert resolves.
    push_gauges(calm, settings)
    wait_until(lambda: not drift_alerts(monitoring, "credit-risk"), DEADLINE, "drift resolved")


def test_a_report_older_than_two_days_fires_drift_report_missing(monitoring):
    settings = MonitorSettings(pushgateway_url=monitoring.pushgateway)
    old = datetime.now(UTC) - timedelta(days=3)
    fresh = drift_report(NUMERIC_COLUMNS[1], 0.0, model_name="credit-risk-fresh")
    stale = drift_report(NUMERIC_COLUMNS[1], 0.0, model_name="credit-risk-stale", end=old)
    push_gauges(fresh, settings)
    push_gauges(stale, settings)

    def missing() -> set[str]:
        return {a["labels"]["model_name"] for a in monitoring.alerts("DriftReportMissing")}

    wait_until(lambda: pushed(monitoring, fresh) and pushed(monitoring, stale), DEADLINE, "pushed")
    wait_until(lambda: missing() == {"credit-risk-stale"}, DEADLINE, "DriftReportMissing")
    seen = datetime.now(UTC)
    wait_until(lambda: monitoring.evaluated_since("credit-risk-drift", seen), DEADLINE, "eval")
    assert missing() == {"credit-risk-stale"}
