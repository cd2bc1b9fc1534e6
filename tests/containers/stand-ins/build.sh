#!/usr/bin/env bash
# Build the CI stand-ins for the upstream base images (podman; no registry here):
#   localhost/debian-base:bookworm               debootstrap, kept between runs
#   localhost/credit-risk-ci/python:3.11-bookworm  for python:3.11.x-slim-bookworm
#   localhost/credit-risk-ci/postgres:15-bookworm  for postgres:15.x-bookworm
# Re-running is cheap: unchanged layers come from the build cache.
# Usage: build.sh <podman|docker>
set -euo pipefail
engine=${1:?usage: build.sh <podman|docker>}
here=$(cd "$(dirname "$0")" && pwd)

"$here/debian-base.sh" "$engine"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$here"/python.Dockerfile "$here"/postgres.Dockerfile "$here"/postgres-entrypoint.sh \
  "$here"/docker-clean.conf "$context/"
# pip inside image builds trusts what this host trusts (see python.Dockerfile).
cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
format=()
[ "$engine" = podman ] && format=(--format docker)   # OCI images drop HEALTHCHECK
"$engine" build -q "${format[@]}" -t localhost/credit-risk-ci/python:3.11-bookworm \
  -f "$context/python.Dockerfile" "$context" >/dev/null
"$engine" build -q "${format[@]}" -t localhost/credit-risk-ci/postgres:15-bookworm \
  -f "$context/postgres.Dockerfile" "$context" >/dev/null
echo "stand-ins: built localhost/credit-risk-ci/{python:3.11-bookworm,postgres:15-bookworm}"
