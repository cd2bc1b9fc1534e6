#!/usr/bin/env bash
# Create the registry users in MLflow's basic-auth store, as the admin, from inside the MLflow
# pod: the model server's read-only user and the trainer's user (EDIT on the model).
# Passwords travel on stdin, never on a command line.
source "$(dirname "$0")/lib.sh"
for f in model-server-registry/username model-server-registry/password \
         trainer-registry/username trainer-registry/password; do need_file "$SECRETS_DIR/$f"; done
{
  printf '%s\n' "$MODEL_NAME"
  cat "$SECRETS_DIR/model-server-registry/username"; echo
  cat "$SECRETS_DIR/model-server-registry/password"; echo
  cat "$SECRETS_DIR/trainer-registry/username"; echo
  cat "$SECRETS_DIR/trainer-registry/password"; echo
} | kc exec -i deployment/mlflow -c mlflow -- python -c "$(cat "$(dirname "$0")/mlflow_users.py")"
