"""Shadow scoring of `@challenger` wired into the real model server (supervisor + gunicorn).

The trained registry (v1 boosted trees @champion, v2 logistic regression) and a real model
server with SHADOW_SHARE=1: the champion's answers are MLflow's own bytes for each request and
carry X-Model-Version 1 whatever the challenger does; challenger decisions land in the
decision log (SQLite in the server's workdir) under the champion's request ids; `make
compare`'s code reports the agreement the two models really have on those rows; a challenger
that raises is counted and never seen; the alias moving, being deleted or pointing at a
version that fails its check is followed. Also MLflow's own path (batching off, a model
without a contract): its decisions and shadow decisions are logged too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import mlflow
import pandas as pd
import pytest
import requests

from serving.decisions import DecisionSettings, InputMode, open_store
from serving.decisions.stores import StoreError
from stack.services import ROOT, ModelServer, run_cli, wait_until
from tests.integration.test_input_contract import metric
from tests.integration.test_model_server_api import applicants, records
from tests.integration.test_model_server_batching import mlflow_answer, mlflow_app_for
from tests.integration.test_model_server_swaps import register_broken
from training.compare import compare, paired_decisions

MODEL = "credit-risk"
KEY_NAME = "apex-test"
RAISING_MODEL_CODE = ROOT / "tests" / "testdata" / "shadow_raising_model.py"
SHADOW_ENV = {"SHADOW_SHARE": "1", "DECISIONS_FLUSH_INTERVAL": "0.2"}


@pytest.fixture(scope="module")
def shadow_server(trained_registry, tmp_path_factory):
    trained_registry.set_champion("1")
    trained_registry.client.set_registered_model_alias(MODEL, "challenger", "1")
    server = ModelServer(
        tmp_path_factory.mktemp("shadow-server"),
        trained_registry.uri,
        f"models:/{MODEL}@champion",
        workers=2,
        poll_interval=1,
        env=SHADOW_ENV,
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reference_app(trained_registry):
    """MLflow's own scoring app on v1 in this process: the bytes an answer must have."""
    return mlflow_app_for(trained_registry.uri, f"models:/{MODEL}/1")


@pytest.fixture(scope="module")
def local_models(trained_registry):
    mlflow.set_tracking_uri(trained_registry.uri)
    return {v: mlflow.pyfunc.load_model(f"models:/{MODEL}/{v}") for v in ("1", "2")}


def model_info(server: ModelServer) -> dict:
    # A fresh connection each time: it lands on whichever worker accepts it.
    return requests.get(f"{server.url}/model", timeout=10).json()


def point_challenger(registry, server: ModelServer, version: str | None) -> None:
    """Move (or delete) @challenger and wait until consecutive answers of /model, from any
    worker, show that challenger (the supervisor checked it and the workers reloaded)."""
    if version is None:
        try:
            registry.client.delete_registered_model_alias(MODEL, "challenger")
        except mlflow.exceptions.MlflowException:
            pass  # already absent
    else:
        registry.client.set_registered_model_alias(MODEL, "challenger", version)

    def shown() -> bool:
        for _ in range(6):
            challenger = model_info(server)["challenger"]
            if (challenger["version"] if challenger else None) != version:
                return False
        return True

    wait_until(shown, 90, f"challenger {version} loaded by every worker")


def post_rows(server: ModelServer, frame: pd.DataFrame, prefix: str, reference_app=None):
    """POST the frame's rows in requests of 1-4 rows (ids `prefix-N`, the gateway's key name
    header); every answer is checked against MLflow's own bytes. Returns {request id: rows}."""
    rows = records(frame)
    sent, start, index = {}, 0, 0
    while start < len(rows):
        chunk = rows[start : start + 1 + index % 4]
        body = json.dumps({"dataframe_records": chunk}).encode()
        request_id = f"{prefix}-{index}"
        response = requests.post(
            f"{server.url}/invocations",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Request-ID": request_id,
                "X-Client": KEY_NAME,
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text[:300]
        assert response.headers["X-Model-Version"] == "1"
        assert response.headers["X-Request-ID"] == request_id
        if reference_app is not None:
            status, expected = mlflow_answer(reference_app, body)
            assert status == 200 and response.content == expected
        sent[request_id] = chunk
        start += len(chunk)
        index += 1
    return sent


def store_uri(server: ModelServer) -> str:
    return server.env["DECISIONS_STORE_URI"]


def logged(server: ModelServer, request_ids) -> list:
    store = open_store(store_uri(server))
    try:
        now = datetime.now(UTC)
        decisions = store.read(now - timedelta(hours=1), now + timedelta(hours=1))
    except StoreError:
        return []  # the file appears with the first batch
    finally:
        store.close()
    wanted = set(request_ids)
    return [d for d in decisions if d.request_id in wanted]


def wait_for_roles(server: ModelServer, sent: dict, roles: set[str]) -> list:
    """Wait until every sent row has a decision of each role; the decisions of `sent`."""
    expected = {(rid, i, role) for rid, rows in sent.items() for i in range(len(rows))
                for role in roles}  # fmt: skip

    def complete() -> bool:
        return {(d.request_id, d.row_index, d.role) for d in logged(server, sent)} >= expected

    wait_until(complete, 60, f"{roles} decisions of every sent row")
    return logged(server, sent)


def comparison_of(server: ModelServer, sent: dict):
    """`make compare`'s own functions over the decisions of exactly these requests."""
    settings = DecisionSettings(store_uri=store_uri(server), mode=InputMode.OFF)
    now = datetime.now(UTC)
    pairs = paired_decisions(settings, MODEL, now - timedelta(hours=1), now + timedelta(hours=1))
    return compare(pairs[pairs.request_id.isin(set(sent))])


def expected_agreement(local_models, frame: pd.DataFrame, challenger: str) -> dict:
    ours, theirs = local_models["1"].predict(frame), local_models[challenger].predict(frame)
    return {
        "agreement": float((ours["label"] == theirs["label"]).mean()),
        "approved_refused": int(((ours["label"] == 0) & (theirs["label"] == 1)).sum()),
        "refused_approved": int(((ours["label"] == 1) & (theirs["label"] == 0)).sum()),
        "pearson": float(ours["probability"].corr(theirs["probability"])),
    }


def test_an_identical_challenger_agrees_fully_and_the_answers_are_the_champions(
    trained_registry, shadow_server, reference_app
):
    point_challenger(trained_registry, shadow_server, "1")
    info = model_info(shadow_server)
    assert info["challenger"]["share"] == 1.0 and info["challenger"]["alias"] == "challenger"
    scored_before = metric(shadow_server.url, "model_server_shadow_scored_total")
    frame = applicants(60, seed=101)
    sent = post_rows(shadow_server, frame, "same", reference_app)

    decisions = wait_for_roles(shadow_server, sent, {"champion", "challenger"})
    by_role = {}
    for d in decisions:
        by_role.setdefault(d.role, []).append(d)
    assert len(by_role["champion"]) == len(by_role["challenger"]) == len(frame)
    assert {(d.model_version, d.key_name) for d in by_role["challenger"]} == {("1", KEY_NAME)}
    champion_rows = {(d.request_id, d.row_index): d for d in by_role["champion"]}
    for d in by_role["challenger"]:
        assert d.inputs == champion_rows[(d.request_id, d.row_index)].inputs
    assert metric(shadow_server.url, "model_server_shadow_scored_total") >= scored_before + len(
        sent
    )

    [report] = comparison_of(shadow_server, sent)
    assert (report.champion_version, report.challenger_version) == ("1", "1")
    assert report.rows == len(frame) and report.requests == len(sent)
    assert report.agreement == 1.0
    assert report.approved_by_champion_refused_by_challenger == 0
    assert report.refused_by_champion_approved_by_challenger == 0
    assert report.pearson == pytest.approx(1.0)


def test_a_moved_challenger_is_followed_and_compare_gives_the_two_models_swap_set(
    trained_registry, shadow_server, reference_app, local_models
):
    point_challenger(trained_registry, shadow_server, "1")
    point_challenger(trained_registry, shadow_server, "2")  # the poll follows the move
    frame = applicants(200, seed=102)
    sent = post_rows(shadow_server, frame, "moved", reference_app)
    decisions = wait_for_roles(shadow_server, sent, {"champion", "challenger"})
    assert {d.model_version for d in decisions if d.role == "challenger"} == {"2"}

    expected = expected_agreement(local_models, frame, "2")
    [report] = comparison_of(shadow_server, sent)
    assert (report.champion_version, report.challenger_version) == ("1", "2")
    assert report.rows == len(frame)
    assert report.agreement == pytest.approx(expected["agreement"])
    assert expected["agreement"] < 1.0, "two different models: the test needs some swaps"
    assert report.approved_by_champion_refused_by_challenger == expected["approved_refused"]
    assert report.refused_by_champion_approved_by_challenger == expected["refused_approved"]
    assert report.pearson == pytest.approx(expected["pearson"])

    # The command itself (`make compare`) reports the pair from the same log.
    result = run_cli(
        "training.compare", tracking_uri=trained_registry.uri,
        env={"DECISIONS_STORE_URI": store_uri(shadow_server)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "champion v1 vs challenger v2" in result.stdout


def test_a_deleted_challenger_stops_the_shadow(trained_registry, shadow_server, reference_app):
    point_challenger(trained_registry, shadow_server, "2")
    point_challenger(trained_registry, shadow_server, None)
    assert model_info(shadow_server)["challenger"] is None
    metrics = requests.get(f"{shadow_server.url}/metrics", timeout=10).text
    assert "model_server_challenger_version_info{" not in metrics
    sent = post_rows(shadow_server, applicants(20, seed=103), "deleted", reference_app)
    decisions = wait_for_roles(shadow_server, sent, {"champion"})
    assert {d.role for d in decisions} == {"champion"}


def register_raising(registry, example_incomes) -> str:
    """A challenger that passes its check (its input example is the champion's) and raises on
    every live row (tests/testdata/shadow_raising_model.py)."""
    mlflow.set_tracking_uri(registry.uri)
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(RAISING_MODEL_CODE),
            model_config={"example_incomes": example_incomes},
            signature=champion.metadata.signature,
            input_example=champion.input_example,
            registered_model_name=MODEL,
            pip_requirements=["mlflow"],
        )
    return str(info.registered_model_version)


def test_a_challenger_that_raises_is_counted_and_never_affects_an_answer(
    trained_registry, shadow_server, reference_app
):
    example = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").input_example
    incomes = [float(v) for v in example["annual_income"]]
    version = register_raising(trained_registry, incomes)
    point_challenger(trained_registry, shadow_server, version)
    errors_before = metric(shadow_server.url, "model_server_shadow_errors_total")
    frame = applicants(40, seed=104)
    assert not set(frame["annual_income"].astype(float)) & set(incomes)
    sent = post_rows(shadow_server, frame, "raising", reference_app)

    wait_until(
        lambda: metric(shadow_server.url, "model_server_shadow_errors_total")
        >= errors_before + len(sent),
        60,
        "every shadowed request counted as a challenger error",
    )
    # Every shadow attempt is over (counted): no challenger decision can still come.
    decisions = wait_for_roles(shadow_server, sent, {"champion"})
    assert {d.role for d in decisions} == {"champion"}
    log = shadow_server.log_text()
    assert "RuntimeError" in log and f"challenger v{version} raised" in log
    assert "secret challenger internals" not in log


def test_a_challenger_that_fails_its_check_is_not_loaded(
    trained_registry, shadow_server, reference_app, tmp_path
):
    point_challenger(trained_registry, shadow_server, "1")
    failed_before = model_info(shadow_server)["challenger_checks"]["failed"]
    broken = register_broken(trained_registry, tmp_path)  # raises on its own input example
    trained_registry.client.set_registered_model_alias(MODEL, "challenger", broken)

    def reported() -> bool:
        failure = model_info(shadow_server)["challenger_checks"]["last_failure"]
        return failure is not None and failure["version"] == broken

    wait_until(reported, 60, f"failed check of challenger {broken} reported")
    info = model_info(shadow_server)
    assert info["challenger_checks"]["failed"] > failed_before
    assert "fails on its own input example" in info["challenger_checks"]["last_failure"]["reason"]
    # The champion serves on, and the challenger that passed stays the shadow.
    assert info["version"] == "1" and info["challenger"]["version"] == "1"
    assert metric(shadow_server.url, "model_server_challenger_check_failures_total") >= 1
    post_rows(shadow_server, applicants(8, seed=105), "broken", reference_app)


def test_mlflows_own_path_logs_the_decisions_and_the_shadow(
    trained_registry, tmp_path, local_models
):
    """SERVING_BATCHING=false: every request goes through MLflow's app; the predict hook keeps
    what it scored and the wrapper records it after the answer."""
    trained_registry.set_champion("1")
    trained_registry.client.set_registered_model_alias(MODEL, "challenger", "2")
    server = ModelServer(
        tmp_path / "unbatched", trained_registry.uri, f"models:/{MODEL}@champion",
        workers=1, batching="false", env=SHADOW_ENV,
    ).start()  # fmt: skip
    try:
        assert model_info(server)["challenger"]["version"] == "2"
        frame = applicants(60, seed=106)
        sent = post_rows(server, frame, "unbatched")
        refused = requests.post(
            f"{server.url}/invocations",
            json={"dataframe_records": [{**records(frame)[0], "term": "forever"}]},
            headers={"X-Request-ID": "unbatched-refused"},
            timeout=30,
        )
        assert refused.status_code == 400
        decisions = wait_for_roles(server, sent, {"champion", "challenger"})
        assert len(decisions) == 2 * len(frame)
        for d in decisions:
            assert d.inputs == sent[d.request_id][d.row_index]
            assert d.key_name == KEY_NAME and d.latency_ms > 0
        expected = expected_agreement(local_models, frame, "2")
        [report] = comparison_of(server, sent)
        assert report.agreement == pytest.approx(expected["agreement"])
        assert report.approved_by_champion_refused_by_challenger == expected["approved_refused"]
        server.stop()  # the workers flush: nothing more can come
        assert not logged(server, ["unbatched-refused"])
    finally:
        server.stop()


def test_a_model_without_a_contract_logs_its_decisions(trained_registry, tmp_path):
    """A model logged before input contracts is scored by MLflow's app: its scored rows are
    logged, a request the model fails on is not."""
    version = register_broken(trained_registry, tmp_path, name="no-contract", only_negative=True)
    server = ModelServer(
        tmp_path / "no-contract", trained_registry.uri, f"models:/no-contract/{version}",
        workers=1, env={"DECISIONS_FLUSH_INTERVAL": "0.2"},
    ).start()  # fmt: skip
    try:
        assert model_info(server)["contract"] is None
        rows = records(applicants(3, seed=107))
        ok = requests.post(
            f"{server.url}/invocations", json={"dataframe_records": rows},
            headers={"X-Request-ID": "plain-ok"}, timeout=30,
        )  # fmt: skip
        assert ok.status_code == 200, ok.text[:300]
        failed = requests.post(
            f"{server.url}/invocations",
            json={"dataframe_records": [{**rows[0], "annual_income": -1.0}]},
            headers={"X-Request-ID": "plain-failed"},
            timeout=30,
        )
        assert failed.status_code == 500
        decisions = wait_for_roles(server, {"plain-ok": rows}, {"champion"})
        assert sorted(d.row_index for d in decisions) == [0, 1, 2]
        assert {(d.model_name, d.model_version) for d in decisions} == {("no-contract", version)}
        assert [d.outputs["probability"] for d in sorted(decisions, key=lambda d: d.row_index)] == [
            row["annual_income"] for row in rows
        ]
        server.stop()
        assert not logged(server, ["plain-failed"])
    finally:
        server.stop()
