"""Secrets as files (common/secret_files.py): NAME_FILE read into NAME, and the compose files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from common.secret_files import COMPOSE_SECRETS, SecretFileError, generate, read_secret_files

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_file_is_read_into_the_variable(tmp_path):
    (tmp_path / "pw").write_text("s3cret-value-123\n")
    environ = {"DB_PASSWORD_FILE": str(tmp_path / "pw"), "OTHER": "x"}
    assert read_secret_files(["DB_PASSWORD", "UNSET"], environ) == ["DB_PASSWORD"]
    assert environ["DB_PASSWORD"] == "s3cret-value-123"  # the trailing newline is not part of it
    assert "UNSET" not in environ


def test_both_set_is_refused(tmp_path):
    (tmp_path / "pw").write_text("from-file")
    environ = {"DB_PASSWORD_FILE": str(tmp_path / "pw"), "DB_PASSWORD": "from-env"}
    with pytest.raises(SecretFileError, match="DB_PASSWORD and DB_PASSWORD_FILE are both set"):
        read_secret_files(["DB_PASSWORD"], environ)


@pytest.mark.parametrize("content", [None, ""])
def test_missing_or_empty_file_names_the_variable(tmp_path, content):
    path = tmp_path / "pw"
    if content is not None:
        path.write_text(content)
    environ = {"DB_PASSWORD_FILE": str(path)}
    with pytest.raises(SecretFileError, match=f"DB_PASSWORD_FILE={path}"):
        read_secret_files(["DB_PASSWORD"], environ)
    assert "DB_PASSWORD" not in environ


def test_generate_writes_every_secret_once(tmp_path):
    folder = tmp_path / "compose"
    created = generate(folder)
    assert sorted(p.name for p in created) == sorted(COMPOSE_SECRETS)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    values = {}
    for path in created:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        values[path.name] = path.read_text().strip()
        assert len(values[path.name]) == 48
    assert len(set(values.values())) == len(values)  # each one its own
    (folder / "postgres-password").unlink()
    again = generate(folder)
    assert [p.name for p in again] == ["postgres-password"]
    kept = {p.name: p.read_text().strip() for p in folder.iterdir()}
    assert {k: v for k, v in kept.items() if k != "postgres-password"} == {
        k: v for k, v in values.items() if k != "postgres-password"
    }
    assert not list(folder.glob(".*partial"))


def test_the_compose_file_mounts_exactly_these_secrets():
    text = (ROOT / "docker-compose.yml").read_text()
    for name in COMPOSE_SECRETS:
        assert f"/{name}\n" in text, f"docker-compose.yml does not declare the secret {name}"


def test_an_entry_point_stops_in_one_line_on_an_unreadable_file(tmp_path):
    env = {
        **os.environ,
        "TRACKING_DB_HOST": "127.0.0.1",
        "TRACKING_DB_PASSWORD_FILE": str(tmp_path / "missing"),
    }
    env.pop("TRACKING_DB_PASSWORD", None)
    result = subprocess.run(
        [sys.executable, "-m", "tracking", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TRACKING_DB_PASSWORD_FILE=" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
