"""The gateway against the probes of issue 13, on real nginx in front of the real model server:
slow clients and connection floods, key guessing under the rate limit, case-flipped keys,
secrets in URLs, malformed requests, and what reaches the logs."""

from __future__ import annotations

import json
import socket
import ssl
import time
import uuid
from pathlib import Path

import pytest
import requests

from stack.services import ROOT, Gateway, free_port

PAYLOAD = json.loads((ROOT / "tests" / "testdata" / "predict-one.json").read_text())
TIMEOUT = 2  # GATEWAY_CLIENT_TIMEOUT of the slow-client gateway, seconds
CONNECTIONS = 3  # GATEWAY_CONNECTIONS_PER_ADDRESS of that gateway


def tls_socket(gateway, timeout: float = 10) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=gateway.ca_cert)
    raw = socket.create_connection(("127.0.0.1", gateway.https_port), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="localhost")


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (the gateway always sends Content-Length or closes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def raw_request(gateway, request: bytes, tls: bool = True) -> tuple[int, dict[str, str], bytes]:
    if tls:
        sock = tls_socket(gateway)
    else:
        sock = socket.create_connection(("127.0.0.1", gateway.https_port), timeout=10)
    with sock:
        sock.sendall(request)
        return read_response(sock)


def assert_json_error(status: int, headers: dict[str, str], body: bytes) -> dict:
    assert headers["content-type"].startswith("application/json"), (status, body[:200])
    parsed = json.loads(body)
    assert set(parsed) == {"error", "request_id"} and set(parsed["error"]) == {"code", "message"}
    return parsed


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    """Block until the peer closes (EOF or reset); the time it took."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    except TimeoutError:
        return float("inf")
    return time.monotonic() - start


@pytest.fixture(scope="module")
def slow_client_gateway(gateway_stack, tls_dir, tmp_path_factory):
    """The gateway with a short client timeout and a small connection cap."""
    gateway = Gateway(
        tmp_path_factory.mktemp("slow-clients"),
        tls_dir,
        gateway_stack.gateway.keys_file,
        f"127.0.0.1:{gateway_stack.model_server.port}",
        GATEWAY_CLIENT_TIMEOUT=f"{TIMEOUT}s",
        GATEWAY_CONNECTIONS_PER_ADDRESS=str(CONNECTIONS),
    ).start()
    yield gateway
    gateway.stop()


def test_idle_connection_is_closed_within_the_timeout(slow_client_gateway):
    """Not even a TLS handshake: the catch-all default server's timeout applies (was 60 s)."""
    with socket.create_connection(("127.0.0.1", slow_client_gateway.https_port)) as sock:
        assert seconds_until_closed(sock, 30) <= TIMEOUT + 1


def test_partial_header_is_closed_within_the_timeout(slow_client_gateway):
    with tls_socket(slow_client_gateway) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: localhost\r\nX-API-")
        assert seconds_until_closed(sock, 30) <= TIMEOUT + 1


def test_trickled_body_is_closed_once_it_stalls_for_the_timeout(slow_client_gateway, gateway_stack):
    """1 byte every TIMEOUT + 1 s (the probe: every 8 s against 10 s) no longer stays open."""
    with tls_socket(slow_client_gateway) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"X-API-Key: " + gateway_stack.api_key.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
        )
        time.sleep(TIMEOUT + 1)
        try:
            sock.sendall(b" ")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return  # closed already
        assert seconds_until_closed(sock, 30) <= TIMEOUT + 1


def test_connection_over_the_per_address_cap_is_refused(slow_client_gateway, gateway_stack):
    """CONNECTIONS requests in progress (bodies still arriving) from one address: the next
    one gets 429 JSON; once they are gone, requests pass again."""
    held = []
    try:
        for _ in range(CONNECTIONS):
            sock = tls_socket(slow_client_gateway)
            sock.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n"
                b"X-API-Key: " + gateway_stack.api_key.encode() + b"\r\n\r\n{"
            )
            held.append(sock)
        time.sleep(0.3)  # let nginx read the held requests' headers
        status, headers, body = raw_request(
            slow_client_gateway, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        assert status == 429, body
        assert assert_json_error(status, headers, body)["error"]["code"] == "rate_limited"
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    status, _, body = raw_request(
        slow_client_gateway, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    assert status == 200, body


def test_refused_keys_meet_the_per_address_limit(gateway_stack, tls_dir, tmp_path):
    """The probe: 30 wrong keys at a 5 r/s limit all got 401. Now the limit answers first."""
    gateway = Gateway(
        tmp_path / "limited",
        tls_dir,
        gateway_stack.gateway.keys_file,
        f"127.0.0.1:{gateway_stack.model_server.port}",
        GATEWAY_RATE_PER_ADDRESS="5r/s",
        GATEWAY_BURST_PER_ADDRESS="5",
    ).start()
    try:
        session = requests.Session()
        statuses, start = [], time.monotonic()
        for attempt in range(30):
            response = session.post(
                f"{gateway.url}/invocations",
                json=PAYLOAD,
                headers={"X-API-Key": f"guess-{attempt:04d}-0123456789abcdef0123456789"},
                verify=gateway.ca_cert,
                timeout=10,
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert response.json()["error"]["code"] == "rate_limited"
        elapsed = time.monotonic() - start
    finally:
        gateway.stop()
    refused, limited = statuses.count(401), statuses.count(429)
    print(f"30 wrong keys in {elapsed:.2f} s at 5r/s burst 5: {refused} x 401, {limited} x 429")
    assert refused + limited == 30, statuses
    # At most the burst plus what the rate refills while the requests run.
    assert 1 <= refused <= 5 + 1 + 5 * elapsed, statuses
    assert limited >= 30 - (5 + 1 + 5 * elapsed), statuses


def test_case_flipped_key_is_refused(gateway_stack):
    key = gateway_stack.api_key
    assert key.swapcase() != key
    for candidate, status in [
        (key, 200),
        (key.swapcase(), 401),
        (key.upper(), 401),
        (key + "x", 401),
        ("x" + key, 401),
    ]:
        response = requests.post(
            f"{gateway_stack.url}/invocations",
            json=PAYLOAD,
            headers={"X-API-Key": candidate},
            verify=gateway_stack.ca_cert,
            timeout=30,
        )
        assert response.status_code == status, (candidate == key, response.text)


@pytest.mark.parametrize(
    "query",
    [
        "api%5Fkey={key}",
        "API%5fKEY={key}",
        "%61pi_key={key}",
        "api_key%3D={key}",
        "x-api-key={key}",
        "apikey={key}",
        "key={key}",
        "token={key}",
        "access_token={key}",
        "client_secret={key}",
        "password={key}",
        "a=1&Authorization={key}",
        "a=1;session={key}",
    ],
)
def test_secret_parameter_names_in_the_url_are_refused(gateway_stack, query):
    """Even with a valid key in the header; before any body is read (a huge Content-Length
    still gets the 401, not a 413)."""
    path = "/invocations?" + query.format(key=gateway_stack.api_key)
    status, headers, body = raw_request(
        gateway_stack.gateway,
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {gateway_stack.api_key}\r\n"
        "Content-Length: 99999999\r\nConnection: close\r\n\r\n".encode(),
    )
    assert status == 401, body
    assert "URL" in assert_json_error(status, headers, body)["error"]["message"]


MALFORMED = {
    "nul byte": (b"GET /%00 HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
    "above the root": (b"GET /../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
    "lowercase method": (b"get /model HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
    "options star": (b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
    "uri too long": (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414),
    "header too large": (
        b"GET /model HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n",
        431,
    ),
    "no host": (b"GET /model HTTP/1.1\r\n\r\n", 400),
    "unknown method": (b"BREW /invocations HTTP/1.1\r\nHost: localhost\r\n\r\n", 405),
    "unknown transfer encoding": (
        b"POST /invocations HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    ),
    "http version": (b"GET /model HTTP/2.0\r\nHost: localhost\r\n\r\n", 505),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_get_json_with_a_fixed_text(gateway_stack, case):
    request, expected = MALFORMED[case]
    status, headers, body = raw_request(gateway_stack.gateway, request)
    assert status == expected, body[:300]
    error = assert_json_error(status, headers, body)["error"]
    for echoed in (b"BREW", b"passwd", b"aaaaaaaaaa", b"gzip"):
        assert echoed.decode() not in json.dumps(error)


def test_plain_http_on_the_https_port_gets_json(gateway_stack):
    request = b"GET /model HTTP/1.1\r\nHost: localhost\r\n\r\n"
    status, headers, body = raw_request(gateway_stack.gateway, request, tls=False)
    assert status == 400
    assert_json_error(status, headers, body)


def test_malformed_request_on_the_redirect_port_gets_json(gateway_stack):
    with socket.create_connection(("127.0.0.1", gateway_stack.gateway.http_port), 10) as sock:
        sock.sendall(b"GET /%00 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 400
    assert_json_error(status, headers, body)


@pytest.mark.parametrize(
    "path", ["/_gateway/error/500", "/_gateway/error/503", "/_gateway/key-check"]
)
def test_internal_pages_are_not_reachable(gateway_stack, path):
    response = requests.get(
        f"{gateway_stack.url}{path}",
        headers={"X-API-Key": gateway_stack.api_key},
        verify=gateway_stack.ca_cert,
        timeout=10,
    )
    assert response.status_code == 404


def send_markers(gateway_stack) -> tuple[str, int]:
    """A marker in the query (secret names, encoded too), the path, the method, every kind of
    header and the body, valid key or not, oversized or malformed; returns it and how many
    requests carried it."""
    marker = f"marker{uuid.uuid4().hex}"
    gateway, key = gateway_stack.gateway, gateway_stack.api_key
    requests_sent = [
        f"GET /model?api_key={marker} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        f"GET /model?api%5Fkey={marker} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {key}\r\n\r\n",
        f"POST /invocations?token={marker} HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Length: 99999999\r\n\r\n",
        f"POST /{marker} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999\r\n\r\n",
        f"GET /{marker}%00 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        f"GET /{marker}/../../.. HTTP/1.1\r\nHost: localhost\r\n\r\n",
        f"{marker.upper()} /invocations HTTP/1.1\r\nHost: localhost\r\n\r\n",
        f"GET /model HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {marker}\r\n\r\n",
        f"GET /model HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {key}\r\n"
        f"Authorization: Bearer {marker}\r\nCookie: session={marker}\r\n"
        f"X-Anything: {marker}\r\nUser-Agent: {marker}\r\nReferer: https://{marker}/\r\n\r\n",
        f"GET /healthz HTTP/1.1\r\nHost: {marker}.example\r\n\r\n",
        f"GET /model HTTP/1.1\r\nHost: localhost\r\nX-Big: {marker}{'a' * 10000}\r\n\r\n",
    ]
    for text in requests_sent:
        raw_request(gateway, text.encode())
    body = json.dumps({"dataframe_records": [{"annual_income": marker}]})
    response = requests.post(
        f"{gateway_stack.url}/invocations",
        data=body,
        headers={"X-API-Key": key, "Content-Type": "application/json"},
        verify=gateway_stack.ca_cert,
        timeout=30,
    )
    assert response.status_code == 400 and marker not in response.text
    time.sleep(0.5)  # nginx writes its log lines after the response
    return marker, len(requests_sent) + 1


def test_no_marker_sent_anywhere_reaches_a_gateway_log(gateway_stack):
    gateway = gateway_stack.gateway
    access = Path(gateway.env["GATEWAY_ACCESS_LOG"])
    before = access.read_text().count("\n")
    marker, sent = send_markers(gateway_stack)
    assert access.read_text().count("\n") - before >= sent, "every request is logged"
    files = [access, Path(gateway.env["GATEWAY_ERROR_LOG"]), *gateway.workdir.glob("*.log")]
    for path in files:
        assert marker not in path.read_text(errors="replace").lower(), f"marker in {path}"


def test_no_marker_sent_anywhere_reaches_the_model_servers_log(gateway_stack):
    marker, _ = send_markers(gateway_stack)
    for path in gateway_stack.model_server.workdir.glob("*.log"):
        assert marker not in path.read_text(errors="replace").lower(), f"marker in {path}"


def test_native_listen_address_binds_one_interface(gateway_stack, tls_dir, tmp_path):
    """GATEWAY_LISTEN_ADDRESS=127.0.0.1 (what `make up` sets): no server on other addresses."""
    gateway = Gateway(
        tmp_path / "loopback",
        tls_dir,
        gateway_stack.gateway.keys_file,
        f"127.0.0.1:{free_port()}",
        GATEWAY_LISTEN_ADDRESS="127.0.0.1",
    )
    rendered = gateway.render()
    assert rendered.returncode == 0, rendered.stderr
    config = (gateway.runtime / "conf.d" / "gateway.conf").read_text()
    listens = [line.strip() for line in config.splitlines() if line.strip().startswith("listen")]
    assert listens and all(line.startswith("listen 127.0.0.1:") for line in listens), listens


def test_keys_file_with_plain_entries_is_refused(gateway_stack, tls_dir, tmp_path):
    """A plain map entry would match the key in any case: render.sh refuses the old format,
    and `keys.py upgrade` rewrites it."""
    keys = tmp_path / "old.map"
    keys.write_text('"AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcd" "old";  # id=old/1 created=x\n')
    gateway = Gateway(tmp_path / "old", tls_dir, keys, "127.0.0.1:1")
    rendered = gateway.render()
    assert rendered.returncode != 0 and "upgrade" in rendered.stderr
    gateway.keys("--no-reload", "upgrade")
    assert keys.read_text().splitlines()[-1].startswith('"~^AbCdEfGh')
    assert gateway.render().returncode == 0
