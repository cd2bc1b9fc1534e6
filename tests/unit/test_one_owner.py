"""Each shared fact has exactly one literal definition outside tests: common/facts.py.

Scans the tracked code and configuration (Python through its syntax tree, other files with
comments removed) for the literals of the port plan, the body limit and the model name. A
place may keep a literal only when Kubernetes, compose or Docker read it themselves (a
containerPort, a Service port, a published container port, EXPOSE) and a test computes what
it must be from the owner; those places are listed below with that test. Markdown is prose
for people and not scanned; generated files are checked by their own staleness tests.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from common import facts

ROOT = Path(__file__).resolve().parents[2]
OWNER = "common/facts.py"
SKIPPED = ("tests/", "bench/results/", "apex/generated/", "mlruns/")
SKIPPED_SUFFIXES = (".md", ".png", ".json", ".lua")

# Literals that a platform reads itself, each checked against the owner by the named test.
CHECKED_COPIES = {
    # nginx/defaults.env is generated from the owner: test_gateway_defaults_are_current.
    "nginx/defaults.env": "generated",
    # containerPort / Service port: tests/deploy/test_port_plan.py::test_kubernetes_pods and
    # test_manifests.py::test_model_server_agrees_with_serving_settings / test_gateway_agrees...
    "k8s/base/gateway-deployment.yaml": "test_port_plan.py::test_kubernetes_pods",
    "k8s/base/model-server-deployment.yaml": "test_port_plan.py::test_kubernetes_pods",
    "k8s/base/model-server-service.yaml": "test_manifests.py::test_gateway_agrees_with_contract",
    "k8s/base/mlflow-deployment.yaml": "test_port_plan.py::test_kubernetes_pods",
    "k8s/base/mlflow-service.yaml": "test_manifests.py::test_model_server_agrees_with_serving...",
    # http://mlflow:<port> in env files: the Service's port, test_manifests.py.
    "k8s/base/model-server.env": "test_manifests.py::test_model_server_agrees_with_serving...",
    "k8s/base/trainer.env": "test_manifests.py::test_trainer_job_template",
    "k8s/base/mlflow.env": "test_manifests.py::test_mlflow_contract",
    # Published container ports and service URLs: test_port_plan.py::test_compose_services...
    "docker-compose.yml": "test_port_plan.py::test_compose_services_publish_what_they_listen_on",
    # The compose Prometheus's scrape targets.
    "k8s/components/alert-rules/prometheus.compose.yml": "test_alert_rules.py::test_compose_pro...",
    # EXPOSE: test_images_expose_what_they_listen_on below.
    "nginx/Dockerfile": "test_images_expose_what_they_listen_on",
    "images/python.Dockerfile": "test_images_expose_what_they_listen_on",
}


def _number(value: int) -> re.Pattern:
    return re.compile(rf"(?<![\w.]){value}(?![\w.])")


FACTS = {
    "model name": (
        re.compile(rf"models:/{facts.MODEL_NAME}\b|MODEL_NAME\W+{facts.MODEL_NAME}\b"),
        lambda value: value == facts.MODEL_NAME
        or (isinstance(value, str) and f"models:/{facts.MODEL_NAME}" in value),
    ),
    "body limit": (
        re.compile(r"8\s*\*\s*1024\s*\*\s*1024|\b8388608\b|(?<![\w.])8m\b"),
        lambda value: value in (facts.MAX_BODY_BYTES, facts.nginx_size(facts.MAX_BODY_BYTES)),
    ),
    **{
        f"port {name}": (_number(port), lambda value, port=port: value in (port, str(port)))
        for name, port in facts.PORTS.items()
    },
}


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [
        ROOT / name
        for name in listed
        if not name.startswith(SKIPPED) and not name.endswith(SKIPPED_SUFFIXES)
        and (ROOT / name).is_file()
    ]  # fmt: skip


def _python_constants(text: str):
    """(line, value) of a module's constants: not docstrings, not slice bounds, and products
    of constants folded (so 8 * 1024 * 1024 is seen as the number it is)."""
    tree = ast.parse(text)
    skipped = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skipped.add(id(body[0].value))  # module, class and function docstrings
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skipped.add(id(node.value))  # attribute docstrings
        if isinstance(node, ast.Slice):  # text[:5000] is a length, not a port
            skipped.update(id(part) for part in (node.lower, node.upper, node.step) if part)
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            if all(isinstance(n, ast.Constant | ast.BinOp | ast.operator) for n in ast.walk(node)):
                yield node.lineno, eval(compile(ast.Expression(node), "<fact>", "eval"))  # noqa: S307 - constants only
        elif (
            isinstance(node, ast.Constant)
            and id(node) not in skipped
            and isinstance(node.value, int | str)
            and not isinstance(node.value, bool)
        ):
            yield node.lineno, node.value


def _without_comments(text: str) -> list[tuple[int, str]]:
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if stripped.startswith(("#", "--", "//")):
            continue
        lines.append((number, re.sub(r"\s#\s.*$", "", line)))
    return lines


def literal_places(fact: str) -> dict[str, list[int]]:
    pattern, matches_value = FACTS[fact]
    places: dict[str, list[int]] = {}
    for path in tracked_files():
        relative = str(path.relative_to(ROOT))
        text = path.read_text(errors="replace")
        if path.suffix == ".py":
            found = [
                n
                for n, value in _python_constants(text)
                if _python_hit(value, pattern, matches_value)
            ]
        else:
            found = [n for n, line in _without_comments(text) if pattern.search(line)]
        if found:
            places[relative] = found
    return places


def _python_hit(value, pattern, matches_value) -> bool:
    if matches_value(value):
        return True
    return isinstance(value, str) and bool(pattern.search(value)) and len(value) < 200


@pytest.mark.parametrize("fact", list(FACTS))
def test_each_fact_has_one_owner(fact):
    places = literal_places(fact)
    assert OWNER in places, f"{fact}: the owner {OWNER} no longer defines it"
    strays = {path: lines for path, lines in places.items()
              if path != OWNER and path not in CHECKED_COPIES}  # fmt: skip
    assert not strays, (
        f"{fact} is written as a literal outside {OWNER}: {strays}; read it from "
        "common.facts (or from the component's typed settings) instead"
    )


def test_the_guard_finds_a_copy(tmp_path, monkeypatch):
    """The scan is not blind: a copied port in a new Python file is reported."""
    stray = ROOT / "stack" / "_guard_probe.py"
    stray.write_text(f"PORT = {facts.MODEL_SERVER_PORT}\n")
    try:
        subprocess.run(["git", "add", "-N", str(stray)], cwd=ROOT, check=True)
        assert "stack/_guard_probe.py" in literal_places("port model-server")
    finally:
        subprocess.run(["git", "rm", "-q", "--cached", "-f", str(stray)], cwd=ROOT, check=False)
        stray.unlink(missing_ok=True)


def test_gateway_defaults_are_current():
    assert facts.GATEWAY_DEFAULTS_FILE.read_text() == facts.render_gateway_defaults(), (
        "nginx/defaults.env is stale: python -m common.facts --write"
    )


def test_images_expose_what_they_listen_on():
    from stack.ports import gateway_ports

    def exposed(path: str, stage: str | None = None) -> set[int]:
        text = (ROOT / path).read_text()
        if stage:
            text = text.split(f" AS {stage}", 1)[1].split("\nFROM ", 1)[0]
        return {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}

    assert exposed("nginx/Dockerfile") == gateway_ports({"MLFLOW_HOST": "mlflow"})
    assert exposed("images/python.Dockerfile", "model-server") == {facts.MODEL_SERVER_PORT}
    assert exposed("images/python.Dockerfile", "mlflow") == {facts.MLFLOW_PORT}


def test_facts_table_in_the_readme_is_current():
    readme = (ROOT / "common" / "README.md").read_text()
    table = readme.split("-->\n", 1)[1].split("<!-- facts:end", 1)[0]
    assert table == facts.facts_table(), "common/README.md: paste python -m common.facts --markdown"
