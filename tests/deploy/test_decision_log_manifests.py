"""The decision log's Kubernetes pieces (k8s/components/decision-log): the migration runs in
the mlflow pod before anything writes, the drift monitor reaches what it reads and writes and
nothing else, with the trainer's registry user and the store from a Secret."""

import pytest
from deploy_helpers import ALL_RENDERINGS, container_env, find
from test_manifests import allowed

from training.monitor import MonitorSettings


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
    [store] = [e for e in migrate["env"] if e["name"] == "DECISIONS_STORE_URI"]
    assert store["valueFrom"]["secretKeyRef"] == {"name": "decision-log", "key": "store-uri"}


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
    assert not allowed(objects, "model-server", "postgres", 5432)
