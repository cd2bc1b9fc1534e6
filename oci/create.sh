#!/usr/bin/env bash
# Create the container instance: read the secrets from OCI Vault into a private temporary
# folder, render the request from k8s/overlays/oke + instance.env, create, wait until ACTIVE.
# Usage: oci/create.sh [instance.env] [vault-secrets]     (prints the new instance's OCID)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
settings="${1:-$here/instance.env}"
vault_map="${2:-$here/vault-secrets}"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -s "$settings" ] || { echo "missing $settings: copy oci/instance.env.example" >&2; exit 1; }
[ -s "$vault_map" ] || { echo "missing $vault_map: copy oci/vault-secrets.example" >&2; exit 1; }
work="$(mktemp -d)"; chmod 700 "$work"
trap 'rm -rf "$work"' EXIT
while read -r path ocid; do
  case "$path" in ''|'#'*) continue ;; esac
  mkdir -p "$work/secrets/$(dirname "$path")"
  oci secrets secret-bundle get --secret-id "$ocid" \
    --query 'data."secret-bundle-content".content' --raw-output | base64 -d > "$work/secrets/$path"
done < "$vault_map"
"$python" "$here/render.py" --settings "$settings" --secrets-dir "$work/secrets" --output "$work/request.json"
oci container-instances container-instance create --from-json "file://$work/request.json" \
  --wait-for-state ACTIVE --wait-for-state FAILED --max-wait-seconds 900 \
  --query 'data.id' --raw-output
