"""The compose stack end to end, only through the ports the gateway publishes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from stack.processes import wait_until

pytestmark = pytest.mark.containers

PREDICT_ONE = Path(__file__).parents[1] / "testdata" / "predict-one.json"
LONG_RUNNING = ("postgres", "mlflow", "model-server", "nginx")
ONE_SHOT = ("mlflow-migrate", "decisions-migrate", "trainer")
KEY_NAME = "containers-check"  # the API key run.sh creates


def test_one_shot_jobs_finished(stack):
    for service in ONE_SHOT:
        state = stack.inspect(service)["State"]
        assert state["Status"] == "exited", f"{service}: {state['Status']}"
        assert state["ExitCode"] == 0, (
            f"{service} exited {state['ExitCode']}:\n" + stack.run("logs", service).stdout[-2000:]
        )


def test_model_server_ready(stack):
    assert stack.healthy("model-server")


@pytest.mark.parametrize("service", LONG_RUNNING + ONE_SHOT)
def test_runs_as_non_root_on_read_only_root(stack, service):
    info = stack.inspect(service)
    user = info["Config"].get("User") or "root"
    assert user.split(":")[0] not in {"", "0", "root"}, f"{service} runs as {user!r}"
    assert info["HostConfig"]["ReadonlyRootfs"] is True


@pytest.mark.parametrize("service", LONG_RUNNING + ONE_SHOT)
def test_no_secret_in_the_container_definition(stack, service):
    """Secrets reach the services as files (compose `secrets:`): what `inspect` shows of the
    container (environment, command, labels) holds none of them."""
    folder = Path(os.environ["COMPOSE_SECRETS_DIR"])
    secrets = [path.read_text().strip() for path in sorted(folder.iterdir())]
    assert len(secrets) >= 5 and all(len(secret) >= 24 for secret in secrets)
    info = stack.inspect(service)
    shown = json.dumps({"config": info["Config"], "args": info.get("Args")})
    leaked = [path.name for path, secret in zip(sorted(folder.iterdir()), secrets, strict=True)
              if secret in shown]  # fmt: skip
    assert not leaked, f"{service}: {leaked} visible in inspect"


def test_prediction_over_https_with_key(stack):
    response = requests.post(
        f"{stack.https}/invocations",
        data=PREDICT_ONE.read_bytes(),
        headers={"Content-Type": "application/json", "X-API-Key": stack.api_key},
        verify=stack.ca_file,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"].isdigit()
    predictions = response.json()["predictions"]
    assert len(predictions) == len(json.loads(PREDICT_ONE.read_text())["dataframe_records"])
    assert 0.0 <= predictions[0]["probability"] <= 1.0


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "not-a-key"}])
def test_prediction_without_valid_key_is_401(stack, headers):
    response = requests.post(
        f"{stack.https}/invocations",
        data=PREDICT_ONE.read_bytes(),
        headers={"Content-Type": "application/json", **headers},
        verify=stack.ca_file,
        timeout=30,
    )
    assert response.status_code == 401
    assert "X-Model-Version" not in response.headers


@pytest.mark.parametrize("auth", [None, ("admin", "wrong-password-123")])
def test_mlflow_ui_refuses_unauthenticated(stack, auth):
    response = requests.get(
        f"{stack.mlflow_ui}/api/2.0/mlflow/registered-models/search",
        auth=auth,
        verify=stack.ca_file,
        timeout=30,
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_model_server_user_reads_but_cannot_write(stack):
    auth = (
        "model-server",
        (Path(os.environ["COMPOSE_SECRETS_DIR"]) / "mlflow-model-server-password")
        .read_text()
        .strip(),
    )
    base = f"{stack.mlflow_ui}/api/2.0/mlflow"
    found = requests.get(
        f"{base}/registered-models/alias",
        params={"name": "credit-risk", "alias": "champion"},
        auth=auth,
        verify=stack.ca_file,
        timeout=30,
    )
    assert found.status_code == 200, found.text
    moved = requests.post(
        f"{base}/registered-models/alias",
        json={"name": "credit-risk", "alias": "champion", "version": "1"},
        auth=auth,
        verify=stack.ca_file,
        timeout=30,
    )
    assert moved.status_code == 403, moved.text


def model_server_image() -> str:
    return f"{os.environ['CONTAINERS_IMAGE_PREFIX']}/model-server:{os.environ['IMAGE_TAG']}"


def test_model_server_image_holds_only_what_serving_needs(stack):
    """Issue 14's budget: at most 600 MB on the stand-in base; no pyarrow unless PARQUET=1."""
    size = int(
        subprocess.run(
            [stack.engine, "image", "inspect", "--format", "{{.Size}}", model_server_image()],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()
    )  # fmt: skip
    assert size <= 600 * 10**6, f"model-server image is {size / 10**6:.0f} MB"
    probe = subprocess.run(
        [stack.engine, "run", "--rm", "--read-only", "--entrypoint", "python",
         model_server_image(), "-c",
         "import importlib.util as u; "
         "print(u.find_spec('pyarrow') is None, u.find_spec('matplotlib') is None, "
         "u.find_spec('psycopg') is not None)"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    # psycopg stays: the decision log writes to PostgreSQL.
    assert probe.stdout.split() == ["True", "True", "True"], probe.stdout


def test_parquet_without_pyarrow_stops_the_server_in_one_line(stack):
    result = subprocess.run(
        [stack.engine, "run", "--rm", "--read-only", "-e", "SERVING_ACCEPT_PARQUET=true",
         "--entrypoint", "python", model_server_image(), "-c",
         "from serving.settings import load_settings; load_settings()"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "SERVING_ACCEPT_PARQUET" in result.stderr and "PARQUET=1" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def decisions_sql(stack, statement: str) -> str:
    """A statement on the decision log's database as its owner (psql on PostgreSQL's own socket,
    inside its container; nothing is published)."""
    result = stack.run(
        "exec", "-T", "postgres", "psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", "mlflow",
        "-d", "decisions", "-tAc", statement,
    )  # fmt: skip
    assert result.returncode == 0, f"psql failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip()


def test_a_keyed_prediction_is_in_the_decision_log(stack):
    """The model server writes every scored row to PostgreSQL (DECISIONS_MODE full by default),
    with the request id the gateway passed on, the API key's name, the model version it
    answered with, and the inputs as sent."""
    request_id = f"containers-{uuid.uuid4().hex}"
    records = json.loads(PREDICT_ONE.read_text())["dataframe_records"]
    response = requests.post(
        f"{stack.https}/invocations",
        data=PREDICT_ONE.read_bytes(),
        headers={"Content-Type": "application/json", "X-API-Key": stack.api_key,
                 "X-Request-ID": request_id},
        verify=stack.ca_file,
        timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    # The id is this test's own token (letters, digits, -), so quoting it inline is safe.
    columns = "row_index, key_name, model_version, role, input_mode, inputs->>'annual_income'"
    query = f"select {columns} from decisions where request_id = '{request_id}' order by 1"  # noqa: S608
    # The writer stores batches every DECISIONS_FLUSH_INTERVAL (1 s) off the request path.
    wait_until(
        lambda: len(decisions_sql(stack, query).splitlines()) == len(records),
        timeout=60,
        what=f"{len(records)} decision rows of request {request_id}",
    )
    rows = [line.split("|") for line in decisions_sql(stack, query).splitlines()]
    version = response.headers["X-Model-Version"]
    assert rows == [
        [str(i), KEY_NAME, version, "champion", "full", str(record["annual_income"])]
        for i, record in enumerate(records)
    ]


# Run in the model server's own container with its own settings (the writer role's URI and
# password file, serving/__main__.py reads the file the same way): what that role may do.
WRITER_PROBE = """
import os, psycopg
from common.secret_files import read_secret_files
from serving.decisions.settings import SECRET_VARIABLES, load_decision_settings
read_secret_files(SECRET_VARIABLES)
s = load_decision_settings()
with psycopg.connect(s.store_uri.get_secret_value(), autocommit=True,
                     password=s.store_password.get_secret_value()) as conn:
    print("user", conn.info.user)
    for name, statement in [
        ("select", "select count(*) from decisions"),
        ("delete", "delete from decisions"),
        ("update", "update decisions set key_name = 'x'"),
        ("truncate", "truncate decisions"),
        ("create", "create table writer_probe (x int)"),
    ]:
        try:
            conn.execute(statement)
            print(name, "allowed")
        except psycopg.errors.InsufficientPrivilege:
            print(name, "denied")
"""


def test_the_model_servers_database_role_may_only_insert(stack):
    before = decisions_sql(stack, "select count(*) from decisions")
    result = stack.run("exec", "-T", "model-server", "python", "-c", WRITER_PROBE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == [
        "user decisions_writer",
        "select denied",
        "delete denied",
        "update denied",
        "truncate denied",
        "create denied",
    ], result.stdout
    assert decisions_sql(stack, "select count(*) from decisions") == before
    grants = decisions_sql(
        stack,
        "select privilege_type from information_schema.role_table_grants"
        " where grantee = 'decisions_writer' order by 1",
    )
    assert grants.split() == ["INSERT"]


def test_decisions_prune_runs_as_the_owner(stack):
    """The retention one-shot (profile `prune`, run from cron) deletes nothing younger than
    DECISIONS_RETENTION_DAYS and exits 0; its owner role may delete, unlike the server's."""
    before = decisions_sql(stack, "select count(*) from decisions")
    result = stack.run("run", "--rm", "decisions-prune", timeout=300)
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert "decision log: deleted 0 rows older than" in result.stdout
    assert decisions_sql(stack, "select count(*) from decisions") == before
