"""The tracking server's request check: MLflow's basic auth, plus who may create.

MLflow lets every signed-in user create experiments and registered models, whatever
`default_permission` says, and a wildcard DENY grant would also hide the one model a reader
must see (a DENY wins over a specific READ). So the basic-auth ini names this function as its
`authorization_function` (tracking/server.py writes it): it authenticates exactly as MLflow
does, then answers 403, MLflow's own "Permission denied", to a create from a user outside the
`creators` of the ini's [stack] section (the admin and the trainer). The model server can
then only read. Runs inside the `mlflow server` workers, before MLflow's own permission checks.
"""

from __future__ import annotations

import configparser
import functools
import os
import re

SECTION = "stack"
# The create routes of the REST API and of the UI's ajax API, any version.
_CREATE = re.compile(r"^/(ajax-)?api/[0-9.]+/mlflow/(experiments|registered-models)/create$")


@functools.cache
def creators() -> frozenset[str]:
    """The users allowed to create, from the ini MLflow itself reads (MLFLOW_AUTH_CONFIG_PATH)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.environ.get("MLFLOW_AUTH_CONFIG_PATH", ""))
    names = parser.get(SECTION, "creators", fallback="")
    return frozenset(name.strip() for name in names.split(",") if name.strip())


def may_create(username: str, method: str, path: str) -> bool:
    """False for a create request by a user who is not one of the creators."""
    return not (method == "POST" and _CREATE.match(path)) or username in creators()


def authenticate_request():
    """MLflow's basic auth; then 403 for a create by anyone but the creators."""
    from flask import request
    from mlflow.server.auth import authenticate_request_basic_auth, make_forbidden_response

    authorization = authenticate_request_basic_auth()
    username = getattr(authorization, "username", None)
    if username is not None and not may_create(username, request.method, request.path):
        return make_forbidden_response()
    return authorization
