"""The decision log wired into the request path: requests through the real gateway to the real
model server (batch path) leave exactly their scored rows in the log (SQLite in tmp_path, and
real PostgreSQL), with the served version and the API key's name from the gateway, never a
client's."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests

from serving.decisions import open_store
from serving.decisions.stores import StoreError
from stack.services import ROOT, wait_until
from tests.integration.conftest import running_gateway_stack

PAYLOAD = json.loads((ROOT / "tests" / "testdata" / "predict-one.json").read_text())
SPLIT = json.loads((ROOT / "tests" / "testdata" / "predict-split.json").read_text())
KEY_NAME = "apex-test"  # the key running_gateway_stack creates


@pytest.fixture(params=["sqlite", "postgresql"])
def logged_stack(request, trained_registry, tls_dir, tmp_path):
    """The gateway stack with the decision log in a store of each kind: a SQLite file in
    tmp_path, or a fresh PostgreSQL database migrated first (as compose and Kubernetes do)."""
    if request.param == "postgresql":
        uri = request.getfixturevalue("postgres_database")
        store = open_store(uri)
        store.migrate()
        store.close()
    else:
        uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    env = {"DECISIONS_STORE_URI": uri, "DECISIONS_FLUSH_INTERVAL": "0.2"}
    with running_gateway_stack(trained_registry, tls_dir, tmp_path, env) as stack:
        yield stack, uri


def post(stack, payload, key, headers=None):
    response = requests.post(
        f"{stack.url}/invocations",
        json=payload,
        headers={**({"X-API-Key": key} if key else {}), **(headers or {})},
        verify=stack.ca_cert,
        timeout=30,
    )
    return response


def records(count: int) -> dict:
    """`count` rows of the one-row payload, each with its own income (to tell them apart)."""
    row = PAYLOAD["dataframe_records"][0]
    return {
        "dataframe_records": [
            {**row, "annual_income": 40000.0 + 1000 * index} for index in range(count)
        ]
    }


def read_all(uri: str):
    store = open_store(uri)
    try:
        now = datetime.now(UTC)
        return store.read(now - timedelta(hours=1), now + timedelta(hours=1))
    except StoreError:
        return []  # no decision written yet: the file appears with the first batch
    finally:
        store.close()


def test_scored_rows_are_logged_with_version_and_key_name_and_refused_ones_are_not(
    logged_stack,
):
    stack, uri = logged_stack
    bad_type = copy.deepcopy(PAYLOAD)
    bad_type["dataframe_records"][0]["annual_income"] = "a lot"
    unknown_column = records(2)
    unknown_column["dataframe_records"][1]["favourite_colour"] = "blue"

    scored: dict[str, tuple[int, dict]] = {}  # request id -> (rows, payload)
    refused: list[str] = []
    plan = [
        (PAYLOAD, stack.api_key, None, 200),
        (records(5), stack.api_key, None, 200),
        (bad_type, stack.api_key, None, 400),
        (SPLIT, stack.api_key, None, 200),
        (PAYLOAD, None, None, 401),  # no key: the gateway refuses it
        (PAYLOAD, "not-a-key", None, 401),
        (unknown_column, stack.api_key, None, 400),
        (records(3), stack.api_key, {"X-Client": "forged-name"}, 200),
        (PAYLOAD, stack.api_key, {"X-Client": "forged-name"}, 200),
    ]
    for payload, key, headers, status in plan:
        response = post(stack, payload, key, headers)
        request_id = response.headers["X-Request-ID"]
        if status == 200:
            assert response.status_code == 200, response.text
            assert response.headers["X-Model-Version"] == "1"
            rows = len(payload.get("dataframe_records") or payload["dataframe_split"]["data"])
            assert len(response.json()["predictions"]) == rows
            scored[request_id] = (rows, payload)
        else:
            assert 400 <= response.status_code < 500, response.text
            refused.append(request_id)

    expected = {(rid, index) for rid, (rows, _) in scored.items() for index in range(rows)}
    assert len(expected) == 1 + 5 + 3 + 3 + 1

    def logged() -> bool:
        return {(d.request_id, d.row_index) for d in read_all(uri)} >= expected

    wait_until(logged, 30, "every scored row in the decision log")
    # Stopping the server shuts its workers down (the writers flush): nothing more can come.
    stack.model_server.stop()
    decisions = read_all(uri)

    assert sorted((d.request_id, d.row_index) for d in decisions) == sorted(expected)
    assert not {d.request_id for d in decisions} & set(refused)
    assert {d.key_name for d in decisions} == {KEY_NAME}  # never "forged-name"
    assert {(d.model_name, d.model_version, d.role) for d in decisions} == {
        ("credit-risk", "1", "champion")
    }
    assert {d.input_mode for d in decisions} == {"full"}
    for decision in decisions:
        rows, payload = scored[decision.request_id]
        if "dataframe_records" in payload:
            sent = payload["dataframe_records"][decision.row_index]
        else:
            split = payload["dataframe_split"]
            sent = dict(zip(split["columns"], split["data"][decision.row_index], strict=True))
        assert decision.inputs == sent
        assert decision.latency_ms > 0
        assert decision.outputs, decision
