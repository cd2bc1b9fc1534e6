"""Run inside the MLflow pod by create-mlflow-users.sh: create users, grant the trainer EDIT.

Reads the model name, then username/password pairs (reader, then trainer) from stdin; the
admin password is the pod's MLFLOW_AUTH_ADMIN_PASSWORD.
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.request

BASE = "http://127.0.0.1:5000/api/2.0/mlflow"
ADMIN = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
TOKEN = base64.b64encode(f"{ADMIN}:{os.environ['MLFLOW_AUTH_ADMIN_PASSWORD']}".encode()).decode()


def call(path, body):
    request = urllib.request.Request(  # noqa: S310 - fixed loopback URL
        f"{BASE}/{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Basic {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            return "created"
    except urllib.error.HTTPError as error:
        if error.code in (400, 409) and b"RESOURCE_ALREADY_EXISTS" in error.read():
            return "exists"
        raise


model, reader, reader_pw, trainer, trainer_pw = sys.stdin.read().splitlines()[:5]
print("reader user:", call("users/create", {"username": reader, "password": reader_pw}))
print("trainer user:", call("users/create", {"username": trainer, "password": trainer_pw}))
try:
    grant = {"name": model, "username": trainer, "permission": "EDIT"}
    print("trainer EDIT on", model, call("registered-models/permissions/create", grant))
except urllib.error.HTTPError as error:
    print(f"trainer EDIT on {model}: not granted ({error.code}); if the trainer registers the "
          "model first it owns it, otherwise run this again after the first version exists")
