"""The rendered objects: hardening, probes, limits, images, and agreement with the services."""

import json
import re

import pytest
import yaml
from deploy_helpers import (
    ALL_RENDERINGS,
    K8S,
    REPO,
    compose_services,
    container_env,
    dockerfile_env,
    find,
    pod_templates,
)

from common import facts
from serving.settings import ServingSettings
from tracking.settings import TrackingSettings

PSS_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
LONG_RUNNING = {"Deployment", "StatefulSet"}
SERVING_ROUTES = (REPO / "serving" / "app.py").read_text()


def workloads(rendered, name):
    objects = rendered[name]["objects"]
    for obj, pod in pod_templates(objects):
        for container in pod["containers"] + pod.get("initContainers", []):
            yield obj, pod, container


def ident(obj, container):
    return f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}"


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_pod_security_restricted_and_read_only(rendered, name):
    for obj, pod, container in workloads(rendered, name):
        where = ident(obj, container)
        pod_context, context = pod["securityContext"], container["securityContext"]
        assert pod_context["runAsNonRoot"] is True, where
        assert pod_context["runAsUser"] >= 10000 and pod_context["runAsGroup"] >= 10000, where
        assert pod_context["seccompProfile"]["type"] == "RuntimeDefault", where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        assert not context["capabilities"].get("add"), where
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), where
        for volume in pod.get("volumes", []):
            types = set(volume) - {"name"}
            assert types <= PSS_VOLUME_TYPES, f"{where}: volume {volume['name']} {types}"


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_namespace_enforces_restricted(rendered, name):
    objects = rendered[name]["objects"]
    labels = find(objects, "Namespace", "credit-risk")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "credit-risk", obj["metadata"]["name"]


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_service_accounts_without_token(rendered, name):
    objects = rendered[name]["objects"]
    for obj, pod, container in workloads(rendered, name):
        account = pod["serviceAccountName"]
        assert account != "default", ident(obj, container)
        assert pod["automountServiceAccountToken"] is False, ident(obj, container)
        assert find(objects, "ServiceAccount", account)["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_requests_limits_and_probes(rendered, name):
    for obj, pod, container in workloads(rendered, name):
        where = ident(obj, container)
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), f"{where}: {kind}"
        # Kubernetes rejects probes on init containers (they run to completion first).
        if obj["kind"] in LONG_RUNNING and container not in pod.get("initContainers", []):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{where}: {probe}"
            assert container["livenessProbe"].get("timeoutSeconds", 1) >= 5, where


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_images_pinned(rendered, name):
    for obj, _pod, container in workloads(rendered, name):
        image = container["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest" or "@sha256:" in image, f"{ident(obj, container)}: {image}"
        assert container["imagePullPolicy"] == "Always"
    assert ":latest" not in rendered[name]["text"]


@pytest.mark.parametrize("name", ["oke", "oke-nlb", "oke-block-volume"])
def test_oke_images_from_ocir_with_pull_secret(rendered, name):
    objects = rendered[name]["objects"]
    for obj, _pod, container in workloads(rendered, name):
        assert re.match(r"^[a-z0-9-]+\.ocir\.io/[^/]+/credit-risk/", container["image"]), ident(
            obj, container
        )
    for account in (o for o in objects if o["kind"] == "ServiceAccount"):
        assert account["imagePullSecrets"] == [{"name": "ocir-pull"}]


def model_server(rendered, name):
    objects = rendered[name]["objects"]
    deployment = find(objects, "Deployment", "model-server")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    image = dockerfile_env(REPO / "images" / "python.Dockerfile", "model-server")
    return objects, deployment, container, {**image, **container_env(objects, container)}


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_model_server_rollout_and_scaling(rendered, name):
    objects, deployment, container, env = model_server(rendered, name)
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    # gunicorn's graceful timeout is 30 s (serving/gunicorn_conf.py).
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= pause + 30
    hpa = find(objects, "HorizontalPodAutoscaler", "model-server")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "model-server" and hpa["minReplicas"] >= 2
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    pdb = find(objects, "PodDisruptionBudget", "model-server")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pdb["minAvailable"] < spec["replicas"]


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_model_server_agrees_with_serving_settings(rendered, name, monkeypatch):
    objects, _deployment, container, env = model_server(rendered, name)
    known = {f"SERVING_{field.upper()}" for field in ServingSettings.model_fields}
    serving_names = {key for key in env if key.startswith("SERVING_")}
    assert serving_names <= known, serving_names - known
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(env)
    for key, value in env.items():
        if key.startswith("SERVING_"):
            monkeypatch.setenv(key, value)
    settings = ServingSettings()
    assert settings.alias == "champion" and settings.host == "0.0.0.0"  # noqa: S104 - in a pod
    assert container["ports"][0]["containerPort"] == settings.port
    service = find(objects, "Service", "model-server")["spec"]["ports"][0]
    assert service["port"] == settings.port
    assert settings.tracking_uri == f"http://mlflow:{facts.MLFLOW_PORT}"
    assert find(objects, "Service", "mlflow")["spec"]["ports"][0]["port"] == facts.MLFLOW_PORT
    for probe, path in (
        ("startupProbe", "/healthz/live"),
        ("readinessProbe", "/healthz/ready"),
        ("livenessProbe", "/healthz/live"),
    ):
        assert container[probe]["httpGet"]["path"] == path
        assert f'"{path}"' in SERVING_ROUTES, f"serving/app.py has no route {path}"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod(objects, "model-server")["volumes"]}
    assert "emptyDir" in volumes[mounts[str(settings.cache_dir)]]
    assert volumes[mounts[str(settings.metrics_dir)]]["emptyDir"]["medium"] == "Memory"


def _pod(objects, deployment):
    return find(objects, "Deployment", deployment)["spec"]["template"]["spec"]


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_gateway_agrees_with_contract(rendered, name):
    objects = rendered[name]["objects"]
    pod = _pod(objects, "gateway")
    container = pod["containers"][0]
    env = {**dockerfile_env(REPO / "nginx" / "Dockerfile"), **container_env(objects, container)}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "https": facts.GATEWAY_HTTPS_PORT,
        "http": facts.GATEWAY_HTTP_PORT,
        "mlflow-ui": facts.GATEWAY_MLFLOW_PORT,
    }
    # The gateway names hosts; the ports it proxies to are the shared facts, which the
    # Services must then expose.
    for host, port in ((env["MODEL_SERVER_HOST"], facts.MODEL_SERVER_PORT),
                       (env["MLFLOW_HOST"], facts.MLFLOW_PORT)):  # fmt: skip
        assert find(objects, "Service", host)["spec"]["ports"][0]["port"] == port
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for variable, secret in (
        ("TLS_CERT_FILE", "gateway-tls"),
        ("TLS_KEY_FILE", "gateway-tls"),
        ("API_KEYS_FILE", "gateway-api-keys"),
    ):
        folder, _, _file = env[variable].rpartition("/")
        mount = mounts[folder]
        assert not mount.get("subPath"), "subPath mounts never see a Secret update"
        assert volumes[mount["name"]]["secret"]["secretName"] == secret
    assert "emptyDir" in volumes[mounts[env["GATEWAY_RUNTIME_DIR"]]["name"]]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert (check["path"], check["port"], check["scheme"]) == ("/healthz", "https", "HTTPS")
    service = find(objects, "Service", "gateway")["spec"]
    assert service["type"] == "LoadBalancer"
    assert {(p["port"], p["targetPort"]) for p in service["ports"]} == {
        (443, "https"),
        (80, "http"),
    }
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0


MLFLOW_SECRET_ENV = {  # variable: (Secret, key); the users' Secrets are the clients' own
    "TRACKING_BACKEND_STORE_URI": ("mlflow", "backend-store-uri"),
    "MLFLOW_FLASK_SERVER_SECRET_KEY": ("mlflow", "flask-secret-key"),
    "MLFLOW_AUTH_ADMIN_PASSWORD": ("mlflow", "admin-password"),
    "TRACKING_TRAINER_USERNAME": ("trainer-registry", "username"),
    "TRACKING_TRAINER_PASSWORD": ("trainer-registry", "password"),
    "TRACKING_MODEL_SERVER_USERNAME": ("model-server-registry", "username"),
    "TRACKING_MODEL_SERVER_PASSWORD": ("model-server-registry", "password"),
}


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_mlflow_contract(rendered, name):
    """The pod runs the image's entry point (`python -m tracking`), with the settings from the
    ConfigMap and Secrets; paths and port come from the image and tracking's settings."""
    objects = rendered[name]["objects"]
    pod = _pod(objects, "mlflow")
    container = pod["containers"][0]
    # No command line of our own: nothing in argv, least of all a secret.
    assert "command" not in container and "args" not in container
    image = dockerfile_env(REPO / "images" / "python.Dockerfile", "mlflow")
    env = {**image, **container_env(objects, container)}
    fields = TrackingSettings.model_fields
    port = int(env.get("TRACKING_PORT") or fields["port"].default)
    assert port == facts.MLFLOW_PORT == container["ports"][0]["containerPort"]
    assert find(objects, "Service", "mlflow")["spec"]["ports"][0]["port"] == port
    assert all(container[p]["httpGet"]["path"] == "/health" for p in ("readinessProbe",))
    assert env["TRACKING_AUTH"] == "true" and env["TRACKING_HOST"] == "0.0.0.0"  # noqa: S104
    unknown = {
        k for k in env if k.startswith("TRACKING_") and k[len("TRACKING_") :].lower() not in fields
    }
    assert not unknown, f"not a tracking setting: {sorted(unknown)}"
    secret_refs = {
        item["name"]: (
            item["valueFrom"]["secretKeyRef"]["name"],
            item["valueFrom"]["secretKeyRef"]["key"],
        )
        for item in container["env"]
        if "valueFrom" in item
    }
    assert secret_refs == MLFLOW_SECRET_ENV
    configmap = find(objects, "ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    assert not {k for k in configmap["data"] if "PASSWORD" in k or "URI" in k}
    for client, deployment_kind, secret in (
        ("model-server", "Deployment", "model-server-registry"),
        ("trainer", "CronJob", "trainer-registry"),
    ):
        obj = find(objects, deployment_kind, client)
        pods = [p for o, p in pod_templates([obj])]
        refs = {
            item["valueFrom"]["secretKeyRef"]["name"]
            for item in pods[0]["containers"][0]["env"]
            if item["name"] == "MLFLOW_TRACKING_PASSWORD"
        }
        assert refs == {secret}, client
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    runtime = volumes[mounts[env["TRACKING_RUNTIME_DIR"]]]["emptyDir"]
    assert runtime["medium"] == "Memory", "the auth ini holds a password: memory only"
    assert not [
        v for v in pod["volumes"] if "secret" in v and v["secret"]["secretName"] == "mlflow"
    ]
    destination = env["TRACKING_ARTIFACTS_DESTINATION"]
    if name == "oke" or name == "oke-nlb":
        assert destination.startswith("s3://") and env["MLFLOW_S3_ENDPOINT_URL"].endswith(
            ".oraclecloud.com"
        )
        assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    else:
        assert destination == image["TRACKING_ARTIFACTS_DESTINATION"]
        claim = volumes[mounts[destination]]["persistentVolumeClaim"]["claimName"]
        pvc = find(objects, "PersistentVolumeClaim", claim)["spec"]
        if name == "oke-block-volume":
            assert pvc["storageClassName"] == "oci-bv"
            assert pvc["resources"]["requests"]["storage"] == "50Gi"
        assert find(objects, "Deployment", "mlflow")["spec"]["strategy"]["type"] == "Recreate"


def test_trainer_job_template(rendered):
    objects = rendered["oke"]["objects"]
    cronjob = find(objects, "CronJob", "trainer")["spec"]
    assert cronjob["suspend"] is True and cronjob["concurrencyPolicy"] == "Forbid"
    pod = cronjob["jobTemplate"]["spec"]["template"]["spec"]
    env = container_env(objects, pod["containers"][0])
    assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow:{facts.MLFLOW_PORT}"
    assert pod["restartPolicy"] == "Never"


def test_oke_load_balancer_annotations(rendered):
    lb = find(rendered["oke"]["objects"], "Service", "gateway")["metadata"]["annotations"]
    assert lb["oci.oraclecloud.com/load-balancer-type"] == "lb"
    assert lb["service.beta.kubernetes.io/oci-load-balancer-shape"] == "flexible"
    low = int(lb["service.beta.kubernetes.io/oci-load-balancer-shape-flex-min"])
    high = int(lb["service.beta.kubernetes.io/oci-load-balancer-shape-flex-max"])
    assert 10 <= low <= high <= 8000
    nlb = find(rendered["oke-nlb"]["objects"], "Service", "gateway")
    assert nlb["metadata"]["annotations"]["oci.oraclecloud.com/load-balancer-type"] == "nlb"
    assert not any("oci-load-balancer-shape" in key for key in nlb["metadata"]["annotations"])
    assert nlb["spec"]["externalTrafficPolicy"] == "Local"


def allowed(objects, source: str, target: str, port: int) -> bool:
    """Whether the policies let pods labelled `source` open `target`:`port` (both ways)."""
    policies = [o["spec"] for o in objects if o["kind"] == "NetworkPolicy"]

    def selects(selector, label):
        wanted = selector.get("matchLabels", {})
        return not wanted or wanted.get("app.kubernetes.io/name") == label

    def peer_ok(peers, label, pod_only):
        if not peers:
            return True
        for peer in peers:
            if "ipBlock" in peer:
                if not pod_only:
                    return True
            elif "namespaceSelector" not in peer and selects(peer.get("podSelector", {}), label):
                return True
        return False

    # A named port (the policies use them, so no number is copied) is the target pod's.
    named = {
        item["name"]: item["containerPort"]
        for obj, pod in pod_templates(objects)
        if obj["spec"].get("selector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        == target
        for container in pod["containers"]
        for item in container.get("ports", [])
        if "name" in item
    }

    def port_ok(rule):
        return not rule.get("ports") or any(
            named.get(p["port"], p["port"]) == port for p in rule["ports"]
        )

    egress = any(
        peer_ok(rule.get("to"), target, pod_only=target != "external") and port_ok(rule)
        for policy in policies
        if selects(policy["podSelector"], source) and "Egress" in policy["policyTypes"]
        for rule in policy.get("egress", [])
    )
    if target == "external":
        return egress
    ingress = any(
        peer_ok(rule.get("from"), source, pod_only=True) and port_ok(rule)
        for policy in policies
        if selects(policy["podSelector"], target) and "Ingress" in policy["policyTypes"]
        for rule in policy.get("ingress", [])
        if policy["podSelector"].get("matchLabels")
    )
    return egress and ingress


@pytest.mark.parametrize("name", ["dev", "oke"])
def test_network_policies(rendered, name):
    objects = rendered[name]["objects"]
    deny = find(objects, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    dns = find(objects, "NetworkPolicy", "allow-dns")["spec"]
    assert dns["podSelector"] == {} and {p["port"] for p in dns["egress"][0]["ports"]} == {53}
    must = [
        ("gateway", "model-server", facts.MODEL_SERVER_PORT),
        ("model-server", "mlflow", facts.MLFLOW_PORT),
        ("trainer", "mlflow", facts.MLFLOW_PORT),
    ]
    must_not = [
        ("trainer", "model-server", facts.MODEL_SERVER_PORT),
        ("model-server", "gateway", facts.GATEWAY_HTTPS_PORT),
        ("gateway", "postgres", 5432),
        ("trainer", "postgres", 5432),
    ]
    # The database: in-cluster pods labelled postgres (dev), OCI Database with PostgreSQL
    # outside the cluster (OKE). The model server writes its decision log there, on 5432 only.
    database = "postgres" if name == "dev" else "external"
    must += [("mlflow", database, 5432), ("model-server", database, 5432)]
    must_not += [("model-server", database, port) for port in (5433, 443, 80, facts.MLFLOW_PORT)]
    if name == "oke":
        must_not.append(("model-server", "postgres", 5432))  # no in-cluster database there
    for edge in must:
        assert allowed(objects, *edge), f"{name}: {edge} should be allowed"
    for edge in must_not:
        assert not allowed(objects, *edge), f"{name}: {edge} should be denied"


@pytest.mark.parametrize("name", ["dev", "oke"])
def test_model_server_egress_is_mlflow_and_the_database_only(rendered, name):
    """Every egress rule that applies to the model server (beyond DNS, which every pod has):
    MLflow's `http` port and the database's 5432, nothing else."""
    objects = rendered[name]["objects"]
    rules = [
        (tuple(sorted(json.dumps(peer, sort_keys=True) for peer in rule.get("to", []))),
         tuple(sorted(str(port["port"]) for port in rule.get("ports", []))))
        for policy in (o["spec"] for o in objects if o["kind"] == "NetworkPolicy")
        if "Egress" in policy["policyTypes"]
        and policy["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        == "model-server"
        for rule in policy.get("egress", [])
    ]  # fmt: skip
    label = '{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "%s"}}}'
    subnet = yaml.safe_load((K8S / "overlays/oke/set-postgres-egress.patch.yaml").read_text())
    database = (
        label % "postgres"
        if name == "dev"
        else json.dumps(subnet[0]["value"]["to"][0], sort_keys=True)
    )
    assert sorted(rules) == sorted([((label % "mlflow",), ("http",)), ((database,), ("5432",))])


def test_compose_agrees_with_k8s(rendered):
    """What a container sees in compose (its image's ENV plus compose's environment) names
    every setting the Kubernetes pod sets, with the same ports."""
    services = compose_services()
    assert services, "docker-compose.yml has no services"
    objects = rendered["dev"]["objects"]
    for service, deployment in (("model-server", "model-server"), ("nginx", "gateway")):
        assert service in services, f"compose has no service {service}"
        compose_env = services[service].get("environment") or {}
        if isinstance(compose_env, list):
            compose_env = dict(item.partition("=")[::2] for item in compose_env)
        build = services[service]["build"]
        image_env = dockerfile_env(REPO / build["dockerfile"], build.get("target"))
        seen = {**image_env, **{k: str(v) for k, v in compose_env.items()}}
        k8s_env = container_env(objects, _pod(objects, deployment)["containers"][0])
        shared = {k for k in k8s_env if k.startswith(("SERVING_", "GATEWAY_"))}
        missing = shared - set(seen)
        assert not missing, f"{service}: compose lacks {sorted(missing)}"
        for name in shared:
            if name.endswith("_PORT") and name != "GATEWAY_PUBLIC_HTTPS_PORT":
                assert str(k8s_env[name]) == seen[name], (service, name)


@pytest.mark.parametrize("name", ALL_RENDERINGS)
def test_trainer_job_trains_when_a_champion_exists(rendered, name):
    """k8s/scripts/train.sh stamps a Job from the CronJob: "train and promote if better" means
    the job must not stop at an existing champion (training/job.py's default mode does)."""
    from training.job import load_settings

    script = (REPO / "k8s" / "scripts" / "train.sh").read_text()
    assert "--from=cronjob/trainer" in script
    objects = rendered[name]["objects"]
    pod = find(objects, "CronJob", "trainer")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = container_env(objects, pod["containers"][0])
    assert load_settings({k: v for k, v in env.items() if v is not None}).mode == "always"
