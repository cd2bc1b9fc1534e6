#!/usr/bin/env bash
# `make images`: build the four images of the compose stack, with compose's own names and
# tags (docker-compose.yml: ${IMAGE_PREFIX}/{mlflow,trainer,model-server,gateway}:${IMAGE_TAG}).
# A plain build: no secrets, no stack, no tests (the container check is `make test-containers`).
#
#   make images                                   # Docker if an engine answers, else podman
#   IMAGE_PREFIX=fra.ocir.io/<ns>/credit-risk IMAGE_TAG=1.2.0 make images
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v docker >/dev/null && docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v podman >/dev/null && "${PY:-.venv/bin/python}" -c "import podman_compose" 2>/dev/null; then
  compose=("${PY:-.venv/bin/python}" -m podman_compose)
  export BUILDAH_FORMAT=docker   # OCI images would drop HEALTHCHECK
else
  echo "images: no container engine: start Docker (with the compose plugin) or install podman" >&2
  echo "        and podman-compose; tests/containers/README.md says how" >&2
  exit 1
fi
GIT_REVISION=${GIT_REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
export GIT_REVISION
# Only the services that build; postgres is an upstream image.
exec "${compose[@]}" -f docker-compose.yml build mlflow trainer model-server nginx
