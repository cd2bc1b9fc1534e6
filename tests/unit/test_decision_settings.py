"""DECISIONS_* settings: what is kept, the hash key, the store URI, one-line errors."""

import pytest

from serving.decisions import DecisionSettings, InputMode, load_decision_settings
from serving.decisions.log import _dumps


def test_defaults_keep_full_inputs_in_a_local_sqlite_file_for_25_months():
    settings = DecisionSettings()
    assert settings.mode is InputMode.FULL
    assert settings.store_uri.get_secret_value().startswith("sqlite:///.local/")
    assert settings.retention_days * 12 >= 25 * 365  # 25 months of days


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DECISIONS_MODE": "hashed"}, "DECISIONS_HASH_KEY_FILE: required"),
        ({"DECISIONS_MODE": "everything"}, "DECISIONS_MODE"),
        ({"DECISIONS_STORE_URI": "mysql://x/y"}, "DECISIONS_STORE_URI"),
        ({"DECISIONS_QUEUE_SIZE": "0"}, "DECISIONS_QUEUE_SIZE"),
        ({"DECISIONS_PRUNE_INTERVAL": "-1"}, "DECISIONS_PRUNE_INTERVAL"),
        ({"DECISIONS_RECONNECT_BACKOFF_MAX": "0"}, "DECISIONS_RECONNECT_BACKOFF_MAX"),
        ({"DECISIONS_WRITER_ROLE": "x; drop table decisions"}, "DECISIONS_WRITER_ROLE"),
        ({"DECISIONS_WRITER_PASSWORD": "pw-at-least-this"}, "only in PostgreSQL"),
    ],
)
def test_invalid_settings_name_the_variable(monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        load_decision_settings()
    assert expected in str(stopped.value) and "\n" not in str(stopped.value)


def test_a_short_hash_key_is_refused(monkeypatch, tmp_path):
    key = tmp_path / "key"
    key.write_text("short")
    monkeypatch.setenv("DECISIONS_MODE", "hashed")
    monkeypatch.setenv("DECISIONS_HASH_KEY_FILE", str(key))
    with pytest.raises(SystemExit, match="32 bytes"):
        load_decision_settings()


def test_store_uri_is_never_printed():
    settings = DecisionSettings(store_uri="postgresql://u:pw-123@db/decisions")
    assert "pw-123" not in repr(settings) and "pw-123" not in str(settings)


def test_canonical_json_has_no_nan():
    assert _dumps({"b": float("nan"), "a": 1}) == '{"a":1,"b":null}'
