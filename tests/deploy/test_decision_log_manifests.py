"""The decision log's Kubernetes pieces (k8s/components/decision-log): the migration runs in
the mlflow pod before anything writes and creates the model server's INSERT-only role; the model
server writes as that role, from files of the Secret holding only its two keys, and reaches
PostgreSQL on 5432; the retention job prunes as the owner; the drift monitor reaches what it
reads and writes and nothing else, with the trainer's registry user and the store from a
Secret."""

import os
import re
from urllib.parse import urlsplit

import pytest
from deploy_helpers import ALL_RENDERINGS, K8S, compose_services, container_env, find, pod_templates
from test_manifests import allowed

from common import facts
from common.secret_files import read_secret_files
from serving.decisions.settings import SECRET_VARIABLES, DecisionSettings, InputMode
from training.monitor import MonitorSettings

WRITER_KEYS = {"writer-store-uri", "writer-password"}


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_migration_runs_after_mlflows_in_the_mlflow_pod(rendered, name):
    pod = find(rendered[name]["objects"], "Deployment", "mlflow")["spec"]["template"]["spec"]
    inits = {c["name"]: c for c in pod["initContainers"]}
    assert list(inits) == ["migrate", "decisions-migrate"]
    migrate = inits["decisions-migrate"]
    assert migrate["command"][:4] == ["python", "-m", "serving.decisions", "migrate"]
    assert "/credit-risk/trainer:" in migrate["image"] or migrate["image"].startswith(
        "credit-risk/trainer:"
    )
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in migrate["env"] if "valueFrom" in e}
    assert refs == {
        "DECISIONS_STORE_URI": {"name": "decision-log", "key": "store-uri"},
        # Set: `migrate` creates the writer role (or sets its password) after the table.
        "DECISIONS_WRITER_PASSWORD": {"name": "decision-log", "key": "writer-password"},
    }
    assert "DECISIONS_WRITER_PASSWORD" in SECRET_VARIABLES


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_monitor_cronjob(rendered, name, monkeypatch):
    objects = rendered[name]["objects"]
    cronjob = find(objects, "CronJob", "monitor")["spec"]
    assert cronjob["concurrencyPolicy"] == "Forbid" and not cronjob.get("suspend")
    pod = cronjob["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "training.monitor"]
    refs = {
        item["name"]: item["valueFrom"]["secretKeyRef"]["name"]
        for item in container["env"]
        if "valueFrom" in item
    }
    assert refs == {
        "MLFLOW_TRACKING_USERNAME": "trainer-registry",
        "MLFLOW_TRACKING_PASSWORD": "trainer-registry",
        "DECISIONS_STORE_URI": "decision-log",
    }
    env = container_env(objects, container)
    assert env["MLFLOW_TRACKING_URI"].startswith("http://mlflow:")
    for key, value in env.items():
        if key.startswith("MONITOR_") and value is not None:
            monkeypatch.setenv(key, value)
    MonitorSettings()  # whatever the overlay sets is a valid setting


@pytest.mark.parametrize("name", ["dev", "oke"])
def test_monitor_network(rendered, name):
    from common import facts

    objects = rendered[name]["objects"]
    assert allowed(objects, "monitor", "mlflow", facts.MLFLOW_PORT)
    database = "postgres" if name == "dev" else "external"
    assert allowed(objects, "monitor", database, 5432)
    assert not allowed(objects, "monitor", "model-server", facts.MODEL_SERVER_PORT)
    assert not allowed(objects, "gateway", "postgres", 5432)


def model_server(objects: list[dict]) -> tuple[dict, dict]:
    pod = find(objects, "Deployment", "model-server")["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == "model-server")


def secret_files(pod: dict, container: dict) -> dict[str, tuple[str, str]]:
    """Mounted Secret files of a container: path -> (secret, key)."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out = {}
    for mount in container.get("volumeMounts", []):
        # A mount without a pod volume is a StatefulSet's claim template: no Secret.
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret:
            assert mount.get("readOnly") is True, mount
            for item in secret.get("items", []):
                out[f"{mount['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
    return out


def decision_log_keys(pod: dict, container: dict) -> set[str]:
    """Keys of the Secret `decision-log` a container gets, as files or variables."""
    files = secret_files(pod, container).values()
    keys = {key for secret, key in files if secret == "decision-log"}
    return keys | {
        item["valueFrom"]["secretKeyRef"]["key"]
        for item in container.get("env", [])
        if item.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "decision-log"
    }


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_model_server_writes_as_the_insert_only_role(rendered, name, tmp_path, monkeypatch):
    """The decision log is on (full) and its store is the writer's, from files: only the
    writer's two keys of the Secret reach the pod, never the owner's store-uri, and the server
    never prunes (its role cannot delete). The settings the pod gets are valid ones."""
    objects = rendered[name]["objects"]
    pod, container = model_server(objects)
    env = container_env(objects, container)
    assert env["DECISIONS_MODE"] == InputMode.FULL
    assert env["DECISIONS_PRUNE_INTERVAL"] == "0"
    files = secret_files(pod, container)
    assert decision_log_keys(pod, container) == WRITER_KEYS
    assert files[env["DECISIONS_STORE_URI_FILE"]] == ("decision-log", "writer-store-uri")
    assert files[env["DECISIONS_STORE_PASSWORD_FILE"]] == ("decision-log", "writer-password")
    refs = [e for e in container.get("env", []) if "valueFrom" in e]
    assert all(e["valueFrom"]["secretKeyRef"]["name"] != "decision-log" for e in refs)
    # What the server does with them at start (serving/__main__.py): a writer URI without the
    # password, as create-secrets.sh documents it, and the password file.
    role = DecisionSettings.model_fields["writer_role"].default
    (tmp_path / "uri").write_text(f"postgresql://{role}@db.example:5432/decisions\n")
    (tmp_path / "pw").write_text("a-writer-password\n")
    environ = {k: v for k, v in env.items() if k.startswith("DECISIONS_") and v is not None}
    environ.update(
        DECISIONS_STORE_URI_FILE=str(tmp_path / "uri"),
        DECISIONS_STORE_PASSWORD_FILE=str(tmp_path / "pw"),
    )
    assert read_secret_files(SECRET_VARIABLES, environ) == [
        "DECISIONS_STORE_URI",
        "DECISIONS_STORE_PASSWORD",
    ]
    for key in [k for k in os.environ if k.startswith("DECISIONS_")]:
        monkeypatch.delenv(key)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    settings = DecisionSettings()
    assert settings.prune_interval == 0 and settings.writer_password is None
    assert urlsplit(settings.store_uri.get_secret_value()).username == role
    assert settings.store_password.get_secret_value() == "a-writer-password"


@pytest.mark.parametrize("name", ["dev", "oke"])
def test_model_server_reaches_the_database_on_5432_only(rendered, name):
    objects = rendered[name]["objects"]
    database = "postgres" if name == "dev" else "external"
    assert allowed(objects, "model-server", database, 5432)
    assert not allowed(objects, "model-server", database, 5433)
    assert not allowed(objects, "gateway", database, 5432)
    assert not allowed(objects, "trainer", database, 5432)


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_prune_cronjob_runs_as_the_owner(rendered, name):
    """Retention needs DELETE, which only the owner has: a daily CronJob with the owner's
    store-uri as a file, and the only workload besides the migration and the monitor that
    gets that key."""
    objects = rendered[name]["objects"]
    cronjob = find(objects, "CronJob", "decisions-prune")["spec"]
    assert cronjob["concurrencyPolicy"] == "Forbid" and not cronjob.get("suspend")
    pod = cronjob["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["python", "-m", "serving.decisions", "prune"]
    assert pod["serviceAccountName"] == "decisions-prune"
    env = container_env(objects, container)
    assert secret_files(pod, container) == {
        env["DECISIONS_STORE_URI_FILE"]: ("decision-log", "store-uri")
    }
    owners = set()
    for _, spec in pod_templates(objects):
        for c in spec.get("initContainers", []) + spec["containers"]:
            if "store-uri" in decision_log_keys(spec, c):
                owners.add(c["name"])
    assert owners == {"decisions-migrate", "decisions-prune", "monitor"}


@pytest.mark.parametrize("name", ["dev", "oke"])
def test_prune_network(rendered, name):
    objects = rendered[name]["objects"]
    database = "postgres" if name == "dev" else "external"
    assert allowed(objects, "decisions-prune", database, 5432)
    assert not allowed(objects, "decisions-prune", "mlflow", facts.MLFLOW_PORT)
    assert not allowed(objects, "decisions-prune", "model-server", facts.MODEL_SERVER_PORT)


def test_create_secrets_requires_every_key_the_component_reads(rendered):
    """k8s/scripts/create-secrets.sh checks for each key of `decision-log` the pods read, and
    documents the writer URI with the role the migration creates."""
    objects = rendered["dev"]["objects"]
    used = set()
    for _, spec in pod_templates(objects):
        for c in spec.get("initContainers", []) + spec["containers"]:
            used |= decision_log_keys(spec, c)
    assert used == {"store-uri"} | WRITER_KEYS
    script = (K8S / "scripts" / "create-secrets.sh").read_text()
    [checked] = re.findall(r"for key in ([a-z -]+); do need_file", script)
    assert set(checked.split()) == used
    role = DecisionSettings.model_fields["writer_role"].default
    assert f"postgresql://{role}@" in script
    assert f"postgresql://{role}@" in (K8S / "README.md").read_text()


def test_compose_model_server_writes_as_the_insert_only_role():
    """docker-compose.yml: the migration creates the writer role from its secret file before
    the model server starts; the server writes as that role with that same file, never
    prunes, never gets the owner's password; the retention one-shot runs as the owner."""
    from serving.shadow import ShadowSettings

    services = compose_services()
    role = DecisionSettings.model_fields["writer_role"].default
    migrate, server = services["decisions-migrate"], services["model-server"]
    assert migrate["command"][2:4] == ["serving.decisions", "migrate"]
    writer_file = migrate["environment"]["DECISIONS_WRITER_PASSWORD_FILE"]
    assert writer_file == "/run/secrets/decisions-writer-password"
    assert "decisions-writer-password" in migrate["secrets"]
    env = server["environment"]
    assert urlsplit(env["DECISIONS_STORE_URI"]).username == role
    assert (
        urlsplit(env["DECISIONS_STORE_URI"]).path
        == urlsplit(migrate["environment"]["DECISIONS_STORE_URI"]).path
    )
    assert env["DECISIONS_STORE_PASSWORD_FILE"] == writer_file
    assert env["DECISIONS_MODE"] == "${DECISIONS_MODE:-}"  # empty: the default, full
    assert DecisionSettings.model_fields["mode"].default is InputMode.FULL
    assert env["DECISIONS_PRUNE_INTERVAL"] == "0"
    assert "postgres-password" not in server["secrets"]
    assert "decisions-writer-password" in server["secrets"]
    assert server["depends_on"]["decisions-migrate"] == {
        "condition": "service_completed_successfully"
    }
    for field in ShadowSettings.model_fields:
        name = f"SHADOW_{field.upper()}"
        assert env[name] == f"${{{name}:-}}", name
    prune = services["decisions-prune"]
    assert prune["command"] == ["python", "-m", "serving.decisions", "prune"]
    assert urlsplit(prune["environment"]["DECISIONS_STORE_URI"]).username != role
    assert prune["secrets"] == ["postgres-password"]


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_model_server_gets_the_hash_key_as_compose_does(rendered, name, tmp_path, monkeypatch):
    """DECISIONS_MODE=hashed: the HMAC key is a file of the Secret `decisions-hash-key`, the
    name of compose's secret, never a variable and never a rendered (committed) object. The
    mount is optional (full mode needs no key); with the file laid out as the kubelet mounts
    it, hashed-mode settings read the key, and without it they fail with the file's name."""
    objects = rendered[name]["objects"]
    pod, container = model_server(objects)
    env = container_env(objects, container)
    key_file = env["DECISIONS_HASH_KEY_FILE"]
    assert secret_files(pod, container)[key_file] == ("decisions-hash-key", "hash-key")
    [volume] = [
        v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "decisions-hash-key"
    ]
    assert volume["secret"]["optional"] is True
    assert volume["secret"]["defaultMode"] == 0o440
    refs = [e["valueFrom"] for e in container.get("env", []) if "valueFrom" in e]
    assert all(r.get("secretKeyRef", {}).get("name") != "decisions-hash-key" for r in refs)
    assert not [o for o in objects if o["kind"] == "Secret"], "a Secret in the committed manifests"

    compose = compose_services()["model-server"]
    assert "decisions-hash-key" in compose["secrets"]
    assert compose["environment"]["DECISIONS_HASH_KEY_FILE"] == "/run/secrets/decisions-hash-key"
    script = (K8S / "scripts" / "create-secrets.sh").read_text()
    assert 'create secret generic decisions-hash-key --from-file=hash-key="$key"' in script
    assert 'key="$SECRETS_DIR/decisions-hash-key/hash-key"' in script
    assert "decisions-hash-key/hash-key" in (K8S / "README.md").read_text()

    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    laid_out = tmp_path / os.path.relpath(key_file, mount["mountPath"])
    for key in [k for k in os.environ if k.startswith("DECISIONS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DECISIONS_MODE", InputMode.HASHED.value)
    monkeypatch.setenv("DECISIONS_HASH_KEY_FILE", str(laid_out))
    with pytest.raises(ValueError, match="DECISIONS_HASH_KEY_FILE: cannot read"):
        DecisionSettings()
    laid_out.write_text("0123456789abcdef" * 4 + "\n")  # what `openssl rand -hex 32` writes
    assert DecisionSettings().hash_key() == b"0123456789abcdef" * 4
