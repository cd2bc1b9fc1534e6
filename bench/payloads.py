"""Request bodies of 1, 100 and 1,000 rows in the `dataframe_records` format of
tests/testdata/predict-one.json, from the project's data generator (missing values as null)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from training.data import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, generate_credit_data

# Not the training seed (42): the benchmark scores applicants the model has not seen.
SEED = 7


def records(rows: int, seed: int = SEED) -> list[dict]:
    frame = generate_credit_data(max(rows, 10), seed=seed).head(rows)
    columns = list(NUMERIC_COLUMNS + CATEGORICAL_COLUMNS)
    return [
        {name: None if isinstance(value, float) and math.isnan(value) else value
         for name, value in row.items()}
        for row in frame[columns].to_dict(orient="records")
    ]  # fmt: skip


def write_payloads(directory: Path, sizes: list[int]) -> dict[int, Path]:
    """Write one body per size; returns {rows: path}."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for rows in sizes:
        path = directory / f"rows-{rows}.json"
        path.write_text(json.dumps({"dataframe_records": records(rows)}))
        paths[rows] = path
    return paths
