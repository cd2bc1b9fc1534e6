"""The trainer container's job (`python -m training.job`) against a real mlflow server."""

from mlflow import MlflowClient

from stack.services import run_cli

MODEL = "credit-risk"


def versions(uri: str) -> list[str]:
    client = MlflowClient(uri, uri)
    return sorted(v.version for v in client.search_model_versions(f"name = '{MODEL}'"))


def test_job_trains_once_then_only_on_request(mlflow_server):
    uri = mlflow_server.uri
    first = run_cli("training.job", "--rows", "6000", tracking_uri=uri)
    assert first.returncode == 0, first.stdout + first.stderr
    client = MlflowClient(uri, uri)
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"

    again = run_cli("training.job", "--rows", "6000", tracking_uri=uri)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert versions(uri) == ["1"]

    # Same data and seed: version 2 is evaluated and not promoted, which is not a failure.
    forced = run_cli(
        "training.job", "--rows", "6000", tracking_uri=uri, env={"TRAINER_MODE": "always"}
    )
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "not promoted" in forced.stdout
    assert versions(uri) == ["1", "2"]
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"


def test_job_refuses_an_unknown_mode(mlflow_server):
    out = run_cli("training.job", tracking_uri=mlflow_server.uri, env={"TRAINER_MODE": "daily"})
    assert out.returncode != 0
    assert "TRAINER_MODE must be one of" in out.stderr
    assert versions(mlflow_server.uri) == []
