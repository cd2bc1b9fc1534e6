"""The facts several components must agree on, each defined here once.

A fact that only one component uses lives in that component's typed settings (for example the
model server's worker count in serving/settings.py). What is here is read by more than one:
the model server and the gateway both enforce the body limit; the trainer registers the model
name that the model server follows; the gateway proxies to the model server's port; every
process of one Container Instance or pod shares one localhost, so no two may bind the same
port.

Everything else derives these values: the typed settings import them, `nginx/defaults.env`
is generated from them (`python -m common.facts --write`, checked by a test), and the tests of
the deployment files compute what the YAML must say from here, never from a second literal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# --- the registered model ---------------------------------------------------------------------
MODEL_NAME = "credit-risk"
"""Registered model name: what training registers, serving follows and APEX is generated for."""
CHAMPION = "champion"
"""Registry alias of the version that serves traffic."""
CHALLENGER = "challenger"
"""Registry alias of the last evaluated candidate that was not promoted."""
MODEL_URI = f"models:/{MODEL_NAME}@{CHAMPION}"
"""What the model server follows unless told otherwise."""
REASONS_PARAM = "reasons"
"""The MLflow `params` key that asks for reason codes, and the answer field that holds them:
the model (training/credit_model.py keeps a checked copy: it must stay self-contained), the
OpenAPI document and the APEX kit."""
REASON_CODES_KEY = "reason_codes"
"""MLmodel metadata key of the model's reason table: training writes it, `GET /model` and
`make apex` read it."""

# --- request limits -----------------------------------------------------------------------------
MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest request body (HTTP 413 above), at the gateway, the model server and in APEX."""

MAX_ROWS = 10_000
"""Most rows one request may score (HTTP 413 above): the model server's default
(`SERVING_MAX_ROWS`) and the batch size the APEX kit documents and checks."""

REQUEST_TIMEOUT_SECONDS = 30
"""How long the model server lets one prediction run before it answers 504 (its default,
`SERVING_REQUEST_TIMEOUT`). The gateway waits a margin longer (GATEWAY_UPSTREAM_TIMEOUT), so the
model server's own JSON 504 reaches the caller instead of nginx's."""
GATEWAY_UPSTREAM_MARGIN_SECONDS = 5

# --- ports: one plan for every shape (native, compose, Kubernetes pod, Container Instance) ------
# The gateway and the model server share one localhost in a Container Instance and natively,
# so the plan gives each listener its own number; a test checks every shape against it.
MLFLOW_PORT = 5000
"""MLflow tracking server and UI."""
MODEL_SERVER_PORT = 8080
"""Model server (gunicorn), plain HTTP, reached only by the gateway."""
GATEWAY_HTTPS_PORT = 8443
"""Gateway API over TLS: the one public door."""
GATEWAY_MLFLOW_PORT = 8444
"""Gateway's TLS front of the MLflow UI (compose and Kubernetes)."""
GATEWAY_HTTP_PORT = 8000
"""Gateway's plain HTTP listener: the health route for plain-HTTP probes, else redirects."""

PORTS = {
    "mlflow": MLFLOW_PORT,
    "model-server": MODEL_SERVER_PORT,
    "gateway-https": GATEWAY_HTTPS_PORT,
    "gateway-mlflow": GATEWAY_MLFLOW_PORT,
    "gateway-http": GATEWAY_HTTP_PORT,
}


def nginx_size(size_bytes: int) -> str:
    """A byte count as nginx writes sizes (`8m`, `512k`, or plain bytes)."""
    for suffix, unit in (("m", 2**20), ("k", 2**10)):
        if size_bytes % unit == 0:
            return f"{size_bytes // unit}{suffix}"
    return str(size_bytes)


def gateway_defaults() -> dict[str, str]:
    """The gateway's defaults that come from these facts (nginx/render.sh reads them)."""
    return {
        "GATEWAY_HTTPS_PORT": str(GATEWAY_HTTPS_PORT),
        "GATEWAY_HTTP_PORT": str(GATEWAY_HTTP_PORT),
        "GATEWAY_MLFLOW_PORT": str(GATEWAY_MLFLOW_PORT),
        "GATEWAY_MAX_BODY_SIZE": nginx_size(MAX_BODY_BYTES),
        "GATEWAY_UPSTREAM_TIMEOUT": f"{REQUEST_TIMEOUT_SECONDS + GATEWAY_UPSTREAM_MARGIN_SECONDS}s",
        "MODEL_SERVER_PORT": str(MODEL_SERVER_PORT),
        "MLFLOW_PORT": str(MLFLOW_PORT),
    }


GATEWAY_DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "nginx" / "defaults.env"


def render_gateway_defaults() -> str:
    """The text of nginx/defaults.env."""
    lines = [
        "# Generated from common/facts.py by `python -m common.facts --write`; do not edit.",
        "# nginx/render.sh reads it for every variable the environment leaves unset or empty.",
    ]
    lines += [f"{name}={value}" for name, value in gateway_defaults().items()]
    return "\n".join(lines) + "\n"


def facts_table() -> str:
    """The Markdown table of every fact (common/README.md embeds it; a test keeps it current)."""
    rows = [
        ("`MODEL_NAME`", f"`{MODEL_NAME}`", "the model training registers and serving follows"),
        ("`CHAMPION` / `CHALLENGER`", f"`@{CHAMPION}` / `@{CHALLENGER}`", "registry aliases"),
        ("`MODEL_URI`", f"`{MODEL_URI}`", "what the model server follows by default"),
        ("`MAX_BODY_BYTES`", f"{MAX_BODY_BYTES} ({nginx_size(MAX_BODY_BYTES)})",
         "largest request body: gateway, model server, APEX package"),
        ("`MAX_ROWS`", str(MAX_ROWS), "most rows per request: model server default, APEX batch"),
        ("`REQUEST_TIMEOUT_SECONDS`", f"{REQUEST_TIMEOUT_SECONDS}",
         "prediction deadline (504); the gateway waits "
         f"{GATEWAY_UPSTREAM_MARGIN_SECONDS} s longer"),
        ("`MLFLOW_PORT`", str(MLFLOW_PORT), "MLflow tracking server and UI"),
        ("`MODEL_SERVER_PORT`", str(MODEL_SERVER_PORT), "model server (behind the gateway)"),
        ("`GATEWAY_HTTPS_PORT`", str(GATEWAY_HTTPS_PORT), "gateway API over TLS"),
        ("`GATEWAY_MLFLOW_PORT`", str(GATEWAY_MLFLOW_PORT), "gateway's TLS front of the MLflow UI"),
        ("`GATEWAY_HTTP_PORT`", str(GATEWAY_HTTP_PORT), "plain HTTP: /healthz, else redirect"),
    ]  # fmt: skip
    lines = ["| Fact | Value | What it is |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {meaning} |" for name, value, meaning in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.facts", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--write", action="store_true", help="regenerate nginx/defaults.env")
    parser.add_argument("--get", metavar="NAME", help="print one fact (for shell scripts)")
    parser.add_argument("--markdown", action="store_true", help="print the table of facts")
    args = parser.parse_args(argv)
    if args.get:
        value = globals().get(args.get)
        if args.get.startswith("_") or not isinstance(value, str | int):
            print(f"facts: no fact named {args.get}", file=sys.stderr)
            return 2
        print(value)
    elif args.markdown:
        sys.stdout.write(facts_table())
    elif args.write:
        GATEWAY_DEFAULTS_FILE.write_text(render_gateway_defaults())
        print(f"wrote {GATEWAY_DEFAULTS_FILE}")
    else:
        for name, value in {"MODEL_NAME": MODEL_NAME, "MODEL_URI": MODEL_URI,
                            "MAX_BODY_BYTES": MAX_BODY_BYTES, **PORTS}.items():  # fmt: skip
            print(f"{name:16} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
