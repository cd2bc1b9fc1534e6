#!/usr/bin/env bash
# Pin every model server to one registry version (it then ignores @champion), or follow the
# alias again. A rolling update: new pods load the version before the old ones go.
# Usage: pin-version.sh <version> | pin-version.sh --follow
source "$(dirname "$0")/lib.sh"
case "${1:?usage: $0 <version>|--follow}" in
  --follow) kc set env deployment/model-server SERVING_MODEL_URI- ;;
  *[!0-9]*) die "version must be a number" ;;
  *) kc set env deployment/model-server "SERVING_MODEL_URI=models:/$MODEL_NAME/$1" ;;
esac
kc rollout status deployment/model-server --timeout=10m
