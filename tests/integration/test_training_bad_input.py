"""Bad training input: one clear line, a non-zero exit, nothing registered, alias unchanged."""

import pytest
from mlflow import MlflowClient

from stack.services import MlflowServer, run_cli

MODEL = "credit-risk"


@pytest.fixture(scope="module")
def server_with_champion(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    for module in ("training.train", "training.promote"):
        out = run_cli(module, "--model-name", MODEL, tracking_uri=server.uri)
        assert out.returncode == 0, out.stderr
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("content", "target", "message"),
    [
        ("income,purpose\n1,car\n2,car\n", "defaulted", "target column 'defaulted' is not in"),
        ("", "defaulted", "is empty"),
        (
            "income,defaulted\n" + "".join(f"{i},{i % 2}\n" for i in range(50)) + "lots,1\n",
            "defaulted",
            "column 'income' is numeric but holds text",
        ),
        (
            "income,defaulted\n" + "".join(f"{i},1\n" for i in range(50)),
            "defaulted",
            "exactly two classes",
        ),
    ],
    ids=["missing-target", "empty-file", "text-in-numeric", "one-class"],
)
def test_bad_data_is_refused(server_with_champion, tmp_path, content, target, message):
    path = tmp_path / "loans.csv"
    path.write_text(content)
    out = run_cli(
        "training.train",
        "--data",
        str(path),
        "--target",
        target,
        tracking_uri=server_with_champion.uri,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("train: error: ") and message in lines[0]
    assert "Traceback" not in out.stderr

    client = MlflowClient(server_with_champion.uri, server_with_champion.uri)
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert [v.version for v in versions] == ["1"], "nothing new may be registered"
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"


def test_unreachable_server_is_one_line():
    out = run_cli(
        "training.promote",
        tracking_uri="http://127.0.0.1:9",
        env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"},
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the MLflow tracking server" in lines[0], out.stderr
