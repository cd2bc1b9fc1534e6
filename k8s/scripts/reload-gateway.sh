#!/usr/bin/env bash
# After a Secret update: wait until every gateway pod sees the new file (the kubelet refreshes
# Secret volumes after its sync delay, up to ~1-2 minutes), then reload nginx gracefully in
# each pod (old workers finish their requests; no connection is dropped).
# Usage: reload-gateway.sh api-keys|tls
source "$(dirname "$0")/lib.sh"
case "${1:-}" in
  api-keys) local_file="$SECRETS_DIR/api-keys.map"; pod_file=/run/secrets/api-keys/api-keys.map ;;
  tls) local_file="$SECRETS_DIR/tls.crt"; pod_file=/run/secrets/tls/tls.crt ;;
  *) die "usage: $0 api-keys|tls" ;;
esac
need_file "$local_file"
expected="$(sha256sum < "$local_file")"
deadline=$((SECONDS + ${PROPAGATION_TIMEOUT:-300}))
for pod in $(kc get pods -l app.kubernetes.io/name=gateway -o name); do
  until [ "$(kc exec "$pod" -c gateway -- cat "$pod_file" | sha256sum)" = "$expected" ]; do
    [ $SECONDS -lt $deadline ] || die "$pod still has the old $pod_file; nothing reloaded there"
    sleep 5
  done
  # The image's own reload command (nginx/gateway.sh): check, then a graceful reload.
  kc exec "$pod" -c gateway -- /etc/nginx-gateway/gateway.sh reload
  echo "$pod: new $1 loaded"
done
