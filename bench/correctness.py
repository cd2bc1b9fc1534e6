"""The correctness pass: many concurrent one-row requests with distinct rows, each answer
compared with the unbatched prediction of that row (the registered pyfunc, one row per call,
in this process). Batching merges requests in the server; this proves it never mixes them."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.payloads import records
from common.facts import MODEL_NAME

SEED = 19  # other rows than the load's bodies


def check(
    url: str, tracking_uri: str, version: str, concurrency: int, count: int, api_key="", verify=True
) -> dict:
    """POST `count` distinct one-row bodies at `concurrency`; how many equal their own row's
    unbatched prediction exactly (label and probability as JSON numbers)."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")
    rows = records(count, seed=SEED)
    expected = [
        json.loads(json.dumps(model.predict(pd.DataFrame([row])).to_dict(orient="records")))
        for row in rows
    ]
    headers = {"Content-Type": "application/json", "X-API-Key": api_key}

    def post(row: dict) -> requests.Response:
        with requests.Session() as session:
            body = json.dumps({"dataframe_records": [row]})
            return session.post(url, data=body, headers=headers, verify=verify, timeout=60)

    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(post, rows))
    errors = sum(answer.status_code != 200 for answer in answers)
    equal = sum(
        answer.status_code == 200 and answer.json()["predictions"] == want
        for answer, want in zip(answers, expected, strict=True)
    )
    return {"concurrency": concurrency, "requests": count, "equal": equal, "errors": errors}
