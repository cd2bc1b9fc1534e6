"""Batching in the real gunicorn model server: every request gets its own, unbatched answer.

Each expected answer is what MLflow's own scoring app (`scoring_server.init`, driven in this
process, no server) answers for that request's body alone, compared byte for byte. The
credit-risk model is the real trained pipeline; tests/testdata/picky_model.py is a row-wise
model that fails on one contract-valid value (isolation) and answers `params` (grouping).
"""

from __future__ import annotations

import asyncio
import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from serving.asgi import CapturedResponse, replay
from stack.services import ROOT, ModelServer
from tests.integration.test_input_contract import SLOW_CONTRACT, check_error, metric
from tests.integration.test_model_server_api import applicants, records

MODEL_URI = "models:/credit-risk@champion"
PICKY_MODEL_CODE = ROOT / "tests" / "testdata" / "picky_model.py"
# The slow model's contract: x (a number >= 0) and kind ("a" or "b").
PICKY_CONTRACT = SLOW_CONTRACT
POISON = 13.0
JSON = {"Content-Type": "application/json"}
MARKER = "Mark555Zq"


def mlflow_answer(app, body: bytes) -> tuple[int, bytes]:
    """POST /invocations to MLflow's own app in this process: (status, body)."""
    response = CapturedResponse()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/invocations", "raw_path": b"/invocations",
        "query_string": b"", "root_path": "", "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    asyncio.run(app(scope, replay(body), response.send))
    return response.status, response.body


def mlflow_app_for(tracking_uri: str, model_uri: str):
    import mlflow
    from mlflow.pyfunc import scoring_server

    mlflow.set_tracking_uri(tracking_uri)
    return scoring_server.init(mlflow.pyfunc.load_model(model_uri))


def post_all(url: str, bodies: list[bytes], concurrency: int = 32) -> list[requests.Response]:
    def one(body: bytes) -> requests.Response:
        return requests.post(f"{url}/invocations", data=body, headers=JSON, timeout=60)

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, bodies))


def merged_calls(url: str) -> float:
    """Requests scored minus model calls made by the batcher: > 0 once a call was shared."""
    return metric(url, "model_server_batch_requests_sum") - metric(
        url, "model_server_batch_requests_count"
    )


# ------------------------------------------------------------------ the credit-risk model
@pytest.fixture(scope="module")
def server(trained_registry, tmp_path_factory):
    # 32 client threads on fresh connections can land mostly on one worker (bench/README.md,
    # "Connection balance"); the concurrency cap is tested in test_input_contract.py, and here
    # it must not turn that imbalance into 503s.
    model_server = ModelServer(
        tmp_path_factory.mktemp("batching-server"),
        trained_registry.uri,
        MODEL_URI,
        workers=2,
        max_concurrent_predictions="64",
    ).start()
    yield model_server
    model_server.stop()


@pytest.fixture(scope="module")
def reference_app(trained_registry):
    return mlflow_app_for(trained_registry.uri, MODEL_URI)


def credit_bodies(count: int) -> list[tuple[bytes, str | None]]:
    """`count` bodies of 1-4 distinct rows; every seventh is invalid (its expected code)."""
    rows = records(applicants(4 * count, seed=23))
    random.Random(5).shuffle(rows)
    bodies, start = [], 0
    for i in range(count):
        size = 1 + i % 4
        chunk = [dict(row) for row in rows[start : start + size]]
        start += size
        code = None
        if i % 7 == 3:
            chunk[0]["home_ownership"] = MARKER
            code = "unknown_category"
        elif i % 7 == 5:
            for row in chunk:
                del row["term"]
            code = "missing_columns"
        if i % 2:
            body = {"dataframe_records": chunk}
        else:  # the columns of the first row: without "term" when it lacks it
            columns = list(chunk[0])
            data = [[row.get(c) for c in columns] for row in chunk]
            body = {"dataframe_split": {"columns": columns, "data": data}}
        bodies.append((json.dumps(body).encode(), code))
    return bodies


def test_concurrent_distinct_requests_each_get_mlflows_own_answer_bytes(server, reference_app):
    bodies = credit_bodies(160)
    merged_before = merged_calls(server.url)
    answers = post_all(server.url, [body for body, _ in bodies])
    for (body, code), answer in zip(bodies, answers, strict=True):
        if code is not None:
            check_error(answer, 400, code)
            assert MARKER not in answer.text
            continue
        status, expected = mlflow_answer(reference_app, body)
        assert status == 200 and answer.status_code == 200, answer.text[:300]
        assert answer.content == expected
        assert answer.headers["Content-Type"] == "application/json"
    # The load above did share model calls (else this test would prove nothing).
    assert merged_calls(server.url) > merged_before


def test_metrics_hold_batch_and_queue_wait_histograms_per_worker(server):
    post_all(server.url, [body for body, code in credit_bodies(40) if code is None])
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    for name in (
        "model_server_batch_requests_bucket",
        "model_server_batch_rows_bucket",
        "model_server_queue_wait_seconds_bucket",
        "model_server_worker_requests_total",
    ):
        assert f"{name}{{" in text, name
    workers = {line.split('worker="')[1].split('"')[0] for line in text.splitlines()
               if line.startswith("model_server_batch_requests_count{")}  # fmt: skip
    assert workers and workers <= {"0", "1", "2", "3"}, workers


# -------------------------------------------------------------------- the picky model
def register_picky(uri: str) -> None:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(uri)
    example = pd.DataFrame({"x": [1.0], "kind": ["a"]})
    output = pd.DataFrame({"probability": [0.5], "label": [0]})
    experiment = mlflow.MlflowClient(uri).create_experiment("picky-model")
    with mlflow.start_run(experiment_id=experiment):
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PICKY_MODEL_CODE),
            signature=infer_signature(example, output, params={"reasons": 0}),
            input_example=example,
            metadata={"input_contract": PICKY_CONTRACT},
            registered_model_name="picky-model",
            pip_requirements=["mlflow"],
        )


@pytest.fixture(scope="module")
def picky(trained_registry, tmp_path_factory):
    register_picky(trained_registry.uri)
    # One worker: every concurrent request meets the same batcher.
    model_server = ModelServer(
        tmp_path_factory.mktemp("picky-server"),
        trained_registry.uri,
        "models:/picky-model/1",
        workers=1,
        max_concurrent_predictions="64",
    ).start()
    yield model_server, mlflow_app_for(trained_registry.uri, "models:/picky-model/1")
    model_server.stop()


def picky_body(i: int, params: dict | None = None, poison: bool = False) -> bytes:
    rows = [{"x": float(i * 3 + k), "kind": "ab"[(i + k) % 2]} for k in range(1 + i % 3)]
    if poison:
        rows[-1]["x"] = POISON
    body: dict = {"dataframe_records": rows}
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode()


def test_a_request_that_fails_the_model_fails_alone(picky):
    server, reference = picky
    bodies = [picky_body(i + 5, poison=i % 10 == 4) for i in range(120)]
    merged_before = merged_calls(server.url)
    answers = post_all(server.url, bodies)
    for i, (body, answer) in enumerate(zip(bodies, answers, strict=True)):
        if i % 10 == 4:
            check_error(answer, 500, "model_error")
            continue
        assert answer.status_code == 200, answer.text[:300]
        assert answer.content == mlflow_answer(reference, body)[1]
    assert merged_calls(server.url) > merged_before


def test_params_reach_the_model_and_only_equal_params_share_a_call(picky):
    server, reference = picky
    choices = [None, {}, {"reasons": 2}, {"reasons": 3}]
    bodies = [picky_body(i + 50, choices[i % 4]) for i in range(120)]
    answers = post_all(server.url, bodies)
    for body, answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 200, answer.text[:300]
        assert answer.content == mlflow_answer(reference, body)[1]
    with_reasons = [a.json()["predictions"][0] for a, b in zip(answers, bodies, strict=True)
                    if b"reasons" in b]  # fmt: skip
    assert all("reasons" in p for p in with_reasons)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"reason": 2}, "unknown_params"),
        ({MARKER: 1}, "unknown_params"),
        ({"reasons": MARKER}, "invalid_params"),
        ({"reasons": [1, 2]}, "invalid_params"),
        ([MARKER], "invalid_params"),
    ],
)
def test_bad_params_are_a_400_that_names_no_value(picky, params, code):
    server, _ = picky
    calls = metric(server.url, "model_server_model_calls_total")
    answer = requests.post(
        f"{server.url}/invocations", data=picky_body(1, params), headers=JSON, timeout=30
    )
    check_error(answer, 400, code)
    assert MARKER not in answer.text
    assert metric(server.url, "model_server_model_calls_total") == calls
