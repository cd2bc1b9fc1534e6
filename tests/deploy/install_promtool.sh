#!/usr/bin/env bash
# promtool, from Debian's `prometheus` package, unpacked into DIR (default .local/promtool) for
# the alert rules' tests (tests/deploy/test_alert_rules.py). Unpacked rather than installed:
# installing the package would also start a Prometheus server on :9090 under systemd.
# `apt-get download` needs no root. Elsewhere: set PROMTOOL to a promtool 2.42 or newer.
set -euo pipefail
dest=${1:-.local/promtool}
[ -x "$dest/usr/bin/promtool" ] && exit 0
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || {
  echo "promtool: no apt-get here; install Prometheus' promtool (2.42+) and set PROMTOOL=/path/to/it"
  exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null); then
  echo "promtool: 'apt-get download prometheus' failed; run 'sudo apt-get update' and retry"
  exit 1
fi
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
dpkg-deb -x "$tmp"/prometheus_*.deb "$dest.partial"
rm -rf "$dest" && mv "$dest.partial" "$dest"   # nothing half-unpacked under the real name
echo "promtool: $("$dest/usr/bin/promtool" --version 2>&1 | head -1) in $dest"
