#!/usr/bin/env bash
# Undo the last rollout of a Deployment (image, settings or a pin): default model-server.
# Usage: rollback.sh [deployment] [--to-revision=N]
source "$(dirname "$0")/lib.sh"
deployment="${1:-model-server}"
shift || true
kc rollout undo "deployment/$deployment" "$@"
kc rollout status "deployment/$deployment" --timeout=10m
