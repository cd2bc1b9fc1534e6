#!/bin/sh
# The gateway's start, check and reload commands: the one place that says how nginx runs, for
# the native stack (stack/local.py), the image (nginx/Dockerfile), Kubernetes
# (k8s/scripts/reload-gateway.sh), the API key CLI (nginx/keys.py) and the tests.
#
#   nginx/gateway.sh start    render the configuration (render.sh), then run nginx in the foreground
#   nginx/gateway.sh check    check the rendered configuration (nginx -t)
#   nginx/gateway.sh reload   check, then reload gracefully: old workers finish their requests
#
# GATEWAY_RUNTIME_DIR is the rendered configuration's directory (the image sets /tmp/nginx).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${GATEWAY_RUNTIME_DIR:?set GATEWAY_RUNTIME_DIR to the rendered configuration directory}"
# -e stderr: before the rendered config is read, nginx would open its compiled-in log path.
nginx_in_runtime() { nginx -e stderr -p "$GATEWAY_RUNTIME_DIR" -c "$GATEWAY_RUNTIME_DIR/nginx.conf" "$@"; }
case "${1:-}" in
  # exec: nginx becomes this process (PID 1 in a container) and gets the stop signals itself.
  start)  "$here/render.sh"
          exec nginx -e stderr -p "$GATEWAY_RUNTIME_DIR" -c "$GATEWAY_RUNTIME_DIR/nginx.conf" \
            -g 'daemon off;' ;;
  check)  nginx_in_runtime -q -t ;;
  reload) nginx_in_runtime -q -t && nginx_in_runtime -s reload ;;
  *) echo "usage: $0 start|check|reload" >&2; exit 2 ;;
esac
