#!/usr/bin/env bash
# Apply an overlay (OVERLAY=oke|dev) and wait until MLflow and the gateway are rolled out.
# The model server becomes ready once a champion exists (k8s/scripts/train.sh on a new cluster).
source "$(dirname "$0")/lib.sh"
kubectl apply -k "$K8S_DIR/overlays/$OVERLAY"
kc rollout status deployment/mlflow --timeout=10m
kc rollout status deployment/gateway --timeout=5m
echo "applied overlays/$OVERLAY; model server: kubectl -n $NAMESPACE rollout status deployment/model-server"
