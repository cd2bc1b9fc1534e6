#!/usr/bin/env bash
# Create or update the Secrets from files in $SECRETS_DIR (idempotent: apply, not create).
# Usage: create-secrets.sh [all|tls|api-keys|mlflow|registry|decision-log|decisions-hash-key|object-storage|ocir|postgres]...
#   tls            tls.crt, tls.key                      -> gateway-tls (kubernetes.io/tls)
#   api-keys       api-keys.map                          -> gateway-api-keys
#   mlflow         mlflow/{backend-store-uri,flask-secret-key,admin-password}
#   registry       model-server-registry/{username,password}, trainer-registry/{username,password}
#                  (read by the MLflow pod too: it creates these users at every start)
#   decision-log   decision-log/store-uri                (postgresql://user:pw@host:5432/decisions, the owner)
#                  decision-log/writer-password          (the model server's INSERT-only role decisions_writer)
#                  decision-log/writer-store-uri         (postgresql://decisions_writer@host:5432/decisions)
#   decisions-hash-key decisions-hash-key/hash-key       (DECISIONS_MODE=hashed only: 32+ random bytes;
#                                                        `all` includes it when the file exists)
#   object-storage mlflow-object-storage/credentials     (OKE, Object Storage component)
#   ocir           ocir/{server,username,auth-token}     -> ocir-pull (OKE)
#   postgres       postgres/password                     (dev overlay)
source "$(dirname "$0")/lib.sh"
apply() { kc "$@" --dry-run=client -o yaml | kc apply -f -; }
generic() {  # generic <secret> <dir>: one key per file in the folder
  local name=$1 dir="$SECRETS_DIR/$2" args=() f
  [ -d "$dir" ] || die "missing folder $dir"
  for f in "$dir"/*; do need_file "$f"; args+=(--from-file="$(basename "$f")=$f"); done
  apply create secret generic "$name" "${args[@]}"
}
do_tls() {
  need_file "$SECRETS_DIR/tls.crt"; need_file "$SECRETS_DIR/tls.key"
  apply create secret tls gateway-tls --cert="$SECRETS_DIR/tls.crt" --key="$SECRETS_DIR/tls.key"
}
do_api_keys() {
  need_file "$SECRETS_DIR/api-keys.map"
  apply create secret generic gateway-api-keys --from-file=api-keys.map="$SECRETS_DIR/api-keys.map"
}
do_mlflow() { generic mlflow mlflow; }
do_registry() { generic model-server-registry model-server-registry; generic trainer-registry trainer-registry; }
do_decision_log() {  # the three keys the component reads (k8s/components/decision-log)
  local key
  for key in store-uri writer-password writer-store-uri; do need_file "$SECRETS_DIR/decision-log/$key"; done
  generic decision-log decision-log
}
do_decisions_hash_key() {  # the hashed mode's HMAC key (k8s/components/decision-log)
  local key="$SECRETS_DIR/decisions-hash-key/hash-key"
  need_file "$key"
  # The model server refuses a shorter key at start (serving/decisions/settings.py); say it here first.
  [ "$(tr -d '[:space:]' < "$key" | wc -c)" -ge 32 ] || die "$key: the key must hold 32 bytes or more (openssl rand -hex 32)"
  apply create secret generic decisions-hash-key --from-file=hash-key="$key"
}
do_object_storage() { generic mlflow-object-storage mlflow-object-storage; }
do_postgres() { generic postgres postgres; }
do_ocir() {
  local d="$SECRETS_DIR/ocir"
  need_file "$d/server"; need_file "$d/username"; need_file "$d/auth-token"
  apply create secret docker-registry ocir-pull --docker-server="$(cat "$d/server")" \
    --docker-username="$(cat "$d/username")" --docker-password="$(cat "$d/auth-token")"
}
targets=("${@:-all}")
if [ "${targets[0]}" = all ]; then
  targets=(tls api-keys mlflow registry decision-log)
  [ -f "$SECRETS_DIR/decisions-hash-key/hash-key" ] && targets+=(decisions-hash-key)
  [ "$OVERLAY" = oke ] && targets+=(ocir object-storage)
  [ "$OVERLAY" = dev ] && targets+=(postgres)
fi
for target in "${targets[@]}"; do
  case "$target" in
    tls) do_tls ;; api-keys) do_api_keys ;; mlflow) do_mlflow ;; registry) do_registry ;; decision-log) do_decision_log ;;
    decisions-hash-key) do_decisions_hash_key ;;
    object-storage) do_object_storage ;; ocir) do_ocir ;; postgres) do_postgres ;;
    *) die "unknown secret group '$target'" ;;
  esac
done
