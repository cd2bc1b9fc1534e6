"""The nginx gateway with the project's configuration, on loopback, in front of the real model
server: TLS, API keys and their rotation, limits, JSON errors, logs without secrets."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import urllib3

from stack.services import ROOT, Gateway, free_port, keys_cli, wait_until

PAYLOAD = json.loads((ROOT / "tests" / "testdata" / "predict-one.json").read_text())
SPLIT = json.loads((ROOT / "tests" / "testdata" / "predict-split.json").read_text())


def call(stack, path="/invocations", key=None, payload=PAYLOAD, method="POST", **kwargs):
    headers = kwargs.pop("headers", {})
    if key is not None:
        headers["X-API-Key"] = key
    return requests.request(
        method,
        f"{stack.url}{path}",
        json=payload if method == "POST" else None,
        headers=headers,
        verify=stack.ca_cert,
        timeout=30,
        **kwargs,
    )


def upstream_invocations(stack) -> float:
    """How many /invocations requests the model server has seen (its own metrics)."""
    text = requests.get(f"{stack.model_server.url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("model_server_requests_total{") and 'route="/invocations"' in line
    )


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "request_id"} and set(body["error"]) == {"code", "message"}
    assert body["request_id"] == response.headers["X-Request-ID"]
    if code:
        assert body["error"]["code"] == code
    return body


@pytest.mark.parametrize("assembly", ["native", "container", "kubernetes"])
def test_configuration_passes_nginx_t_in_every_assembly(assembly, tls_dir, tmp_path):
    """render.sh ends with `nginx -t`; each assembly differs only in its environment.

    Host names of compose and Kubernetes (model-server, mlflow) are replaced by 127.0.0.1,
    because nginx resolves upstream names while it checks and they exist only there."""
    keys = tmp_path / "keys.map"
    keys_cli(keys, tmp_path / "unused", "--no-reload", "create", "someone")
    environments = {
        "native": {},
        "container": {
            "GATEWAY_HTTPS_PORT": "8443",
            "GATEWAY_HTTP_PORT": "8080",
            "GATEWAY_PUBLIC_HTTPS_PORT": "443",
            "MLFLOW_UPSTREAM": "127.0.0.1:5000",
            "GATEWAY_ACCESS_LOG": "/dev/stdout",
            "GATEWAY_ERROR_LOG": "/dev/stderr",
            "GATEWAY_SERVER_NAME": "ml.example.com localhost",
        },
        "kubernetes": {
            "GATEWAY_HTTPS_PORT": "8443",
            "GATEWAY_HTTP_PORT": "8080",
            "GATEWAY_PUBLIC_HTTPS_PORT": "443",
            "MLFLOW_UPSTREAM": "127.0.0.1:5000",
            "GATEWAY_MLFLOW_PORT": "8444",
            "GATEWAY_SERVER_NAME": "ml.example.com",
        },
    }
    gateway = Gateway(
        tmp_path / assembly, tls_dir, keys, "127.0.0.1:8080", **environments[assembly]
    )
    rendered = gateway.render()
    assert rendered.returncode == 0, rendered.stderr
    config = (gateway.runtime / "conf.d" / "gateway.conf").read_text()
    assert f"listen {gateway.env['GATEWAY_HTTPS_PORT']} ssl http2;" in config
    assert (gateway.runtime / "conf.d" / "mlflow-ui.conf").exists() == (assembly != "native")


def test_invalid_configuration_is_refused(tls_dir, tmp_path):
    gateway = Gateway(tmp_path / "bad", tls_dir, tmp_path / "missing-keys.map", "127.0.0.1:8080")
    rendered = gateway.render()
    assert rendered.returncode != 0 and "missing-keys.map" in rendered.stderr


@pytest.mark.parametrize(
    "case", ["no-key", "unknown-key", "revoked-key", "key-in-query", "valid-key-in-query"]
)
def test_refused_keys_get_401_and_never_reach_the_model_server(gateway_stack, case):
    if case == "revoked-key":
        revoked = gateway_stack.gateway.keys("create", "short-lived").stdout.strip()
        assert call(gateway_stack, key=revoked).status_code == 200
        gateway_stack.gateway.keys("revoke", "short-lived")
    before = upstream_invocations(gateway_stack)
    url_key = gateway_stack.api_key if case == "valid-key-in-query" else "guess"
    response = {
        "no-key": lambda: call(gateway_stack),
        "unknown-key": lambda: call(gateway_stack, key="not-a-real-key-0123456789"),
        "revoked-key": lambda: wait_for_status(gateway_stack, revoked, 401),
        "key-in-query": lambda: call(gateway_stack, path=f"/invocations?api_key={url_key}"),
        "valid-key-in-query": lambda: call(
            gateway_stack, key=gateway_stack.api_key, path=f"/invocations?api_key={url_key}"
        ),
    }[case]()
    body = assert_json_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("ApiKey")
    if "query" in case:
        assert "URL" in body["error"]["message"]
    assert upstream_invocations(gateway_stack) == before, "the model server saw the request"


def wait_for_status(stack, key, status):
    """A reload is graceful: new workers take over within moments, so poll briefly."""
    deadline = time.monotonic() + 10
    while True:
        response = call(stack, key=key)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


@pytest.mark.parametrize("payload", [PAYLOAD, SPLIT], ids=["records", "split"])
def test_valid_key_gets_the_model_servers_predictions(gateway_stack, payload):
    through_gateway = call(gateway_stack, key=gateway_stack.api_key, payload=payload)
    direct = requests.post(
        f"{gateway_stack.model_server.url}/invocations", json=payload, timeout=10
    )
    assert through_gateway.status_code == 200, through_gateway.text
    assert through_gateway.json() == direct.json()
    assert through_gateway.headers["X-Model-Version"] == direct.headers["X-Model-Version"]
    assert through_gateway.headers["Strict-Transport-Security"].startswith("max-age=")
    info = call(gateway_stack, path="/model", key=gateway_stack.api_key, method="GET")
    assert info.status_code == 200 and info.json()["name"] == "credit-risk"


def test_model_server_errors_pass_through_in_the_same_shape(gateway_stack):
    response = call(
        gateway_stack,
        key=gateway_stack.api_key,
        payload={"dataframe_records": [{"annual_income": 1.0}]},
    )
    body = assert_json_error(response, 400, "missing_columns")
    assert response.headers["X-Request-ID"] == body["request_id"]


def test_request_ids_are_kept_or_made(gateway_stack):
    kept = call(gateway_stack, key=gateway_stack.api_key, headers={"X-Request-ID": "apex-42"})
    assert kept.headers["X-Request-ID"] == "apex-42"
    made = call(gateway_stack)
    assert len(made.headers["X-Request-ID"]) == 32
    assert "apex-42" in gateway_stack.model_server.log_text(), "the id reaches the model server"


@pytest.mark.parametrize(
    "path",
    [
        "/metrics",
        "/version",
        "/ping",
        "/health",
        "/docs",
        "/openapi.json.bak",
        "/healthz/ready",
        "/",
    ],
)
def test_only_the_api_is_exposed(gateway_stack, path):
    response = call(gateway_stack, path=path, key=gateway_stack.api_key, method="GET")
    assert_json_error(response, 404, "not_found")


def test_health_route_needs_no_key_and_reveals_no_model(gateway_stack):
    response = call(gateway_stack, path="/healthz", method="GET")
    assert response.status_code == 200
    assert "X-Model-Version" not in response.headers and "X-Model-Name" not in response.headers
    assert "credit-risk" not in response.text


def test_unknown_host_name_reaches_only_the_catch_all(gateway_stack):
    response = call(gateway_stack, key=gateway_stack.api_key, headers={"Host": "evil.example"})
    assert_json_error(response, 404, "not_found")


def test_body_over_the_limit_is_413_json(gateway_stack):
    response = requests.post(
        f"{gateway_stack.url}/invocations",
        data=b"x" * (9 * 1024 * 1024),
        headers={"X-API-Key": gateway_stack.api_key, "Content-Type": "application/json"},
        verify=gateway_stack.ca_cert,
        timeout=60,
    )
    assert_json_error(response, 413, "payload_too_large")


def test_rate_limit_is_429_json_with_retry_after(gateway_stack, tls_dir, tmp_path):
    gateway = Gateway(
        tmp_path / "limited",
        tls_dir,
        gateway_stack.gateway.keys_file,
        f"127.0.0.1:{gateway_stack.model_server.port}",
        GATEWAY_RATE_PER_KEY="2r/s",
        GATEWAY_BURST_PER_KEY="3",
    ).start()
    try:
        statuses = []
        for _ in range(15):
            response = call(gateway, key=gateway_stack.api_key)  # a Gateway has url and ca_cert
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert_json_error(response, 429, "rate_limited")
                assert int(response.headers["Retry-After"]) >= 1
        assert statuses.count(200) >= 3 and statuses.count(429) >= 5, statuses
    finally:
        gateway.stop()


def test_model_server_down_is_503_json(gateway_stack, tls_dir, tmp_path):
    gateway = Gateway(
        tmp_path / "orphan", tls_dir, gateway_stack.gateway.keys_file, f"127.0.0.1:{free_port()}"
    ).start()
    try:
        response = call(gateway, key=gateway_stack.api_key)
        assert_json_error(response, 503, "unavailable")
        assert response.headers["Retry-After"]
        health = requests.get(f"{gateway.url}/healthz", timeout=10, verify=gateway.ca_cert)
        assert_json_error(health, 503, "unavailable")
        # The plain-HTTP health route (OCI's checks) sees the dead model server as well.
        plain = requests.get(f"http://127.0.0.1:{gateway.http_port}/healthz", timeout=10)
        assert_json_error(plain, 503, "unavailable")
    finally:
        gateway.stop()


def test_plain_http_redirects_to_https(gateway_stack):
    port = gateway_stack.gateway.http_port
    response = requests.get(
        f"http://localhost:{port}/invocations?x=1", allow_redirects=False, timeout=5
    )
    assert response.status_code == 301
    assert response.headers["Location"] == (
        f"https://localhost:{gateway_stack.gateway.https_port}/invocations?x=1"
    )


def test_plain_http_answers_only_the_health_route(gateway_stack):
    """For probes that speak only plain HTTP (OCI Container Instances): /healthz answers
    from the model server, tells nothing about the model, and the API stays HTTPS-only."""
    base = f"http://127.0.0.1:{gateway_stack.gateway.http_port}"
    health = requests.get(f"{base}/healthz", allow_redirects=False, timeout=5)
    assert health.status_code == 200, health.text
    assert health.json() == {"status": "alive"}
    assert "X-Model-Version" not in health.headers and "X-Model-Name" not in health.headers
    for path in ("/model", "/invocations", "/healthz/live", "/metrics"):
        assert requests.get(base + path, allow_redirects=False, timeout=5).status_code == 301


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_versions_are_refused(gateway_stack, version):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer them; the server must refuse
    context.minimum_version = context.maximum_version = version
    port = gateway_stack.gateway.https_port
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(sock, server_hostname="localhost")
    modern = ssl.create_default_context(cafile=gateway_stack.ca_cert)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        modern.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_sslyze_reports_mozilla_intermediate_compliance(gateway_stack, tmp_path):
    port = gateway_stack.gateway.https_port
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sslyze",
            "--mozilla_config=intermediate",
            f"--certinfo_ca_file={gateway_stack.ca_cert}",
            f"--json_out={tmp_path / 'out.json'}",
            f"localhost:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "OK - Compliant" in result.stdout


def check_cert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "nginx" / "check_cert.py"), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_check_cert_reports_chain_hostname_and_days(gateway_stack):
    target = f"localhost:{gateway_stack.gateway.https_port}"
    good = check_cert(target, "--ca", gateway_stack.ca_cert)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "chain valid:  yes" in good.stdout and "days left" in good.stdout
    untrusted = check_cert(target)
    assert untrusted.returncode == 1 and "intermediate" in untrusted.stdout
    wrong_name = check_cert(target, "--ca", gateway_stack.ca_cert, "--servername", "ml.example.com")
    assert wrong_name.returncode == 1 and "NOT verified" in wrong_name.stdout


def test_key_rotation_under_load_drops_no_request(gateway_stack):
    gateway = gateway_stack.gateway
    old_key = gateway.keys("create", "rotating-client").stdout.strip()
    current = {"key": old_key}
    failures, results, stop = [], [], threading.Event()

    def client():
        session = requests.Session()
        # Each rotation reloads nginx, and a reloading worker closes its idle kept-alive
        # connections. A request sent on such a connection at that instant meets a closed
        # socket before nginx read it (SSLEOFError): HTTP/1.1's keep-alive race, which every
        # client must handle by sending again on a new connection (a prediction is safe to
        # repeat; the gateway itself retries POSTs upstream). Once, and only for errors raised
        # before an answer arrived (`other`/`connect`); any status still counts as given.
        retry = urllib3.util.Retry(
            total=1, connect=1, read=0, other=1, status=0, redirect=0,
            allowed_methods=None, raise_on_status=False,
        )  # fmt: skip
        session.mount("https://", requests.adapters.HTTPAdapter(max_retries=retry))
        while not stop.is_set():
            key = current["key"]
            try:
                response = session.post(
                    f"{gateway_stack.url}/invocations",
                    json=PAYLOAD,
                    headers={"X-API-Key": key},
                    verify=gateway_stack.ca_cert,
                    timeout=10,
                )
                results.append(response.status_code)
                if response.status_code != 200:
                    failures.append((response.status_code, response.text[:200]))
            except requests.RequestException as error:
                failures.append(("exception", repr(error)))
            time.sleep(0.02)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(results) > 20, 30, "traffic flowing")
        new_key = gateway.keys("rotate", "rotating-client").stdout.strip()
        wait_until(
            lambda: call(gateway_stack, key=new_key).status_code == 200, 10, "new key accepted"
        )
        current["key"] = new_key  # the client moves to its new key
        seen = len(results)
        wait_until(lambda: len(results) > seen + 20, 30, "traffic on the new key")
        gateway.keys("revoke", "rotating-client/1")
        assert wait_for_status(gateway_stack, old_key, 401).status_code == 401
        seen = len(results)
        wait_until(lambda: len(results) > seen + 20, 30, "traffic after revocation")
    finally:
        stop.set()
        thread.join(15)
    assert failures == [], failures[:5]


def test_no_key_appears_in_any_log(gateway_stack):
    """Keys sent in headers (valid and unknown) and in query strings never reach a log file."""
    stray = "stray-key-in-a-header-0123456789"
    call(gateway_stack, key=stray)
    call(gateway_stack, key=gateway_stack.api_key)
    call(gateway_stack, path=f"/invocations?api_key={gateway_stack.api_key}")
    call(gateway_stack, path=f"/model?x-api-key={stray}", method="GET")
    secrets = {gateway_stack.api_key, stray}
    for line in gateway_stack.gateway.keys_file.read_text().splitlines():
        if line.startswith('"'):
            secrets.add(line.split('"')[1].removeprefix("~^").removesuffix("$"))
    logs = gateway_stack.gateway.logs() + gateway_stack.model_server.log_text()
    access = Path(gateway_stack.gateway.env["GATEWAY_ACCESS_LOG"]).read_text()
    assert '"client":"apex-test"' in access, "the key's name is logged instead"
    for secret in secrets:
        assert secret not in logs
