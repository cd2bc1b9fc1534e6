"""Render the APEX kit for the promoted model: PL/SQL package, REST Data Source notes, OpenAPI.

    python -m apex.render --gateway-url https://ml.example.com                 # from the registry
    python -m apex.render --signature-file apex/default-signature.json \\
        --gateway-url https://ml.example.com                                    # offline
    python -m apex.render --write-signature apex/default-signature.json         # save, no render

Reads ``models:/<model-name>@<alias>`` (signature and first input-example row) and writes
every file under ``--out`` at once: the files go to a temporary folder next to it first and
replace the old folder only when all rendered. Exits 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import jinja2

from apex.body import INTEGER_PATTERN, NUMBER_PATTERN, SUPPORTED_TYPES, Column, json_string
from apex.openapi import build_openapi
from common import facts

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_OUT = Path(__file__).parent / "generated"
CREDENTIAL_STATIC_ID = "ML_API_KEY"
MAX_IDENTIFIER = 100
# Reasons the walkthrough's page asks for: Regulation B's commentary finds more than four
# unlikely to help the applicant; FCRA's key factors are up to four.
DEFAULT_REASONS = 4
# Text files rendered from templates/<name>.j2; openapi.json is built as data.
TEXT_OUTPUTS = ("credit_risk_api.pks", "credit_risk_api.pkb", "rest-data-source.md", "README.md")


class RenderError(Exception):
    """An input the generator cannot use; the message says what to fix."""


# ------------------------------------------------------------------------------------- signature
def columns_from_spec(specs: list[dict], what: str, contract: dict | None = None) -> list[Column]:
    """Signature column dicts (MLflow's ``Schema.to_dict()``) as checked Columns, with the
    rules of the model's input contract (nullable, categories, bounds) where it has one."""
    rules = _contract_rules(contract)
    if not specs:
        raise RenderError(f"the model signature has no {what}; log the model with a signature")
    columns = []
    for spec in specs:
        name, kind = spec.get("name"), spec.get("type")
        if not name:
            raise RenderError(
                f"the model signature has an unnamed {what[:-1]} (a tensor signature?); "
                "APEX needs named columns: log the model with a DataFrame signature"
            )
        if kind not in SUPPORTED_TYPES:
            raise RenderError(
                f"column '{name}' has type '{kind}'; supported: {', '.join(SUPPORTED_TYPES)}"
            )
        rule = rules.get(name)
        extra = {}
        if rule is not None:
            extra = {
                "contract_nullable": rule.nullable,
                "categories": rule.categories or (),
                "closed": contract.get("unknown_categories", "refuse") == "refuse",
                "minimum": rule.minimum,
                "maximum": rule.maximum,
            }
        columns.append(Column(name=name, type=kind, required=spec.get("required", True), **extra))
    idents = [column.ident for column in columns]
    duplicates = sorted({ident for ident in idents if idents.count(ident) > 1})
    if duplicates:
        raise RenderError(f"{what} map to the same PL/SQL name: {', '.join(duplicates)}")
    too_long = [column.name for column in columns if len(column.ident) > MAX_IDENTIFIER]
    if too_long:
        raise RenderError(f"column names longer than {MAX_IDENTIFIER} characters: {too_long}")
    return columns


def _contract_rules(contract: dict | None) -> dict:
    """The contract's column rules by name ({} without a contract: an older model)."""
    if contract is None:
        return {}
    from serving.contract import ContractError, InputContract

    try:
        parsed = InputContract.from_dict(contract)
    except ContractError as error:
        raise RenderError(f"the model's input contract is not usable: {error}") from None
    return {rule.name: rule for rule in parsed.columns}


def check_reason_codes(entries) -> list[dict]:
    """The model's reason table as `[{"column", "code", "text"}]` ([] without one)."""
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(
        isinstance(entry, dict) and {"column", "code", "text"} <= set(entry) for entry in entries
    ):
        raise RenderError(
            "the model's reason_codes metadata is not a list of {column, code, text}; "
            "train it again with a reason table"
        )
    return entries


def _schema_list(value) -> list[dict]:
    # MLflow stores the schema as a JSON string inside the signature dict; accept both forms.
    return json.loads(value) if isinstance(value, str) else list(value or [])


def load_signature_file(path: Path) -> dict:
    """The signature document written by ``--write-signature`` (or MLflow's signature dict)."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise RenderError(f"signature file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise RenderError(f"signature file {path} is not JSON: {error}") from None
    if not isinstance(document, dict) or "inputs" not in document:
        raise RenderError(
            f"signature file {path} has no 'inputs'; write one with --write-signature"
        )
    return {
        "model_name": document.get("model_name"),
        "inputs": _schema_list(document["inputs"]),
        "outputs": _schema_list(document.get("outputs")),
        "input_example": document.get("input_example"),
        "contract": document.get("contract"),
        "reason_codes": document.get(facts.REASON_CODES_KEY),
    }


def load_registry_signature(tracking_uri: str | None, model_name: str, alias: str) -> dict:
    """Signature and first example row of ``models:/<model_name>@<alias>``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from training.registry import configure_client

    uri = configure_client(tracking_uri)
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RenderError(
                f"model '{model_name}' has no alias @{alias} at {uri}; promote a version with "
                "'make promote' or pass --model-name/--alias"
            ) from None
        raise
    model_uri = f"models:/{model_name}/{version.version}"
    info = mlflow.models.get_model_info(model_uri)
    if info.signature is None:
        raise RenderError(f"{model_uri} was logged without a signature; log it with one")
    signature = info.signature.to_dict()
    return {
        "model_name": model_name,
        "inputs": _schema_list(signature["inputs"]),
        "outputs": _schema_list(signature.get("outputs")),
        "input_example": _first_example_row(model_uri, info.saved_input_example_info),
        # The input contract training wrote (None for a model logged before contracts).
        "contract": (info.metadata or {}).get("input_contract"),
        # The reason table (None for a model logged before reason codes), only when the
        # signature declares the params that ask for them.
        "reason_codes": (info.metadata or {}).get(facts.REASON_CODES_KEY)
        if _declares_reasons(signature.get("params"))
        else None,
    }


def _declares_reasons(params) -> bool:
    specs = json.loads(params) if isinstance(params, str) else (params or [])
    return any(spec.get("name") == facts.REASONS_PARAM for spec in specs)


def _first_example_row(model_uri: str, example_info: dict | None) -> dict | None:
    import mlflow

    if not example_info or example_info.get("type") != "dataframe":
        return None
    path = mlflow.artifacts.download_artifacts(f"{model_uri}/{example_info['artifact_path']}")
    example = json.loads(Path(path).read_text())
    if "columns" in example and example.get("data"):
        row = dict(zip(example["columns"], example["data"][0], strict=True))
    elif isinstance(example, list) and example:
        row = example[0]
    else:
        return None
    # NaN (Python's json writes it bare) is "missing": null in the JSON we render.
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


# ------------------------------------------------------------------------------------- rendering
def check_gateway_url(url: str) -> str:
    """The gateway base URL without a trailing slash; HTTPS with a host name only."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise RenderError(
            f"--gateway-url '{url}' must be an https:// URL with a host name "
            "(APEX on Autonomous Database calls only HTTPS), e.g. https://ml.example.com"
        )
    if parts.query or parts.fragment:
        raise RenderError(f"--gateway-url '{url}' must not have a query string or fragment")
    return url.rstrip("/")


def _plsql_type(column: Column) -> str:
    if column.type == "string":
        return "varchar2(4000 char)"
    if column.type == "boolean":
        return "boolean"
    return "number"


def _plsql_param_type(column: Column) -> str:
    return {"string": "varchar2", "boolean": "boolean"}.get(column.type, "number")


def _json_getter(column: Column) -> str:
    return {"string": "get_string", "boolean": "get_boolean"}.get(column.type, "get_number")


def _allowed_values(column: Column) -> str:
    """The page-items table's "Allowed values" cell, from the contract's rules."""
    if column.categories:
        values = ", ".join(f"`{value}`" for value in column.categories)
        return values if column.closed else f"{values} (others accepted)"
    if column.minimum is not None and column.maximum is not None:
        return f"{column.minimum:g} to {column.maximum:g}"
    if column.minimum is not None:
        return f"at least {column.minimum:g}"
    if column.maximum is not None:
        return f"at most {column.maximum:g}"
    return ""


def _static_lov(column: Column) -> str:
    # APEX static LOV syntax: STATIC:display;return,display;return (values hold no , or ;).
    return "STATIC:" + ",".join(f"{value};{value}" for value in column.categories)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - renders SQL and Markdown, never HTML
    )
    env.filters.update(
        plsql_type=_plsql_type,
        plsql_param_type=_plsql_param_type,
        json_getter=_json_getter,
        allowed_values=_allowed_values,
        static_lov=_static_lov,
        json_string=json_string,
        sqlstr=lambda text: text.replace("'", "''"),
        tojson_compact=lambda value: json.dumps(value, ensure_ascii=True),
    )
    return env


def render(signature: dict, gateway_url: str, page: int = 1) -> dict[str, str]:
    """Every output file name with its text."""
    gateway_url = check_gateway_url(gateway_url)
    inputs = columns_from_spec(signature["inputs"], "inputs", signature.get("contract"))
    outputs = columns_from_spec(signature["outputs"], "outputs")
    model_name = signature.get("model_name") or "model"
    example = signature.get("input_example")
    reason_codes = check_reason_codes(signature.get("reason_codes"))
    context = {
        "model_name": model_name,
        "inputs": inputs,
        "outputs": outputs,
        "gateway_url": gateway_url,
        "gateway_host": urlsplit(gateway_url).hostname,
        "page": page,
        "credential": CREDENTIAL_STATIC_ID,
        "number_pattern": NUMBER_PATTERN,
        "integer_pattern": INTEGER_PATTERN,
        "example": example,
        # The gateway's and the model server's limit: APEX refuses a larger body itself.
        "max_body_bytes": facts.MAX_BODY_BYTES,
        "max_rows": facts.MAX_ROWS,
        "has_contract": signature.get("contract") is not None,
        # The model's reason table: [] for a model without reason codes (no reasons anywhere).
        "reason_codes": reason_codes,
        "reasons_param": facts.REASONS_PARAM,
        "default_reasons": min(DEFAULT_REASONS, len(reason_codes)),
    }
    env = _environment()
    files = {name: env.get_template(f"{name}.j2").render(context) for name in TEXT_OUTPUTS}
    openapi = build_openapi(model_name, inputs, outputs, gateway_url, example, reason_codes)
    files["openapi.json"] = json.dumps(openapi, indent=2, ensure_ascii=False) + "\n"
    return files


def write_all(files: dict[str, str], out: Path) -> None:
    """Replace ``out`` with exactly ``files``: render into a sibling temp folder, then swap."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        old = out.with_name(f".{out.name}-old")
        if old.exists():
            shutil.rmtree(old)
        if out.exists():
            out.rename(old)
        staging.rename(out)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


# ------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="apex.render", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--signature-file", type=Path, help="read the signature from this file")
    source.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or local server")
    parser.add_argument("--model-name", default=facts.MODEL_NAME, help="registered model name")
    parser.add_argument("--alias", default=facts.CHAMPION, help="the alias APEX should score with")
    parser.add_argument("--gateway-url", default="https://ml.example.com", help="HTTPS base URL")
    parser.add_argument("--page", type=int, default=1, help="APEX page number for item names")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--write-signature", type=Path, help="save the registry signature to this file and stop"
    )
    args = parser.parse_args(argv)
    if args.page < 0:
        parser.error("--page must be 0 or more")
    if args.write_signature and args.signature_file:
        parser.error("--write-signature reads the registry; drop --signature-file")
    return args


def main(argv: list[str] | None = None) -> int:
    from training.registry import cli_main

    @cli_main("apex.render")
    def run() -> int:
        args = parse_args(argv)
        try:
            if args.signature_file:
                signature = load_signature_file(args.signature_file)
                signature["model_name"] = signature["model_name"] or args.model_name
            else:
                signature = load_registry_signature(args.tracking_uri, args.model_name, args.alias)
            if args.write_signature:
                args.write_signature.write_text(json.dumps(signature, indent=2) + "\n")
                print(f"apex.render: wrote the signature to {args.write_signature}")
                return 0
            files = render(signature, args.gateway_url, args.page)
            write_all(files, args.out)
        except RenderError as error:
            from training.registry import CliError

            raise CliError(str(error)) from None
        name = signature["model_name"]
        print(f"apex.render: rendered {len(files)} files for {name} into {args.out}")
        return 0

    return run()


if __name__ == "__main__":
    sys.exit(main())
