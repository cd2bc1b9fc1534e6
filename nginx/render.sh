#!/bin/sh
# Render the gateway configuration into $GATEWAY_RUNTIME_DIR and check it with `nginx -t`.
#
#   GATEWAY_RUNTIME_DIR=/tmp/nginx TLS_CERT_FILE=... TLS_KEY_FILE=... API_KEYS_FILE=... nginx/render.sh
#
# Every file under nginx/ (nginx.conf, conf.d/, snippets/) goes through envsubst with exactly
# the variables below, so nginx's own $variables are left alone. The native stack, the
# container image and Kubernetes all run this script; only the environment differs.
set -eu
# GATEWAY_RENDER_ONLY=1 skips `nginx -t`, which resolves upstream host names: for checks of
# the rendered text only, such as the port plan of every deployment shape (stack/ports.py).

conf_dir=$(cd "$(dirname "$0")" && pwd)
: "${GATEWAY_RUNTIME_DIR:?set GATEWAY_RUNTIME_DIR to a writable directory}"
: "${TLS_CERT_FILE:?set TLS_CERT_FILE to the certificate (full chain) file; make certs creates one}"
: "${TLS_KEY_FILE:?set TLS_KEY_FILE to the private key file}"
: "${API_KEYS_FILE:?set API_KEYS_FILE to the API keys file; make keys creates one}"
# nginx resolves relative paths against its prefix, not the caller's directory.
mkdir -p "$GATEWAY_RUNTIME_DIR"
GATEWAY_RUNTIME_DIR=$(realpath "$GATEWAY_RUNTIME_DIR")
TLS_CERT_FILE=$(realpath -m "$TLS_CERT_FILE")
TLS_KEY_FILE=$(realpath -m "$TLS_KEY_FILE")
API_KEYS_FILE=$(realpath -m "$API_KEYS_FILE")
# Defaults shared with other components (ports, the body limit) come from nginx/defaults.env,
# generated from common/facts.py; a variable that is unset or empty takes its default there.
while IFS='=' read -r name value; do
  case "$name" in ''|\#*) continue ;; esac
  eval "current=\${$name:-}"
  [ -n "$current" ] || export "$name=$value"
done < "$conf_dir/defaults.env"
export GATEWAY_SERVER_NAME="${GATEWAY_SERVER_NAME:-localhost 127.0.0.1}"
export GATEWAY_PUBLIC_HTTPS_PORT="${GATEWAY_PUBLIC_HTTPS_PORT:-$GATEWAY_HTTPS_PORT}"
# Where the model server and MLflow are: a host name (a Service, a compose service) plus the
# port the facts give, or a whole address. MLflow's UI is served only when a host is named.
export MODEL_SERVER_ADDR="${MODEL_SERVER_ADDR:-${MODEL_SERVER_HOST:-127.0.0.1}:$MODEL_SERVER_PORT}"
if [ -n "${MLFLOW_HOST:-}" ]; then
  export MLFLOW_UPSTREAM="${MLFLOW_UPSTREAM:-$MLFLOW_HOST:$MLFLOW_PORT}"
fi
export GATEWAY_RATE_PER_KEY="${GATEWAY_RATE_PER_KEY:-100r/s}"
export GATEWAY_BURST_PER_KEY="${GATEWAY_BURST_PER_KEY:-200}"
export GATEWAY_RATE_PER_ADDRESS="${GATEWAY_RATE_PER_ADDRESS:-200r/s}"
export GATEWAY_BURST_PER_ADDRESS="${GATEWAY_BURST_PER_ADDRESS:-400}"
export GATEWAY_CLIENT_TIMEOUT="${GATEWAY_CLIENT_TIMEOUT:-5s}"
export GATEWAY_CONNECTIONS_PER_ADDRESS="${GATEWAY_CONNECTIONS_PER_ADDRESS:-256}"
export GATEWAY_STATIC_DIR="$(realpath -m "${GATEWAY_STATIC_DIR:-$conf_dir/../apex/generated}")"
export GATEWAY_ACCESS_LOG="${GATEWAY_ACCESS_LOG:-$GATEWAY_RUNTIME_DIR/access.log}"
export GATEWAY_ERROR_LOG="${GATEWAY_ERROR_LOG:-$GATEWAY_RUNTIME_DIR/error.log}"
export MLFLOW_UPSTREAM="${MLFLOW_UPSTREAM:-}"
export GATEWAY_RUNTIME_DIR TLS_CERT_FILE TLS_KEY_FILE API_KEYS_FILE
# nginx started as root keeps a root master and drops its workers to the `user` directive. The
# stack never starts it so (the native stack drops to an unprivileged user first, containers
# and Kubernetes run as uid 10001); a root caller such as a test harness gets workers running
# as the owner of the runtime directory, the one user that surely can write its temp files.
if [ "$(id -u)" = 0 ]; then
  export GATEWAY_USER_DIRECTIVE="user $(stat -c '%U %G' "$GATEWAY_RUNTIME_DIR");"
else
  export GATEWAY_USER_DIRECTIVE=""
fi
# Listening address: all of them (containers) or one, such as 127.0.0.1 (the native stack).
if [ -n "${GATEWAY_LISTEN_ADDRESS:-}" ]; then
  export GATEWAY_LISTEN_PREFIX="$GATEWAY_LISTEN_ADDRESS:"
else
  export GATEWAY_LISTEN_PREFIX=""
fi
# Keys must be exact-case regex entries (snippets/api-key-map.conf): a plain entry would match
# a key of any case. Files written before that format are refused with the way out.
if [ -r "$API_KEYS_FILE" ] && grep -Eq '^[[:space:]]*"[^~]' "$API_KEYS_FILE"; then
  echo "render.sh: $API_KEYS_FILE has plain (case-insensitive) key entries; rewrite it with: python nginx/keys.py --file $API_KEYS_FILE upgrade" >&2
  exit 1
fi
# 443 is implied by https://; any other public port must appear in redirects.
if [ "$GATEWAY_PUBLIC_HTTPS_PORT" = 443 ]; then
  export GATEWAY_PUBLIC_HTTPS_SUFFIX=""
else
  export GATEWAY_PUBLIC_HTTPS_SUFFIX=":$GATEWAY_PUBLIC_HTTPS_PORT"
fi

variables='${GATEWAY_RUNTIME_DIR} ${GATEWAY_HTTPS_PORT} ${GATEWAY_HTTP_PORT}
${GATEWAY_SERVER_NAME} ${GATEWAY_PUBLIC_HTTPS_SUFFIX} ${MODEL_SERVER_ADDR} ${TLS_CERT_FILE}
${TLS_KEY_FILE} ${API_KEYS_FILE} ${GATEWAY_MAX_BODY_SIZE} ${GATEWAY_UPSTREAM_TIMEOUT}
${GATEWAY_RATE_PER_KEY} ${GATEWAY_BURST_PER_KEY} ${GATEWAY_RATE_PER_ADDRESS}
${GATEWAY_BURST_PER_ADDRESS} ${GATEWAY_STATIC_DIR} ${GATEWAY_ACCESS_LOG} ${GATEWAY_ERROR_LOG}
${GATEWAY_MLFLOW_PORT} ${MLFLOW_UPSTREAM} ${GATEWAY_USER_DIRECTIVE} ${GATEWAY_LISTEN_PREFIX}
${GATEWAY_CLIENT_TIMEOUT} ${GATEWAY_CONNECTIONS_PER_ADDRESS}'

# Render into a fresh directory and swap it in, so a running nginx never sees half a config.
staging="$GATEWAY_RUNTIME_DIR/.render.$$"
rm -rf "$staging"
mkdir -p "$staging/conf.d" "$staging/snippets" "$GATEWAY_RUNTIME_DIR"
cd "$conf_dir"
for file in nginx.conf conf.d/*.conf snippets/*.conf; do
  case "$file" in
    conf.d/mlflow-ui.conf) [ -n "$MLFLOW_UPSTREAM" ] || continue ;;
  esac
  envsubst "$variables" < "$conf_dir/$file" > "$staging/$file"
done
for part in nginx.conf conf.d snippets; do
  rm -rf "${GATEWAY_RUNTIME_DIR:?}/$part"
  mv "$staging/$part" "$GATEWAY_RUNTIME_DIR/$part"
done
rmdir "$staging"
for temp in client_body proxy fastcgi uwsgi scgi; do
  mkdir -p "$GATEWAY_RUNTIME_DIR/$temp"
done
[ "${GATEWAY_RENDER_ONLY:-0}" = 1 ] || nginx -q -t -p "$GATEWAY_RUNTIME_DIR" -c "$GATEWAY_RUNTIME_DIR/nginx.conf" -e stderr
