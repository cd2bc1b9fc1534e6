"""Structural checks of the SQL*Plus/SQLcl scripts and the generated package (no database here).

* every PL/SQL unit (create package/procedure/function/trigger/type, declare, begin) ends with
  an ``end ...;`` line followed by a line holding only ``/``;
* every ``&var``/``&&var`` is defined (accept/define) earlier on the way from an entry script
  through its ``@@`` calls; every script is reached from an entry script;
* no literal URL and nothing that looks like a key; the credential secret is a variable;
* entry scripts stop on the first error, spool a log and end with a verification;
* every file parses under the Oracle PL/SQL grammar (``../shared/tools/plsql-check``, which lives
  beside the project: the test says so and skips where it is absent): the scripts, the
  committed package, and the package rendered for a model without reason codes.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SQL = ROOT / "apex" / "sql"
GENERATED = ROOT / "apex" / "generated"
# The syntax checker lives beside the project, not in it (../shared/tools/plsql-check). The
# parse tests carry the `plsql` mark and run under `make plsql-check` (CI calls it), which
# passes the tool as PLSQL_CHECK and stops with a message where it is absent; `make test`
# deselects them (tests/unit/conftest.py), so it does not depend on ../shared.
PLSQL_CHECK_ENV = "PLSQL_CHECK"
# What apex/sql/install.sql asks for, as plsql-check's README says to give them.
SQLPLUS_DEFINES = ("parsing_schema=APP_SCHEMA", "ml_host=ml.example.com", "ml_port=443")
ALL_FILES = sorted(
    [*SQL.glob("*.sql"), *GENERATED.glob("*.pks"), *GENERATED.glob("*.pkb")],
    key=lambda p: p.name,
)

UNIT_START = re.compile(
    r"^(create(\s+or\s+replace)?(\s+(editionable|noneditionable))?\s+"
    r"(package(\s+body)?|procedure|function|trigger|type(\s+body)?)\b|declare\b|begin\b)",
    re.IGNORECASE,
)
UNIT_END = re.compile(r"^\s*end(\s+[a-z_][\w$#]*)?\s*;\s*(--.*)?$", re.IGNORECASE)
SUBSTITUTION = re.compile(r"&{1,2}([a-z_][a-z0-9_]*)", re.IGNORECASE)
DEFINES = re.compile(r"^\s*(accept|define)\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)
UNDEFINES = re.compile(r"^\s*undefine\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)
CALLS = re.compile(r"^\s*@@(\S+)", re.IGNORECASE)
URL = re.compile(r"\bhttps?://", re.IGNORECASE)
LONG_TOKEN = re.compile(r"'([A-Za-z0-9_\-+/=]{20,})'")


def looks_like_a_key(text: str) -> str | None:
    """A long quoted token that mixes upper case, lower case and digits, as random keys do."""
    for token in LONG_TOKEN.findall(text):
        if all(re.search(kind, token) for kind in ("[a-z]", "[A-Z]", "[0-9]")):
            return token
    return None


def plsql_units(path: Path) -> list[str]:
    """Problems with the PL/SQL units of one file (empty when every unit is closed with /)."""
    problems, start, started_with, begins = [], None, "", 0
    body: list[tuple[int, str]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if start is None:
            match = UNIT_START.match(line)
            if match:
                start, started_with, begins, body = number, match.group(0).lower(), 0, []
                body.append((number, line))
            elif line.strip() == "/":
                problems.append(f"{path.name}:{number}: '/' outside a PL/SQL unit")
            continue
        if line.strip() == "/":
            code = [
                (n, text) for n, text in body if text.strip() and not text.strip().startswith("--")
            ]
            if not code or not UNIT_END.match(code[-1][1]):
                problems.append(
                    f"{path.name}:{start}: unit does not end with 'end ...;' before '/' "
                    f"at line {number}"
                )
            start = None
            continue
        if UNIT_START.match(line):
            if line.lower().startswith("begin") and started_with == "declare" and begins == 0:
                begins += 1
            else:
                problems.append(
                    f"{path.name}:{start}: unit not closed with '/' before line {number}"
                )
                start, started_with, begins, body = number, line.lower(), 0, []
        body.append((number, line))
    if start is not None:
        problems.append(f"{path.name}:{start}: unit not closed with '/' at the end of the file")
    return problems


def callees(path: Path) -> list[Path]:
    return [
        (path.parent / match.group(1)).resolve()
        for line in path.read_text().splitlines()
        if (match := CALLS.match(line))
    ]


def entry_scripts() -> list[Path]:
    called = {callee for path in SQL.glob("*.sql") for callee in callees(path)}
    return sorted(path.resolve() for path in SQL.glob("*.sql") if path.resolve() not in called)


def walk(path: Path, defined: set[str], visited: set[Path], problems: list[str]) -> None:
    """Follow ``path`` line by line like SQL*Plus, tracking which variables are defined."""
    visited.add(path)
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        for name in SUBSTITUTION.findall(line):
            if name.lower() not in defined:
                problems.append(f"{path.name}:{number}: &{name} used before accept/define")
        if match := DEFINES.match(line):
            defined.add(match.group(2).lower())
        elif match := UNDEFINES.match(line):
            defined.discard(match.group(1).lower())
        elif match := CALLS.match(line):
            callee = (path.parent / match.group(1)).resolve()
            if not callee.exists():
                problems.append(f"{path.name}:{number}: @@{match.group(1)} does not exist")
            else:
                walk(callee, defined, visited, problems)


def test_the_kit_has_the_scripts_the_readme_names():
    names = {path.name for path in ALL_FILES}
    assert {
        "install.sql",
        "uninstall.sql",
        "set_api_key.sql",
        "credit_risk_api.pks",
        "credit_risk_api.pkb",
    } <= names
    assert [p.name for p in entry_scripts()] == ["install.sql", "set_api_key.sql", "uninstall.sql"]


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_plsql_unit_is_closed_and_followed_by_a_slash(path):
    assert plsql_units(path) == []


def test_the_key_check_tells_keys_from_identifiers():
    assert looks_like_a_key("x := 'CREDIT_RISK_API_SETTINGS';") is None
    assert looks_like_a_key("p_value => 'k3Y9aB7xQ2mN5pL8rT4vW6zY'") == "k3Y9aB7xQ2mN5pL8rT4vW6zY"


def test_the_checker_finds_an_unclosed_unit(tmp_path):
    script = tmp_path / "bad.sql"
    script.write_text("begin\n   null;\nend;\nbegin\n   null;\nend;\n/\ndeclare\n   x number;\n")
    problems = plsql_units(script)
    assert any("not closed with '/' before line 4" in p for p in problems)
    assert any("at the end of the file" in p for p in problems)
    script.write_text("create or replace package p is\n   x number;\n/\n")
    assert any("does not end with 'end ...;'" in p for p in plsql_units(script))


def test_every_substitution_variable_is_defined_before_use():
    problems: list[str] = []
    visited: set[Path] = set()
    for entry in entry_scripts():
        walk(entry, set(), visited, problems)
    assert problems == []
    assert {p.resolve() for p in ALL_FILES} <= visited, "every script is reached from an entry"


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_no_literal_url_or_key(path):
    text = path.read_text()
    assert not URL.search(text), f"{path.name}: URLs come from substitution variables/settings"
    assert looks_like_a_key(text) is None, f"{path.name}: a literal that looks like a key"
    for match in re.finditer(r"p_(value|client_secret)\s*=>\s*([^,\n)]+)", text):
        assert match.group(2).strip() == "'&ml_api_key'", match.group(0)


def test_generated_package_uses_no_substitution_variables():
    for path in GENERATED.glob("*.pk?"):
        assert "&" not in path.read_text(), f"{path.name}: '&' would make SQL*Plus prompt"


@pytest.mark.parametrize("name", ["install.sql", "uninstall.sql", "set_api_key.sql"])
def test_entry_scripts_stop_on_error_log_and_verify(name):
    text = (SQL / name).read_text()
    lines = [line.strip().lower() for line in text.splitlines()]
    assert "whenever sqlerror exit failure rollback" in lines
    assert any(line.startswith("spool ") and line != "spool off" for line in lines)
    assert "set define on verify off echo off feedback on termout on" in lines
    for heading in ("Purpose:", "Prerequisites:", "How to run:"):
        assert heading in text
    last_step = re.findall(r"^@@(\S+)", text, re.MULTILINE)[-1:] or [name]
    verification = (SQL / last_step[0]).read_text()
    assert re.search(r"^select\b", verification, re.MULTILINE), "ends with a query"


def test_install_runs_the_steps_in_order_and_hides_the_key():
    text = (SQL / "install.sql").read_text()
    steps = re.findall(r"^@@(\S+)", text, re.MULTILINE)
    assert steps == [
        "00_prereq_check.sql",
        "01_network_acl.sql",
        "02_settings.sql",
        "03_web_credential.sql",
        "04_package.sql",
        "05_verify.sql",
    ]
    assert re.search(r"^accept ml_api_key char hide", text, re.MULTILINE)
    for name in ("ml_host", "ml_port", "apex_workspace", "parsing_schema"):
        assert re.search(rf"^accept {name}\b", text, re.MULTILINE)
    credential = (SQL / "03_web_credential.sql").read_text()
    assert "apex_credential.c_type_http_header" in credential
    assert "co_header    constant varchar2(30 char)  := 'X-API-Key'" in credential
    assert re.search(r"^undefine ml_api_key$", credential, re.MULTILINE)
    acl = (SQL / "01_network_acl.sql").read_text()
    assert "dbms_network_acl_admin.append_host_ace" in acl
    assert "apex_application.g_flow_schema_owner" in acl


def test_package_calls_the_gateway_the_documented_way():
    body = (GENERATED / "credit_risk_api.pkb").read_text()
    for needle in (
        "apex_web_service.make_rest_request(",
        "p_credential_static_id => l_settings.credential_static_id",
        "p_transfer_timeout     => l_timeout",
        "p_http_method          => 'POST'",
        "response_header('X-Model-Version')",
        "apex_web_service.g_headers",
        "when 401 then",
        "when 413 then",
        "when 429 then",
        "when 503 then",
    ):
        assert needle in body
    assert "utl_http" not in body.lower()


def _plsql_check(files: list[str], options: tuple[str, ...] = ()) -> None:
    tool = Path(os.environ.get(PLSQL_CHECK_ENV, "")) if os.environ.get(PLSQL_CHECK_ENV) else None
    if tool is None or not tool.is_file():
        pytest.fail(f"plsql-check not found ({PLSQL_CHECK_ENV}={tool}); run `make plsql-check`")
    out = subprocess.run(
        [str(tool), *options, *files],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("\nok ") + out.stdout.startswith("ok ") == len(files), out.stdout


@pytest.mark.plsql
def test_scripts_parse_under_the_oracle_grammar():
    defines = [arg for define in SQLPLUS_DEFINES for arg in ("--define", define)]
    _plsql_check([str(path) for path in sorted(SQL.glob("*.sql"))], ("--sqlplus", *defines))


@pytest.mark.plsql
def test_packages_with_and_without_reasons_parse_under_the_oracle_grammar(tmp_path):
    from apex.render import load_signature_file, render

    signature = load_signature_file(ROOT / "apex" / "default-signature.json")
    assert signature["reason_codes"], "the committed kit is the one with reason codes"
    signature["reason_codes"] = None
    files = render(signature, "https://ml.example.com")
    assert "in_reason_count" not in files["credit_risk_api.pks"]
    without = []
    for name in ("credit_risk_api.pks", "credit_risk_api.pkb"):
        (tmp_path / name).write_text(files[name])
        without.append(str(tmp_path / name))
    committed = [str(GENERATED / "credit_risk_api.pks"), str(GENERATED / "credit_risk_api.pkb")]
    _plsql_check(committed + without)
