"""The model's input contract, the checks that enforce it, and the predict hook.

The contract is written by training into the logged model (`metadata["input_contract"]` in the
MLmodel file, training/contract.py) and is the one source for what the server accepts, what
`GET /model` reports, and what the OpenAPI document and the APEX kit state:

    {"version": 1, "unknown_categories": "refuse" | "accept",
     "columns": [{"name", "type", "nullable", "categories"?, "minimum"?, "maximum"?}, ...]}

`check_rows` enforces it on plain Python rows (serving/intake.py builds them from JSON, CSV or
parquet), before any DataFrame exists and before the model is called: every column present,
numbers that are numbers (not booleans, not text) and finite, within the hard bounds, text
from the allowed categories (exact case), null only where allowed. Empty or blank text counts
as null: refused where the column may not be null, sent to the model as null where it may.

A model logged before contracts existed has none; it is served with the older checks on the
frame MLflow parsed (`input_problem`, run by the predict hook), which remain for it.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from serving.api_errors import ApiError, api_error
from serving.context import current_request
from serving.mlflow_errors import _TYPE_WORDS, model_error

log = logging.getLogger("serving.contract")

CONTRACT_KEY = "input_contract"
NUMBER_TYPES = ("double", "float")
INTEGER_TYPES = ("long", "integer")
TYPES = (*NUMBER_TYPES, *INTEGER_TYPES, "string", "boolean")
UNKNOWN_CATEGORY_MODES = ("refuse", "accept")
# At most this many allowed values are listed in an unknown_category message.
_LISTED_CATEGORIES = 50


class ContractError(ValueError):
    """A contract document that cannot be enforced; the message says which part."""


class NonFinite:
    """What intake puts where the JSON body had NaN, Infinity or -Infinity (not JSON at all)."""

    def __repr__(self) -> str:
        return "NonFinite"


NON_FINITE = NonFinite()


@dataclass(frozen=True)
class ColumnRule:
    """One input column of the contract."""

    name: str
    type: str
    nullable: bool
    categories: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def numeric(self) -> bool:
        return self.type in NUMBER_TYPES or self.type in INTEGER_TYPES

    def bounds_text(self) -> str:
        """The bounds as the out_of_range message states them."""
        if self.minimum is not None and self.maximum is not None:
            return f"between {self.minimum:g} and {self.maximum:g}"
        if self.minimum is not None:
            return f"at least {self.minimum:g}"
        return f"at most {self.maximum:g}"

    def to_dict(self) -> dict:
        out: dict = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.categories is not None:
            out["categories"] = list(self.categories)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@dataclass(frozen=True)
class InputContract:
    """Every input column with its rules, and what to do with an unknown category."""

    columns: tuple[ColumnRule, ...]
    unknown_categories: str = "refuse"
    version: int = 1

    @property
    def names(self) -> list[str]:
        return [rule.name for rule in self.columns]

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "unknown_categories": self.unknown_categories,
            "columns": [rule.to_dict() for rule in self.columns],
        }

    @classmethod
    def from_dict(cls, document) -> InputContract:
        """Parse and check a contract document; ContractError names the bad part."""
        if not isinstance(document, dict) or not isinstance(document.get("columns"), list):
            raise ContractError("the contract must be an object with a list of columns")
        if document.get("version", 1) != 1:
            raise ContractError(f"contract version {document.get('version')!r} is not 1")
        mode = document.get("unknown_categories", "refuse")
        if mode not in UNKNOWN_CATEGORY_MODES:
            raise ContractError("unknown_categories must be 'refuse' or 'accept'")
        rules = []
        for spec in document["columns"]:
            rules.append(_column_rule(spec))
        names = [rule.name for rule in rules]
        if not names or len(set(names)) != len(names):
            raise ContractError("the contract needs at least one column, each named once")
        return cls(tuple(rules), mode)


def _column_rule(spec) -> ColumnRule:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise ContractError("every contract column needs a name")
    name, kind = spec["name"], spec.get("type")
    if kind not in TYPES:
        raise ContractError(f"column '{name}': type must be one of {', '.join(TYPES)}")
    if not isinstance(spec.get("nullable"), bool):
        raise ContractError(f"column '{name}': nullable must be true or false")
    categories = spec.get("categories")
    if categories is not None:
        if kind != "string" or not categories or not all(isinstance(c, str) for c in categories):
            raise ContractError(f"column '{name}': categories must be a non-empty list of text")
        categories = tuple(categories)
    bounds = []
    for key in ("minimum", "maximum"):
        value = spec.get(key)
        if value is not None and (
            kind not in (*NUMBER_TYPES, *INTEGER_TYPES)
            or isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ContractError(f"column '{name}': {key} must be a finite number")
        bounds.append(None if value is None else float(value))
    if None not in bounds and bounds[0] > bounds[1]:
        raise ContractError(f"column '{name}': minimum is above maximum")
    return ColumnRule(name, kind, spec["nullable"], categories, bounds[0], bounds[1])


def contract_of(metadata: dict | None) -> InputContract | None:
    """The contract stored in a model's MLmodel metadata, or None for an older model."""
    document = (metadata or {}).get(CONTRACT_KEY)
    return None if document is None else InputContract.from_dict(document)


# ------------------------------------------------------------------------- enforcing on rows
def check_columns(columns: Sequence, contract: InputContract) -> ApiError | None:
    """Each column once, none unknown, none missing."""
    if len(set(map(repr, columns))) != len(columns):
        return api_error("duplicate_columns")
    known = set(contract.names)
    unknown = [c for c in columns if not isinstance(c, str) or c not in known]
    if unknown:
        return api_error("unknown_columns", count=len(unknown), expected=", ".join(contract.names))
    missing = [name for name in contract.names if name not in set(columns)]
    if missing:
        return api_error("missing_columns", columns=", ".join(missing))
    return None


def check_rows(
    columns: Sequence[str], rows: list[list], contract: InputContract
) -> ApiError | None:
    """Enforce the contract on `rows` (lists in the order of `columns`), in place.

    Empty or blank text in a nullable text column is replaced by None (null), so the model
    sees what the contract says it is. Returns the first problem, column by column in the
    contract's order, or None.
    """
    position = {name: i for i, name in enumerate(columns)}
    for rule in contract.columns:
        i = position[rule.name]
        if len(rows) >= _WHOLE_COLUMN_ROWS and _column_passes(rule, [r[i] for r in rows], contract):
            continue
        check = _check_number if rule.numeric else _check_text
        if rule.type == "boolean":
            check = _check_boolean
        for row in rows:
            value = row[i]
            if isinstance(value, str) and rule.type == "string" and not value.strip():
                value = row[i] = None
            if value is None:
                if not rule.nullable:
                    return api_error("null_in_required_column", columns=rule.name)
                continue
            problem = check(rule, value, contract)
            if problem is not None:
                return problem
    return None


_WHOLE_COLUMN_ROWS = 16
"""From this many rows a column is first checked whole (`_column_passes`)."""
_NUMBER_KINDS = frozenset({int, float, type(None)})


def _column_passes(rule: ColumnRule, column: list, contract: InputContract) -> bool:
    """True only when the value-by-value check of `column` would find nothing and change
    nothing; False sends it to that check, which then names the first problem.

    A whole column at a time, in C: a numeric column by its value types, its sum (finite only
    if every value is), its minimum and maximum; a text column by its distinct values, which
    are few (categories). The value-by-value check cost 1.9 ms per 1,000 credit-risk rows, a
    tenth of the request (bench/README.md, "Batching"); this costs about a fifth of that.
    """
    if rule.type == "boolean":
        return False
    if not rule.numeric:
        try:
            distinct = set(column)
        except TypeError:  # a list or an object in the column: not text
            return False
        if None in distinct:
            if not rule.nullable:
                return False
            distinct.discard(None)
        # Blank text is replaced by null value by value: not for the whole-column pass.
        return all(
            type(value) is str
            and (rule.type != "string" or value.strip())
            and _check_text(rule, value, contract) is None
            for value in distinct
        )
    kinds = set(map(type, column))  # exact types: bool and NonFinite are not int or float
    if not kinds <= _NUMBER_KINDS:
        return False
    if type(None) in kinds:
        if not rule.nullable:
            return False
        column = [value for value in column if value is not None]
        if not column:
            return True
    try:
        if not math.isfinite(sum(column)):  # NaN or an infinity anywhere (or an overflow)
            return False
        lowest, highest = float(min(column)), float(max(column))
    except OverflowError:  # an integer beyond a double
        return False
    if (rule.minimum is not None and lowest < rule.minimum) or (
        rule.maximum is not None and highest > rule.maximum
    ):
        return False
    return (
        rule.type not in INTEGER_TYPES
        or float not in kinds
        or all(value.is_integer() for value in column if type(value) is float)
    )


def _check_number(rule: ColumnRule, value, contract: InputContract) -> ApiError | None:
    if value is NON_FINITE:
        return api_error("not_finite", column=rule.name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return api_error("invalid_type", column=rule.name, kind=_TYPE_WORDS[rule.type])
    try:
        number = float(value)
    except OverflowError:  # an integer literal beyond a double
        return api_error("not_finite", column=rule.name)
    if not math.isfinite(number):
        return api_error("not_finite", column=rule.name)
    if rule.type in INTEGER_TYPES and not number.is_integer():
        return api_error("invalid_type", column=rule.name, kind=_TYPE_WORDS[rule.type])
    if (rule.minimum is not None and number < rule.minimum) or (
        rule.maximum is not None and number > rule.maximum
    ):
        return api_error("out_of_range", column=rule.name, bounds=rule.bounds_text())
    return None


def _check_text(rule: ColumnRule, value, contract: InputContract) -> ApiError | None:
    if not isinstance(value, str):
        return api_error("text_expected", columns=rule.name)
    if (
        rule.categories is not None
        and contract.unknown_categories == "refuse"
        and value not in rule.categories
    ):
        allowed = ", ".join(rule.categories[:_LISTED_CATEGORIES])
        if len(rule.categories) > _LISTED_CATEGORIES:
            allowed += ", ... (GET /model lists all)"
        return api_error("unknown_category", column=rule.name, allowed=allowed)
    return None


def _check_boolean(rule: ColumnRule, value, contract: InputContract) -> ApiError | None:
    if not isinstance(value, bool):
        return api_error("invalid_type", column=rule.name, kind=_TYPE_WORDS["boolean"])
    return None


def example_problem(example, contract: InputContract) -> ApiError | None:
    """What the contract says about a model's own input example (a frame), or None.

    A contract that refuses the example it was logged with is wrong (or the example is): such
    a model is never served or promoted (serving/loading.py).
    """
    columns = list(getattr(example, "columns", []))
    problem = check_columns(columns, contract)
    if problem is not None:
        return problem
    rows = example.astype(object).where(example.notna(), None).values.tolist()
    return check_rows(columns, rows, contract)


# ------------------------------------------------------- the older checks (models without one)
def input_problem(data, inputs: list[dict]) -> ApiError | None:
    """What MLflow's schema enforcement lets through but the model cannot take, as a 400.

    The checks for a model without an input contract, on the frame MLflow parsed: no rows,
    repeated or unknown column names (MLflow drops unknown columns silently, which hides a
    typo), non-text values in text columns (MLflow checks the column's dtype, not its values),
    and nulls in required columns (MLflow lets them through). Input that is not a frame, or a
    model without a column signature, is left to MLflow. With a contract these checks still
    run (on the canonical frame, where they cannot fail unless intake has a bug).
    """
    from pandas.api.types import infer_dtype

    columns = getattr(data, "columns", None)
    known = {spec["name"] for spec in inputs}
    if columns is None or not known:
        return None
    if len(data) == 0:
        return api_error("empty_input")
    if not columns.is_unique:
        return api_error("duplicate_columns")
    unknown = [c for c in columns if not isinstance(c, str) or c not in known]
    if unknown:
        expected = ", ".join(spec["name"] for spec in inputs)
        return api_error("unknown_columns", count=len(unknown), expected=expected)
    text_columns = [spec["name"] for spec in inputs if spec["type"] == "string"]
    not_text = [
        c
        for c in text_columns
        if c in columns and infer_dtype(data[c], skipna=True) not in ("string", "empty")
    ]
    if not_text:
        return api_error("text_expected", columns=", ".join(not_text))
    required = [spec["name"] for spec in inputs if spec["required"]]
    nulls = [c for c in required if c in columns and data[c].isna().any()]
    if nulls:
        return api_error("null_in_required_column", columns=", ".join(nulls))
    return None


# ------------------------------------------------------------------------------ predict hook
def install_predict_hook(
    pyfunc,
    inputs: list[dict],
    chunk_rows: int = 1000,
    on_call: Callable[[], None] = lambda: None,
    on_abort: Callable[[], None] = lambda: None,
) -> None:
    """Wrap `pyfunc.predict` to check the input, bound its time and report errors and rows.

    MLflow calls `model.predict(data, params=...)` after parsing; the hook runs in MLflow's
    worker thread and reports through the request's context (serving/context.py). A thread
    cannot be killed, so the prediction is bounded instead: the model is called on chunks of
    `chunk_rows` rows and the request's deadline is checked before each one; past it the hook
    stops with a timeout, so a request that timed out frees its worker thread within one
    chunk's time. `on_call` counts model calls (/metrics: the tests' proof that refused input
    never reached the model), `on_abort` predictions stopped at the deadline. When the
    context asks for it (`keep_scored`, MLflow's path), the frame and the output are kept on
    it for the decision log.
    """
    from mlflow.exceptions import MlflowException

    original = pyfunc.predict

    def predict(data, params=None):
        context = current_request.get(None)
        report = context.report if context is not None else _unreported
        if context is not None:
            context.predict_called = True
        problem = input_problem(data, inputs)
        if problem is not None:
            raise report(problem)
        deadline = getattr(context, "deadline", None)
        try:
            result = _predict_in_chunks(original, data, params, chunk_rows, deadline, on_call)
        except _PastDeadline:
            on_abort()
            raise report(api_error("timeout", timeout=context.timeout)) from None
        except MlflowException as error:
            raise report(model_error(error.message, inputs, params)) from None
        except Exception as error:  # noqa: BLE001 - logged without its message, answered 500
            log_model_failure(error, getattr(context, "request_id", ""))
            raise report(api_error("model_error")) from None
        if context is not None:
            context.rows = len(data) if hasattr(data, "__len__") else 0
            if context.keep_scored:
                context.scored_rows, context.scored_outputs = data, result
        return result

    pyfunc.predict = predict


class _PastDeadline(Exception):
    pass


def _predict_in_chunks(original, data, params, chunk_rows, deadline, on_call):
    rows = len(data) if hasattr(data, "iloc") else None
    if rows is None or rows <= chunk_rows:
        _check_deadline(deadline)
        on_call()
        return original(data, params=params)
    import numpy as np
    import pandas as pd

    parts = []
    for start in range(0, rows, chunk_rows):
        _check_deadline(deadline)
        on_call()
        parts.append(original(data.iloc[start : start + chunk_rows], params=params))
    first = parts[0]
    if isinstance(first, pd.DataFrame | pd.Series):
        return pd.concat(parts, ignore_index=True)
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    return [item for part in parts for item in part]


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise _PastDeadline


def log_model_failure(error: BaseException, request_id: str) -> None:
    """Log a failure inside the model: its type and where it happened, never its message.

    An exception's message can quote the input (pandas and scikit-learn do), so the log keeps
    the code locations of the traceback (file, line, function, source line) and the type.
    """
    log.error(
        "the model raised an exception",
        extra={
            "fields": {
                "request_id": request_id,
                "error_type": type(error).__name__,
                "where": traceback.format_tb(error.__traceback__)[-5:],
            }
        },
    )


def _unreported(error: ApiError) -> ApiError:
    # Outside a request (a direct call in a test or a shell) there is no one to report to.
    return error
