"""The input contract training writes into the logged model (MLmodel `metadata`).

The model server enforces it before the model runs, `GET /model` reports it, and the OpenAPI
document and the APEX kit are rendered from it (serving/contract.py defines the format and
checks it; `build_contract` output always passes that check, a unit test holds it).

Where each rule comes from, per column:
    type        the model signature (double for numeric columns, string for categorical ones);
    nullable    the data schema (built-in data: the columns applications leave blank); for a
                user's file, whether the column had nulls in the training rows;
    categories  the data schema (built-in data), else the values seen in the training rows;
    minimum/maximum  the data schema's hard bounds (built-in data); none for a user's file.
A `--contract FILE` (JSON: {"unknown_categories": ..., "columns": {"<name>": {rule: value}}})
overrides any of them; `--unknown-categories accept` lets unseen categories through (the
pipeline encodes them as all zeros), the default refuses them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from serving.contract import CONTRACT_KEY, ContractError, InputContract
from training.data import DataError, TrainingData

__all__ = ["CONTRACT_KEY", "build_contract", "read_overrides"]

_RULES = ("nullable", "categories", "minimum", "maximum")


def build_contract(
    data: TrainingData,
    x_train: pd.DataFrame,
    unknown_categories: str = "refuse",
    overrides: dict | None = None,
) -> dict:
    """The contract document for a model trained on `x_train` (its columns, in order)."""
    overrides = overrides or {}
    column_overrides = overrides.get("columns", {})
    unknown = set(column_overrides) - set(x_train.columns)
    if unknown:
        raise DataError(f"--contract names columns the model does not have: {sorted(unknown)}")
    columns = []
    for name in x_train.columns:
        numeric = name in data.numeric_columns
        schema = data.schema.get(name, {})
        rule: dict = {"name": name, "type": "double" if numeric else "string"}
        rule["nullable"] = bool(schema.get("nullable", x_train[name].isna().any()))
        if numeric:
            for key in ("minimum", "maximum"):
                if schema.get(key) is not None:
                    rule[key] = float(schema[key])
        else:
            seen = sorted(str(v) for v in x_train[name].dropna().unique())
            rule["categories"] = list(schema.get("categories", seen))
        for key, value in column_overrides.get(name, {}).items():
            if key not in _RULES:
                raise DataError(f"--contract: column '{name}': unknown rule '{key}'")
            if value is None:
                rule.pop(key, None)
            else:
                rule[key] = value
        columns.append(rule)
    document = {
        "version": 1,
        "unknown_categories": overrides.get("unknown_categories", unknown_categories),
        "columns": columns,
    }
    try:
        InputContract.from_dict(document)
    except ContractError as error:
        raise DataError(f"the input contract is not valid: {error}") from None
    _check_training_rows(document, x_train)
    return document


def _check_training_rows(document: dict, x_train: pd.DataFrame) -> None:
    """The contract must accept the rows it was trained on, or it is wrong (or the data is)."""
    for rule in document["columns"]:
        values = x_train[rule["name"]]
        if not rule["nullable"] and values.isna().any():
            raise DataError(
                f"column '{rule['name']}' has empty cells in the training data but the contract "
                'says it may not be null; set "nullable": true for it with --contract'
            )
        present = values.dropna()
        low, high = rule.get("minimum"), rule.get("maximum")
        if (low is not None and (present < low).any()) or (
            high is not None and (present > high).any()
        ):
            raise DataError(
                f"column '{rule['name']}' has training values outside its contract bounds; "
                "fix the data or the bounds in --contract"
            )
        if "categories" in rule and not set(present.astype(str)) <= set(rule["categories"]):
            raise DataError(
                f"column '{rule['name']}' has training values outside its contract categories"
            )
        if rule["type"] == "double" and not present.map(math.isfinite).all():
            raise DataError(f"column '{rule['name']}' has infinite values in the training data")


def read_overrides(path: Path | None) -> dict:
    """The --contract file, or {}; DataError (one line) when it is not usable."""
    if path is None:
        return {}
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(
            f"--contract {path} cannot be read as JSON ({type(error).__name__})"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("columns", {}), dict):
        raise DataError(
            f'--contract {path} must be {{"columns": {{"<column>": {{"nullable": ..}}}}}}'
        )
    return document
