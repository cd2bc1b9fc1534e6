"""The input contract against the real model server and through the real nginx gateway.

The bad-input corpus below (CORPUS) is sent to the model server directly and through the
gateway: the same status and JSON error both ways, never a 5xx, no trace, no echo of the
marker each case carries, the model never called (its call counter in /metrics), and after
the whole corpus neither the model server's nor the gateway's logs hold any marker.
"""

from __future__ import annotations

import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import requests

from common import facts
from stack.services import ROOT, ModelServer, wait_until

PAYLOAD = json.loads((ROOT / "tests" / "testdata" / "predict-one.json").read_text())
ROW = PAYLOAD["dataframe_records"][0]
COLUMNS = list(ROW)
JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}
PARQUET = {"Content-Type": "application/vnd.apache.parquet"}
CALLS = "model_server_model_calls_total"


def mark(n: int) -> str:
    return f"Mark{n:03d}Zq"


def records(*rows: dict) -> bytes:
    return json.dumps({"dataframe_records": list(rows)}).encode()


def with_value(column: str, literal: str) -> bytes:
    """A one-row records body whose `column` holds `literal` as raw JSON text."""
    text = json.dumps({"dataframe_records": [{**ROW, column: "@@"}]})
    return text.replace('"@@"', literal).encode()


def split(columns, data, **extra) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": data, **extra}}).encode()


def csv_body(rows: list[dict], columns=COLUMNS) -> bytes:
    return pd.DataFrame(rows, columns=columns).to_csv(index=False).encode()


def row_values(row: dict = ROW) -> list:
    return [row[c] for c in COLUMNS]


def corpus() -> list[tuple[str, dict, bytes, int, str]]:
    """(id, headers, body, status, code); `m` is the case's unique marker where it fits."""
    cases = []

    def add(case_id, headers, body, status, code):
        cases.append((case_id, headers, body, status, code))

    n = iter(range(1, 1000))
    m = lambda: mark(next(n))  # noqa: E731 - a short counter for the table below
    cap = facts.MAX_ROWS
    # --- not JSON, not the format ---------------------------------------------------------
    add(
        "malformed-json",
        JSON,
        b'{"dataframe_records": [{"term": "' + m().encode(),
        400,
        "invalid_json",
    )
    add("invalid-utf8", JSON, b'{"dataframe_records": [{"term": "\xff\xfe"}]}', 400, "invalid_json")
    add("deep-nesting", JSON, b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json")
    add("array-body", JSON, json.dumps([ROW, m()]).encode(), 400, "invalid_format")
    add("number-body", JSON, b"42", 400, "invalid_format")
    add("string-body", JSON, json.dumps(m()).encode(), 400, "invalid_format")
    add(
        "two-format-keys",
        JSON,
        json.dumps({"dataframe_records": [ROW], "dataframe_split": {}}).encode(),
        400,
        "invalid_format",
    )
    add("instances-format", JSON, json.dumps({"instances": [ROW]}).encode(), 400, "invalid_format")
    add(
        "inputs-format",
        JSON,
        json.dumps({"inputs": {c: [v] for c, v in ROW.items()}}).encode(),
        400,
        "invalid_format",
    )
    add(
        "params-key",
        JSON,
        json.dumps({"dataframe_records": [ROW], "params": {"x": m()}}).encode(),
        400,
        "unknown_params",
    )
    add(
        "params-not-object",
        JSON,
        json.dumps({"dataframe_records": [ROW], "params": [m()]}).encode(),
        400,
        "invalid_params",
    )
    add(
        "records-not-list",
        JSON,
        json.dumps({"dataframe_records": ROW}).encode(),
        400,
        "invalid_format",
    )
    add("record-not-object", JSON, records(ROW, m()), 400, "invalid_format")
    add("empty-records", JSON, records(), 400, "empty_input")
    add("empty-split", JSON, split(COLUMNS, []), 400, "empty_input")
    add(
        "repeated-key-in-record",
        JSON,
        records(ROW)[:-3] + b', "term": "' + m().encode() + b'"}]}',
        400,
        "duplicate_keys",
    )
    add(
        "repeated-top-level-key",
        JSON,
        b'{"dataframe_records": [], "dataframe_records": ' + records(ROW)[22:],
        400,
        "duplicate_keys",
    )
    # --- content types --------------------------------------------------------------------
    add("no-content-type", {}, records(ROW), 415, "unsupported_media_type")
    add("text-plain", {"Content-Type": "text/plain"}, m().encode(), 415, "unsupported_media_type")
    add(
        "latin-1",
        {"Content-Type": "application/json; charset=latin-1"},
        records(ROW),
        415,
        "unsupported_media_type",
    )
    add(
        "unknown-parameter",
        {"Content-Type": "application/json; version=2"},
        records(ROW),
        415,
        "unsupported_media_type",
    )
    add("parquet-off", PARQUET, _parquet(pd.DataFrame([ROW])), 415, "unsupported_media_type")
    add(
        "x-parquet",
        {"Content-Type": "application/x-parquet"},
        b"PAR1",
        415,
        "unsupported_media_type",
    )
    add("xml", {"Content-Type": "application/xml"}, b"<a/>", 415, "unsupported_media_type")
    # --- columns --------------------------------------------------------------------------
    add(
        "missing-text-column",
        JSON,
        records({k: v for k, v in ROW.items() if k != "term"}),
        400,
        "missing_columns",
    )
    add(
        "only-text-columns",
        JSON,
        records({k: ROW[k] for k in ("term", "home_ownership", "loan_purpose")}),
        400,
        "missing_columns",
    )
    add(
        "missing-nullable-numeric",
        JSON,
        records({k: v for k, v in ROW.items() if k != "debt_to_income"}),
        400,
        "missing_columns",
    )
    add(
        "missing-in-second-row",
        JSON,
        records(ROW, {k: v for k, v in ROW.items() if k != "loan_amount"}),
        400,
        "missing_columns",
    )
    add("extra-column-name", JSON, records({**ROW, m(): 1.0}), 400, "unknown_columns")
    add("extra-column-value", JSON, records({**ROW, "colour": m()}), 400, "unknown_columns")
    add(
        "split-duplicate-columns",
        JSON,
        split([*COLUMNS, "term"], [[*row_values(), "x"]]),
        400,
        "duplicate_columns",
    )
    add(
        "split-object-column",
        JSON,
        split([*COLUMNS[:-1], {"x": m()}], [row_values()]),
        400,
        "unknown_columns",
    )
    add(
        "split-missing-column",
        JSON,
        split(COLUMNS[:-1], [row_values()[:-1]]),
        400,
        "missing_columns",
    )
    # --- dataframe_split shape ------------------------------------------------------------
    add(
        "split-index-longer",
        JSON,
        split(COLUMNS, [row_values()], index=[0, 1, 2]),
        400,
        "inconsistent_split",
    )
    add(
        "split-index-shorter",
        JSON,
        split(COLUMNS, [row_values()] * 2, index=[0]),
        400,
        "inconsistent_split",
    )
    add(
        "split-index-not-list",
        JSON,
        split(COLUMNS, [row_values()], index=m()),
        400,
        "inconsistent_split",
    )
    add("split-row-short", JSON, split(COLUMNS, [row_values()[:-1]]), 400, "inconsistent_split")
    add("split-row-long", JSON, split(COLUMNS, [[*row_values(), m()]]), 400, "inconsistent_split")
    add("split-row-object", JSON, split(COLUMNS, [ROW]), 400, "inconsistent_split")
    add(
        "split-no-data",
        JSON,
        json.dumps({"dataframe_split": {"columns": COLUMNS}}).encode(),
        400,
        "inconsistent_split",
    )
    add(
        "split-extra-key",
        JSON,
        split(COLUMNS, [row_values()], dtypes={"a": m()}),
        400,
        "inconsistent_split",
    )
    add("split-data-scalar", JSON, split(COLUMNS, m()), 400, "inconsistent_split")
    # --- numbers --------------------------------------------------------------------------
    for case_id, literal in [
        ("true-in-number", "true"),
        ("false-in-number", "false"),
        ("numeric-text", '"1000"'),
        ("marker-in-number", json.dumps(m())),
        ("decimal-comma", '"1234,5"'),
        ("empty-text-in-number", '""'),
        ("object-in-number", '{"v": 1}'),
        ("list-in-number", "[1]"),
        ("inf-text", '"inf"'),
    ]:
        add(case_id, JSON, with_value("annual_income", literal), 400, "invalid_type")
    for case_id, literal in [
        ("infinity", "Infinity"),
        ("minus-infinity", "-Infinity"),
        ("nan", "NaN"),
        ("overflow", "1e999"),
        ("minus-overflow", "-1e999"),
        ("huge-integer", "1" + "0" * 400),
    ]:
        add(case_id, JSON, with_value("loan_amount", literal), 400, "not_finite")
    add("negative-income", JSON, with_value("annual_income", "-1"), 400, "out_of_range")
    add("negative-loan", JSON, with_value("loan_amount", "-0.01"), 400, "out_of_range")
    add(
        "utilization-above-1", JSON, with_value("revolving_utilization", "1.5"), 400, "out_of_range"
    )
    add("negative-years", JSON, with_value("credit_history_years", "-3"), 400, "out_of_range")
    add("negative-nullable", JSON, with_value("debt_to_income", "-5"), 400, "out_of_range")
    # --- nulls and empty text -------------------------------------------------------------
    add("null-income", JSON, with_value("annual_income", "null"), 400, "null_in_required_column")
    add("null-term", JSON, with_value("term", "null"), 400, "null_in_required_column")
    add(
        "empty-home-ownership",
        JSON,
        with_value("home_ownership", '""'),
        400,
        "null_in_required_column",
    )
    add(
        "blank-loan-purpose",
        JSON,
        with_value("loan_purpose", '"   "'),
        400,
        "null_in_required_column",
    )
    # --- categories -----------------------------------------------------------------------
    add("lower-case-category", JSON, with_value("home_ownership", '"own"'), 400, "unknown_category")
    add(
        "unknown-category",
        JSON,
        with_value("loan_purpose", json.dumps(m())),
        400,
        "unknown_category",
    )
    add("title-case-term", JSON, with_value("term", '"36 Months"'), 400, "unknown_category")
    add("trailing-space", JSON, with_value("home_ownership", '"OWN "'), 400, "unknown_category")
    add("number-in-text", JSON, with_value("term", "36"), 400, "invalid_type")
    add("boolean-in-text", JSON, with_value("term", "true"), 400, "invalid_type")
    add(
        "object-in-text",
        JSON,
        with_value("loan_purpose", json.dumps({"x": m()})),
        400,
        "invalid_type",
    )
    add(
        "unknown-in-row-500",
        JSON,
        records(*[ROW] * 499, {**ROW, "loan_purpose": m()}),
        400,
        "unknown_category",
    )
    # --- rows over the cap ----------------------------------------------------------------
    add("records-over-cap", JSON, records(*[ROW] * (cap + 1)), 413, "too_many_rows")
    add("split-over-cap", JSON, split(COLUMNS, [row_values()] * (cap + 1)), 413, "too_many_rows")
    add("csv-over-cap", CSV, csv_body([ROW] * (cap + 1)), 413, "too_many_rows")
    add(
        "csv-newline-bomb",
        CSV,
        ",".join(COLUMNS).encode() + b"\n" * (4 * 1024 * 1024),
        413,
        "too_many_rows",
    )
    add(
        "body-over-limit",
        JSON,
        b"{" + b" " * (facts.MAX_BODY_BYTES + 1) + b"}",
        413,
        "payload_too_large",
    )
    # --- CSV ------------------------------------------------------------------------------
    add("csv-missing-column", CSV, csv_body([ROW], COLUMNS[1:]), 400, "missing_columns")
    add(
        "csv-extra-column",
        CSV,
        csv_body([{**ROW, mark(900): 1}], [*COLUMNS, mark(900)]),
        400,
        "unknown_columns",
    )
    add("csv-ragged-row", CSV, csv_body([ROW]) + b"1,2," + m().encode() + b"\n", 400, "invalid_csv")
    add("csv-inf", CSV, csv_body([{**ROW, "annual_income": "inf"}]), 400, "invalid_type")
    add("csv-overflow", CSV, csv_body([{**ROW, "annual_income": "1e999"}]), 400, "not_finite")
    add("csv-true", CSV, csv_body([{**ROW, "loan_amount": "true"}]), 400, "invalid_type")
    add(
        "csv-marker-category",
        CSV,
        csv_body([{**ROW, "loan_purpose": m()}]),
        400,
        "unknown_category",
    )
    add(
        "csv-lower-case",
        CSV,
        csv_body([{**ROW, "home_ownership": "rent"}]),
        400,
        "unknown_category",
    )
    add("csv-empty-required", CSV, csv_body([{**ROW, "term": ""}]), 400, "null_in_required_column")
    add("csv-empty-body", CSV, b"", 400, "invalid_csv")
    add("csv-header-only", CSV, ",".join(COLUMNS).encode() + b"\n", 400, "empty_input")
    add("csv-invalid-utf8", CSV, csv_body([ROW]).replace(b"OWN", b"\xff\xfe"), 400, "invalid_csv")
    add(
        "csv-broken-quote",
        CSV,
        ",".join(COLUMNS).encode() + b'\n"' + m().encode() + b'"x,',
        400,
        "invalid_csv",
    )
    return cases


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


CORPUS = corpus()
MARKERS = sorted({m for case in CORPUS for m in re.findall(rb"Mark\d{3}Zq", case[2])})


def metric(url: str, name: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))  # fmt: skip


def check_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, (status, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "request_id"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code, body
    assert body["request_id"] == response.headers["X-Request-ID"]
    text = response.text
    assert "Traceback" not in text and "stack_trace" not in text and len(text) < 1500
    assert not re.search(r"Mark\d{3}Zq", text), text
    return body


def test_the_corpus_is_large_and_distinct():
    ids = [case[0] for case in CORPUS]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)
    sent = {(json.dumps(case[1], sort_keys=True), case[2]) for case in CORPUS}
    assert len(sent) == len(CORPUS), "two cases send the same request"
    assert len(MARKERS) >= 20


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [case[1:] for case in CORPUS],
    ids=[case[0] for case in CORPUS],
)
def test_bad_input_directly_and_through_the_gateway(gateway_stack, headers, body, status, code):
    server = gateway_stack.model_server
    calls = metric(server.url, CALLS)
    direct = requests.post(f"{server.url}/invocations", data=body, headers=headers, timeout=60)
    check_error(direct, status, code)
    assert metric(server.url, CALLS) == calls, "the model was called for refused input"
    proxied = requests.post(
        f"{gateway_stack.url}/invocations",
        data=body,
        headers={**headers, "X-API-Key": gateway_stack.api_key},
        verify=gateway_stack.ca_cert,
        timeout=60,
    )
    through = check_error(proxied, status, code)
    if code != "payload_too_large":  # the gateway answers that one itself (same code)
        assert through["error"] == direct.json()["error"]
        assert proxied.headers["X-Model-Version"] == direct.headers["X-Model-Version"]
    assert metric(server.url, CALLS) == calls


def test_logs_hold_no_marker_after_the_corpus(gateway_stack):
    # Runs after the corpus (file order); it also sends the marked cases once more itself,
    # so it cannot pass vacuously when run alone.
    for _, headers, body, _, _ in CORPUS:
        if re.search(rb"Mark\d{3}Zq", body):
            requests.post(
                f"{gateway_stack.model_server.url}/invocations",
                data=body,
                headers=headers,
                timeout=60,
            )
    logs = gateway_stack.model_server.log_text()
    logs += "".join(
        p.read_text(errors="replace") for p in gateway_stack.gateway.workdir.rglob("*.log")
    )
    assert '"rule": "unknown_category"' in logs and '"column": "loan_purpose"' in logs
    found = [m.decode() for m in MARKERS if m.decode() in logs]
    assert found == [], f"markers in the logs: {found}"
    assert "Traceback" not in logs
    refused = [
        line
        for line in gateway_stack.model_server.log_text().splitlines()
        if '"status": 4' in line and '"path": "/invocations"' in line
    ]
    assert refused and all('"rule": ' in line for line in refused)


# ----------------------------------------------------------------------- what still scores
def test_apex_shaped_requests_still_score(gateway_stack):
    info = requests.get(f"{gateway_stack.model_server.url}/model", timeout=10).json()
    contract = info["contract"]
    assert contract["unknown_categories"] == "refuse"
    rules = {rule["name"]: rule for rule in contract["columns"]}
    assert rules["home_ownership"]["categories"] == ["RENT", "MORTGAGE", "OWN", "OTHER"]
    assert rules["revolving_utilization"] == {
        "name": "revolving_utilization",
        "type": "double",
        "nullable": True,
        "minimum": 0.0,
        "maximum": 1.0,
    }
    assert info["limits"]["max_rows"] == facts.MAX_ROWS
    # Every category of every text column, and null in every nullable column, in one batch.
    rows = []
    for rule in contract["columns"]:
        for category in rule.get("categories", []):
            rows.append({**ROW, rule["name"]: category})
    nulls = {r["name"]: None for r in contract["columns"] if r["nullable"]}
    rows.append({**ROW, **nulls})
    rows.append({**ROW, "home_ownership": "OWN", "annual_income": 0, "revolving_utilization": 1})
    before = metric(gateway_stack.model_server.url, "model_server_rows_scored_total")
    response = requests.post(
        f"{gateway_stack.url}/invocations",
        data=records(*rows),
        headers={**JSON, "X-API-Key": gateway_stack.api_key},
        verify=gateway_stack.ca_cert,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == len(rows)
    after = metric(gateway_stack.model_server.url, "model_server_rows_scored_total")
    assert after - before == len(rows)


def test_the_same_rows_score_alike_as_json_csv_and_split(gateway_stack):
    url = f"{gateway_stack.model_server.url}/invocations"
    rows = [ROW, {**ROW, "debt_to_income": None, "term": "60 months"}]
    answers = [
        requests.post(url, data=records(*rows), headers=JSON, timeout=30),
        requests.post(
            url, data=split(COLUMNS, [row_values(r) for r in rows]), headers=JSON, timeout=30
        ),  # fmt: skip
        requests.post(url, data=csv_body(rows), headers=CSV, timeout=30),
        requests.post(
            url,
            data=records(*rows),
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout=30,
        ),  # fmt: skip
    ]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert all(a.json() == answers[0].json() for a in answers)


def test_exactly_the_row_cap_scores(gateway_stack):
    url = f"{gateway_stack.model_server.url}/invocations"
    response = requests.post(url, data=records(*[ROW] * facts.MAX_ROWS), headers=JSON, timeout=60)
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["predictions"]) == facts.MAX_ROWS


# ------------------------------------------------------------------------- bounded work
def rss_kib(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc (KiB)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total += int(found.group(1)) if found else 0
    return total


@pytest.fixture(scope="module")
def parquet_server(trained_registry, tmp_path_factory):
    server = ModelServer(
        tmp_path_factory.mktemp("parquet-server"),
        trained_registry.uri,
        "models:/credit-risk@champion",
        workers=1,
        accept_parquet="true",
    ).start()
    yield server
    server.stop()


def parquet_bomb(rows: int, group: int = 100_000) -> bytes:
    """`rows` identical applicants: parquet's dictionary and run-length encoding make it tiny.
    Written in row groups, so the test itself never holds the rows in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: pa.repeat(pa.scalar(v), min(rows, group)) for c, v in ROW.items()})
    buffer = io.BytesIO()
    with pq.ParquetWriter(buffer, table.schema, compression="zstd") as writer:
        for _ in range(rows // len(table)):
            writer.write_table(table)
    return buffer.getvalue()


def test_row_bombs_are_refused_before_decoding_and_memory_stays_bounded(parquet_server):
    url = f"{parquet_server.url}/invocations"
    ok = requests.post(url, data=parquet_bomb(3), headers=PARQUET, timeout=30)
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 3, ok.text
    bomb = parquet_bomb(10_000_000)
    assert len(bomb) < 512 * 1024, len(bomb)  # ten million rows in a few hundred KiB
    csv_bomb = ",".join(COLUMNS).encode() + b"\n" + csv_body([ROW]).split(b"\n", 1)[1] * 90_000
    assert len(csv_bomb) < facts.MAX_BODY_BYTES
    pid = parquet_server.process.popen.pid
    before = rss_kib(pid)
    calls = metric(parquet_server.url, CALLS)
    for _ in range(10):
        check_error(requests.post(url, data=bomb, headers=PARQUET, timeout=30), 413,
                    "too_many_rows")  # fmt: skip
        check_error(requests.post(url, data=csv_bomb, headers=CSV, timeout=30), 413,
                    "too_many_rows")  # fmt: skip
    after = rss_kib(pid)
    print(f"RSS of the model server (supervisor + workers): {before} KiB before, {after} KiB "
          f"after 10 parquet bombs of 10,000,000 rows and 10 CSV bombs of 90,000 rows")  # fmt: skip
    # Decoding the parquet bomb alone would take over 1 GB; the limit is generous on purpose.
    assert after - before < 150 * 1024
    assert metric(parquet_server.url, CALLS) == calls


# --------------------------------------------------------------- timeouts and overload
SLOW_MODEL_CODE = ROOT / "tests" / "testdata" / "slow_model.py"
SLOW_CONTRACT = {
    "version": 1,
    "unknown_categories": "refuse",
    "columns": [
        {"name": "x", "type": "double", "nullable": False, "minimum": 0},
        {"name": "kind", "type": "string", "nullable": False, "categories": ["a", "b"]},
    ],
}


def register(uri: str, name: str, contract: dict | None) -> None:
    """Log tests/testdata/slow_model.py (sleeps 10 ms per row) and register it as `name`."""
    import mlflow
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(uri)
    example = pd.DataFrame({"x": [1.0], "kind": ["a"]})
    output = pd.DataFrame({"probability": [0.5], "label": [0]})
    # An explicit experiment id, not set_experiment: that would stay the process's active
    # experiment and break the next test module's runs on its own tracking server.
    experiment = mlflow.MlflowClient(uri).create_experiment(name)
    with mlflow.start_run(experiment_id=experiment):
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(SLOW_MODEL_CODE),
            signature=infer_signature(example, output),
            input_example=example,
            metadata={"input_contract": contract} if contract else None,
            registered_model_name=name,
            pip_requirements=["mlflow"],
        )


@pytest.fixture(scope="module")
def slow_server(trained_registry, tmp_path_factory):
    register(trained_registry.uri, "slow-model", SLOW_CONTRACT)
    server = ModelServer(
        tmp_path_factory.mktemp("slow-server"),
        trained_registry.uri,
        "models:/slow-model/1",
        workers=1,
        request_timeout="1",
        predict_chunk_rows="20",
        max_concurrent_predictions="2",
    ).start()
    yield server
    server.stop()


def slow_rows(n: int) -> bytes:
    return json.dumps({"dataframe_records": [{"x": 1.0, "kind": "a"}] * n}).encode()


def test_timed_out_predictions_stop_and_free_the_worker(slow_server):
    url = f"{slow_server.url}/invocations"
    stopped = metric(slow_server.url, "model_server_predictions_stopped_total")
    calls = metric(slow_server.url, CALLS)
    # Six requests of 1,000 rows (10 s of model time each) in pairs, the concurrency cap.
    # Without stopping, the first pair would hold both slots for 9 more seconds and the
    # wait below would run out.
    for _ in range(3):
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(
                lambda _: requests.post(url, data=slow_rows(1000), headers=JSON, timeout=30),
                range(2)))  # fmt: skip
        for answer in answers:
            check_error(answer, 504, "timeout")
        # Each stops at its deadline, between two chunks of 20 rows (0.2 s of model time).
        wait_until(
            lambda: metric(slow_server.url, "model_server_predictions_in_flight") == 0,
            5,
            "the timed-out predictions stopped",
        )
    assert metric(slow_server.url, "model_server_predictions_stopped_total") - stopped == 6
    assert metric(slow_server.url, CALLS) - calls < 6 * 15
    normal = requests.post(url, data=slow_rows(1), headers=JSON, timeout=10)
    assert normal.status_code == 200, normal.text
    assert normal.json()["predictions"] == [{"probability": 0.5, "label": 0}]


def test_overload_beyond_the_cap_is_503_with_retry_after(slow_server):
    url = f"{slow_server.url}/invocations"
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(
            lambda _: requests.post(url, data=slow_rows(300), headers=JSON, timeout=30),
            range(6)))  # fmt: skip
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {504, 503} and statuses.count(503) >= 1, statuses
    for answer in answers:
        if answer.status_code == 503:
            check_error(answer, 503, "overloaded")
            assert answer.headers["Retry-After"] == "1"
    wait_until(
        lambda: metric(slow_server.url, "model_server_predictions_in_flight") == 0,
        20,
        "the predictions finished",
    )
    assert requests.post(url, data=slow_rows(2), headers=JSON, timeout=10).status_code == 200


# ------------------------------------------------------------ a model without a contract
def test_a_model_without_a_contract_keeps_the_older_checks(trained_registry, tmp_path):
    register(trained_registry.uri, "legacy-model", None)
    server = ModelServer(
        tmp_path / "legacy", trained_registry.uri, "models:/legacy-model/1", workers=1
    ).start()
    try:
        url = f"{server.url}/invocations"
        assert requests.get(f"{server.url}/model", timeout=10).json()["contract"] is None
        ok = requests.post(url, data=slow_rows(2), headers=JSON, timeout=10)
        assert ok.status_code == 200, ok.text
        # Outside any contract: the category is not checked, as before contracts.
        unknown = json.dumps({"dataframe_records": [{"x": 1.0, "kind": "zzz"}]}).encode()
        assert requests.post(url, data=unknown, headers=JSON, timeout=10).status_code == 200
        missing = json.dumps({"dataframe_records": [{"x": 1.0}]}).encode()
        check_error(requests.post(url, data=missing, headers=JSON, timeout=10), 400,
                    "missing_columns")  # fmt: skip
        check_error(requests.post(url, data=slow_rows(facts.MAX_ROWS + 1), headers=JSON,
                                  timeout=10), 413, "too_many_rows")  # fmt: skip
        check_error(requests.post(url, data=b"x", headers=PARQUET, timeout=10), 415,
                    "unsupported_media_type")  # fmt: skip
    finally:
        server.stop()
