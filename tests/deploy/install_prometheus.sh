#!/usr/bin/env bash
# Prometheus' binaries from Debian's packages, unpacked into DIR (default .local/prometheus):
#   prometheus                    promtool (the rules' unit tests, tests/deploy/test_alert_rules.py)
#                                 and the server (the live alert test, tests/integration/test_alerts_live.py)
#   prometheus-pushgateway        where training/monitor.py pushes the PSI gauges
#   prometheus-blackbox-exporter  the TLS probe behind CertificateExpiresSoon
# Unpacked rather than installed: installing the packages would also start each one as a
# system service (Prometheus on :9090, ...). `apt-get download` needs no root. Elsewhere: set
# PROMTOOL (2.42+) and PROMETHEUS_BIN_DIR (prometheus, prometheus-pushgateway,
# prometheus-blackbox-exporter) instead.
set -euo pipefail
dest=${1:-.local/prometheus}
packages=(prometheus prometheus-pushgateway prometheus-blackbox-exporter)
binaries=(promtool prometheus prometheus-pushgateway prometheus-blackbox-exporter)
complete=yes
for binary in "${binaries[@]}"; do [ -x "$dest/usr/bin/$binary" ] || complete=no; done
[ "$complete" = yes ] && exit 0
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || {
  echo "prometheus: no apt-get here; install ${packages[*]} and set PROMTOOL and PROMETHEUS_BIN_DIR"
  exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download -qq "${packages[@]}" 2>/dev/null); then
  echo "prometheus: 'apt-get download ${packages[*]}' failed; run 'sudo apt-get update' and retry"
  exit 1
fi
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
for package in "${packages[@]}"; do dpkg-deb -x "$tmp/${package}"_*.deb "$dest.partial"; done
rm -rf "$dest" && mv "$dest.partial" "$dest"   # nothing half-unpacked under the real name
for binary in prometheus prometheus-pushgateway prometheus-blackbox-exporter; do
  echo "prometheus: $("$dest/usr/bin/$binary" --version 2>&1 | head -1) in $dest"
done
