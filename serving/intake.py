"""Reading a request body into plain rows, bounded, before any DataFrame exists.

With an input contract (serving/contract.py) the wrapper never hands the caller's bytes to
MLflow: `read_with_contract` parses the body itself (JSON strictly: no repeated keys, NaN and
Infinity marked; CSV with the csv module; parquet only when enabled), counts the rows against
`SERVING_MAX_ROWS` first, enforces the contract, checks MLflow's `params` against the model
signature, and returns the checked rows in the contract's column order (`Accepted`: what the
batcher merges, or its canonical `dataframe_split` body for MLflow's app). So MLflow's lenient
conversions (``true`` read as 1.0, a longer ``index`` than ``data``, the last of two repeated
keys) never see caller input.

A model without a contract gets `precheck_without_contract`: the same content types and the
same row cap, counted on the parsed JSON, the CSV lines or the parquet footer; the body then
goes to MLflow unchanged, as before.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from operator import itemgetter

from serving.api_errors import ApiError, api_error
from serving.contract import NON_FINITE, InputContract, check_columns, check_rows

JSON = "application/json"
PARAMS = "params"  # MLflow's key for inference parameters (scoring_server.SERVING_PARAMS_KEY)
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
# A CSV number: digits with an optional dot and exponent (no "inf", "nan", "1,5", "true").
_CSV_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class _DuplicateKey(ValueError):
    pass


@dataclass
class Accepted:
    """What intake lets through: checked rows in the contract's column order, and params.

    `params` is the body's MLflow `params` object as sent (None when absent), already checked
    against the model's params schema; `params_key` is its canonical JSON, which decides which
    requests may be scored in one model call (serving/batching.py).
    """

    columns: list[str]
    data: list[list]
    params: dict | None = None
    params_key: str = "null"
    content_type: bytes = JSON.encode()

    @property
    def rows(self) -> int:
        return len(self.data)

    @property
    def body(self) -> bytes:
        """The canonical `dataframe_split` body MLflow's app would be given for these rows."""
        canonical: dict = {"dataframe_split": {"columns": self.columns, "data": self.data}}
        if self.params is not None:
            canonical["params"] = self.params
        return json.dumps(canonical, allow_nan=False).encode()


def media_type(content_type: str, settings) -> str | ApiError:
    """The media type of a Content-Type the server reads, or a 415."""
    mime, *parameters = [part.strip() for part in content_type.split(";")]
    mime = mime.lower()
    refused = api_error("unsupported_media_type", accepted=settings.accepted_media_types)
    allowed = {JSON} | ({CSV} if settings.accept_csv else set())
    allowed |= {PARQUET} if settings.accept_parquet else set()
    if mime not in allowed:
        return refused
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            return refused
    return mime


# ------------------------------------------------------------------------------- parsing
def _no_repeated_keys(pairs):
    # dict() in C, then one comparison: a repeated key makes the dict shorter than the pairs.
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _DuplicateKey
    return out


def parse_json(body: bytes):
    """The JSON value of `body`, with NaN/Infinity as NON_FINITE; ApiError when not JSON."""
    try:
        text = body.decode("utf-8")
        return json.loads(
            text, object_pairs_hook=_no_repeated_keys, parse_constant=lambda _: NON_FINITE
        )
    except _DuplicateKey:
        return api_error("duplicate_keys")
    except (UnicodeDecodeError, ValueError, RecursionError):
        return api_error("invalid_json")


def _json_rows(document, contract: InputContract, max_rows: int):
    """(columns, rows) of a dataframe_records or dataframe_split body, or an ApiError.

    Besides the one format key the body may hold MLflow's `params` (checked by check_params).
    """
    if not isinstance(document, dict):
        return api_error("invalid_format_contract")
    keys = [key for key in document if key != PARAMS]
    if len(keys) != 1:
        return api_error("invalid_format_contract")
    key, value = keys[0], document[keys[0]]
    if key == "dataframe_records":
        if not isinstance(value, list):
            return api_error("invalid_format_contract")
        if len(value) > max_rows:
            return api_error("too_many_rows", max_rows=max_rows)
        if not value:
            return api_error("empty_input")
        if not all(isinstance(record, dict) for record in value):
            return api_error("invalid_format_contract")
        names = contract.names
        # In C: every record has exactly the contract's names when each has that many keys
        # and itemgetter finds them all; otherwise check_columns names the problem.
        rows = None
        if set(map(len, value)) == {len(names)}:
            try:
                rows = _values_of(names, value)
            except KeyError:
                pass
        if rows is None:
            for record in value:
                problem = check_columns(list(record), contract)
                if problem is not None:
                    return problem
            rows = _values_of(names, value)
        return names, rows
    if key == "dataframe_split":
        if not isinstance(value, dict) or not {"columns", "data"} <= set(value):
            return api_error("inconsistent_split")
        if set(value) - {"columns", "data", "index"}:
            return api_error("inconsistent_split")
        columns, data, index = value["columns"], value["data"], value.get("index")
        if not isinstance(columns, list) or not isinstance(data, list):
            return api_error("inconsistent_split")
        if len(data) > max_rows:
            return api_error("too_many_rows", max_rows=max_rows)
        if not data:
            return api_error("empty_input")
        problem = check_columns(columns, contract)
        if problem is not None:
            return problem
        if index is not None and (not isinstance(index, list) or len(index) != len(data)):
            return api_error("inconsistent_split")
        width = len(columns)
        if not all(isinstance(row, list) and len(row) == width for row in data):
            return api_error("inconsistent_split")
        return columns, data
    return api_error("invalid_format_contract")


def _values_of(names: list[str], records: list[dict]) -> list[list]:
    """Each record's values in `names` order, as lists (check_rows edits them in place)."""
    if len(names) == 1:
        (name,) = names
        return [[record[name]] for record in records]
    getter = itemgetter(*names)
    return [list(getter(record)) for record in records]


def _csv_rows(body: bytes, contract: InputContract, max_rows: int):
    """(columns, rows) of a CSV body with a header; stops reading at max_rows + 1 rows."""
    try:
        reader = csv.reader(io.StringIO(body.decode("utf-8"), newline=""), strict=True)
        header = next(reader, None)
        if not header:
            return api_error("invalid_csv")
        problem = check_columns(header, contract)
        if problem is not None:
            return problem
        rules = {rule.name: rule for rule in contract.columns}
        numeric = [rules[name].numeric for name in header]
        rows, records = [], 0
        for cells in reader:
            # Blank lines are skipped (as pandas does) but counted: a body of newlines is a
            # row bomb too, refused at the cap like any other.
            records += 1
            if records > max_rows:
                return api_error("too_many_rows", max_rows=max_rows)
            if not cells:
                continue
            if len(cells) != len(header):
                return api_error("invalid_csv")
            pairs = zip(cells, numeric, strict=True)
            rows.append([_csv_value(cell, is_number) for cell, is_number in pairs])
    except (UnicodeDecodeError, csv.Error):
        return api_error("invalid_csv")
    if not rows:
        return api_error("empty_input")
    return header, rows


def _csv_value(cell: str, is_number: bool):
    # CSV has no null: an empty cell is null. A numeric cell must look like a number;
    # anything else stays text, which the contract then refuses in a numeric column.
    if cell == "":
        return None
    if is_number and _CSV_NUMBER.fullmatch(cell.strip()):
        number = float(cell)
        return number if number == number and abs(number) != float("inf") else NON_FINITE
    return cell


def parquet_rows_in_footer(body: bytes) -> int | ApiError:
    """The row count a parquet file declares, read from its footer only (nothing decoded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    except (pa.ArrowException, OSError, ValueError):
        return api_error("invalid_parquet")


def _parquet_rows(body: bytes, contract: InputContract, max_rows: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = parquet_rows_in_footer(body)
    if isinstance(rows, ApiError):
        return rows
    if rows > max_rows:
        return api_error("too_many_rows", max_rows=max_rows)
    if rows == 0:
        return api_error("empty_input")
    try:
        table = pq.ParquetFile(io.BytesIO(body)).read()
    except (pa.ArrowException, OSError, ValueError):
        return api_error("invalid_parquet")
    columns = [name for name in table.column_names if not name.startswith("__index_level_")]
    problem = check_columns(columns, contract)
    if problem is not None:
        return problem
    if table.num_rows != rows or any(
        pa.types.is_nested(table.schema.field(name).type) for name in columns
    ):
        return api_error("invalid_parquet")
    by_column = [
        [NON_FINITE if isinstance(v, float) and v != v else v for v in table[name].to_pylist()]
        for name in columns
    ]
    return columns, [list(row) for row in zip(*by_column, strict=True)]


# --------------------------------------------------------------------------------- params
def check_params(params, params_schema) -> tuple[dict | None, str] | ApiError:
    """MLflow's `params` checked against the signature's params schema, and its canonical key.

    MLflow (mlflow.models.utils._enforce_params_schema) drops unknown params with a warning
    and raises on a value its ParamSpec cannot take; here an unknown param is refused too (a
    typo would otherwise be scored silently with the default). The messages name the param
    and its declared type, never the value. Returns (params as sent, canonical JSON).
    """
    if params is None:
        return None, "null"
    if not isinstance(params, dict):
        return api_error("invalid_params_object")
    specs = {spec.name: spec for spec in params_schema.params} if params_schema else {}
    unknown = [name for name in params if name not in specs]
    if unknown:
        allowed = ", ".join(specs) or "none"
        return api_error("unknown_params", count=len(unknown), allowed=allowed)
    from mlflow.exceptions import MlflowException
    from mlflow.types.schema import ParamSpec

    for name, value in params.items():
        spec = specs[name]
        try:
            if value is NON_FINITE:
                raise MlflowException("not finite")
            ParamSpec.validate_param_spec(value, spec)
        except MlflowException:
            kind = getattr(spec.dtype, "name", str(spec.dtype))
            shape = " list" if spec.shape is not None else ""
            return api_error("invalid_param", param=name, kind=f"{kind}{shape}")
    try:
        key = json.dumps(params, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):  # NaN inside a list param
        return api_error("invalid_params_object")
    return params, key


# ---------------------------------------------------------------------------------- entry
def read_with_contract(
    body: bytes, content_type: str, contract: InputContract, settings, params_schema=None
) -> Accepted | ApiError:
    """Parse, bound and check the body: the checked rows and params, or the error.

    `params_schema` is the model signature's ParamSchema (None when it declares none: then a
    body with `params` is refused).
    """
    mime = media_type(content_type, settings)
    if isinstance(mime, ApiError):
        return mime
    params, params_key = None, "null"
    if mime == JSON:
        document = parse_json(body)
        if isinstance(document, ApiError):
            return document
        parsed = _json_rows(document, contract, settings.max_rows)
        if not isinstance(parsed, ApiError) and PARAMS in document:
            checked = check_params(document[PARAMS], params_schema)
            if isinstance(checked, ApiError):
                return checked
            params, params_key = checked
    elif mime == CSV:
        parsed = _csv_rows(body, contract, settings.max_rows)
    else:
        parsed = _parquet_rows(body, contract, settings.max_rows)
    if isinstance(parsed, ApiError):
        return parsed
    columns, rows = parsed
    problem = check_rows(columns, rows, contract)
    if problem is not None:
        return problem
    names = contract.names
    if list(columns) != names:  # one column order for every request, so rows can be merged
        order = [list(columns).index(name) for name in names]
        rows = [[row[i] for i in order] for row in rows]
    return Accepted(names, rows, params, params_key)


def precheck_without_contract(body: bytes, content_type: str, settings) -> ApiError | None:
    """For a model without a contract: the content types and the row cap, nothing more."""
    mime = media_type(content_type, settings)
    if isinstance(mime, ApiError):
        return mime
    cap = settings.max_rows
    too_many = api_error("too_many_rows", max_rows=cap)
    if mime == CSV:
        # Lines bound rows from above (a quoted newline makes one row of two lines).
        return too_many if body.count(b"\n") > cap + 1 else None
    if mime == PARQUET:
        rows = parquet_rows_in_footer(body)
        return rows if isinstance(rows, ApiError) else (too_many if rows > cap else None)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None  # MLflow answers it (invalid_json), as it always did
    if isinstance(document, dict):
        for value in document.values():
            if isinstance(value, dict):
                value = value.get("data", next(iter(value.values()), []))
            if isinstance(value, list) and len(value) > cap:
                return too_many
    return None
