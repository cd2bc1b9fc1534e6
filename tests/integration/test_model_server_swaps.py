"""Following `@champion`: zero-downtime swaps, broken candidates, pinned URIs, registry outages."""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from stack.services import MlflowServer, ModelServer, run_cli, wait_until
from training.data import TARGET, generate_credit_data

MODEL = "credit-risk"
ROW = {
    k: v if v == v else None  # NaN is null: every column is sent (the input contract)
    for k, v in generate_credit_data(1000, seed=5).drop(columns=TARGET).iloc[0].items()
}
BROKEN_MODEL_CODE = '''
import mlflow


class Broken(mlflow.pyfunc.PythonModel):
    """Raises on every call, or only for negative incomes when configured so."""

    def load_context(self, context):
        self.only_negative = (context.model_config or {}).get("only_negative", False)

    def predict(self, context, model_input, params=None):
        if not self.only_negative or (model_input["annual_income"] < 0).any():
            raise RuntimeError("broken on purpose: secret internals")
        return model_input[["annual_income"]].rename(columns={"annual_income": "probability"})


mlflow.models.set_model(Broken())
'''


@dataclass
class LoadClient:
    """Sends single-row predictions continuously (about 40 per second) on one keep-alive
    session, like a gateway does, and records every outcome."""

    url: str
    results: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        session = requests.Session()
        payload = json.dumps({"dataframe_records": [ROW]})
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                response = session.post(
                    f"{self.url}/invocations",
                    data=payload,
                    timeout=30,
                    headers={"Content-Type": "application/json"},
                )
                self.results.append(
                    (started, response.status_code, response.headers.get("X-Model-Version"))
                )
                if response.status_code != 200:
                    self.failures.append((started, response.status_code, response.text[:200]))
            except requests.RequestException as error:
                self.failures.append((started, "exception", repr(error)))
            time.sleep(max(0.0, 0.025 - (time.monotonic() - started)))

    def __enter__(self) -> LoadClient:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)

    def versions_since(self, moment: float) -> set:
        return {version for started, _, version in self.results if started >= moment}

    def rate(self) -> float:
        span = self.results[-1][0] - self.results[0][0]
        return len(self.results) / span if span else 0.0


def register_broken(registry, tmp_path: Path, name: str = MODEL, **config) -> str:
    """Register a model whose predict raises, with the champion's signature and example."""
    import mlflow

    mlflow.set_tracking_uri(registry.uri)
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    code = tmp_path / "broken_model.py"
    code.write_text(BROKEN_MODEL_CODE)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            model_config=config,
            signature=champion.metadata.signature,
            input_example=champion.input_example,
            registered_model_name=name,
            pip_requirements=["mlflow"],
        )
    return str(info.registered_model_version)


def remove_model_files(registry, version: str) -> None:
    """Delete a version's pipeline from the server's artifact store (a corrupted upload)."""
    uri = registry.client.get_model_version_download_uri(MODEL, version)
    relative = uri.split("mlflow-artifacts:/", 1)[1]
    artifacts = registry.server.workdir / "artifacts" / relative
    removed = list(artifacts.rglob("*.skops"))
    assert removed, f"no pipeline file under {artifacts}"
    for path in removed:
        path.unlink()


@pytest.fixture
def follower(trained_registry, tmp_path):
    trained_registry.set_champion("1")
    server = ModelServer(
        tmp_path / "follower",
        trained_registry.uri,
        f"models:/{MODEL}@champion",
        workers=2,
        poll_interval=1,
    ).start()
    yield server
    server.stop()


def current_version(server: ModelServer) -> str:
    return requests.get(f"{server.url}/model", timeout=5).json()["version"]


def test_alias_move_swaps_without_a_failed_request(trained_registry, follower):
    with LoadClient(follower.url) as client:
        wait_until(lambda: len(client.results) > 40, 30, "load client warmed up")
        moved_at = time.monotonic()
        trained_registry.set_champion("2")
        # Done when the last two seconds of responses all carry the new version.
        wait_until(
            lambda: time.monotonic() - moved_at > 2
            and client.versions_since(time.monotonic() - 2) == {"2"},
            40,
            "all responses from version 2",
        )
        seen = len(client.results)  # a little traffic after the swap completed
        wait_until(lambda: len(client.results) > seen + 20, 10, "traffic after the swap")
    assert client.failures == [], client.failures[:5]
    # Traffic kept flowing through the swap (a stalled server would leave this near zero); the
    # floor is low because a loaded 2-core machine runs this client at 20-60 requests/s.
    assert client.rate() >= 10, f"the client only reached {client.rate():.1f} requests/s"
    last_old = max(started for started, _, version in client.results if version == "1")
    assert last_old - moved_at < 30, "the swap took longer than 30 s"
    assert current_version(follower) == "2"
    info = requests.get(f"{follower.url}/model", timeout=5).json()
    assert info["swaps"]["completed"] == 1


def test_broken_candidates_never_replace_the_served_version(trained_registry, follower, tmp_path):
    broken = register_broken(trained_registry, tmp_path)
    corrupted = trained_registry.train()
    remove_model_files(trained_registry, corrupted)
    with LoadClient(follower.url) as client:
        for version in (broken, corrupted):
            trained_registry.set_champion(version)
            wait_until(
                lambda v=version: _last_failure(follower) == v,
                60,
                f"failed swap to version {version} reported",
            )
        time.sleep(1)
    assert client.failures == [], client.failures[:5]
    assert client.versions_since(0) == {"1"}
    info = requests.get(f"{follower.url}/model", timeout=5).json()
    assert info["version"] == "1" and info["swaps"]["failed"] >= 2
    assert info["swaps"]["last_failure"]["reason"]
    metrics = requests.get(f"{follower.url}/metrics", timeout=5).text
    assert any(
        line.startswith("model_server_swap_failures_total ") and float(line.split()[1]) >= 2
        for line in metrics.splitlines()
    )
    # The server is still able to follow a good version afterwards.
    trained_registry.set_champion("2")
    wait_until(lambda: current_version(follower) == "2", 40, "swap to version 2")


def _last_failure(server: ModelServer) -> str | None:
    failure = requests.get(f"{server.url}/model", timeout=5).json()["swaps"]["last_failure"]
    return failure["version"] if failure else None


def test_pinned_uri_does_not_follow(trained_registry, tmp_path):
    trained_registry.set_champion("1")
    server = ModelServer(
        tmp_path / "pinned", trained_registry.uri, f"models:/{MODEL}/2", poll_interval=1
    ).start()
    try:
        trained_registry.set_champion("1")
        time.sleep(3)  # three poll intervals in which a follower would have moved
        info = requests.get(f"{server.url}/model", timeout=5).json()
        assert info["version"] == "2" and info["following"] is False and info["alias"] is None
    finally:
        server.stop()


def test_exception_inside_the_model_is_a_safe_500(trained_registry, tmp_path):
    version = register_broken(trained_registry, tmp_path, name="fragile", only_negative=True)
    server = ModelServer(
        tmp_path / "fragile", trained_registry.uri, f"models:/fragile/{version}", workers=1
    ).start()
    try:
        row = {**ROW, "annual_income": -1.0}
        response = requests.post(
            f"{server.url}/invocations", timeout=10, json={"dataframe_records": [row]}
        )
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "model_error"
        assert "secret internals" not in response.text and "Traceback" not in response.text
        request_id = response.headers["X-Request-ID"]
        log = server.log_text()
        # The exception's type and code locations go to the log, not its message (which
        # can quote the input): serving/contract.py log_model_failure.
        assert request_id in log and "RuntimeError" in log, "details go to the server log"
    finally:
        server.stop()


def test_registry_outage_and_restart_from_cache(tmp_path):
    mlflow_server = MlflowServer(tmp_path / "mlflow").start()
    for module in ("training.train", "training.promote"):
        out = run_cli(
            module,
            *(["--rows", "6000"] if module == "training.train" else []),
            tracking_uri=mlflow_server.uri,
        )
        assert out.returncode == 0, out.stderr
    server = ModelServer(
        tmp_path / "server", mlflow_server.uri, f"models:/{MODEL}@champion", poll_interval=1
    ).start()
    try:
        with LoadClient(server.url) as client:
            wait_until(lambda: len(client.results) > 20, 30, "traffic flowing")
            mlflow_server.stop()
            stopped_at = time.monotonic()
            wait_until(
                lambda: time.monotonic() - stopped_at > 4, 10, "polls against a dead registry"
            )
        assert client.failures == [] and client.versions_since(stopped_at) == {"1"}

        server.stop()
        server.start()  # the registry is still down: the cached version must come up
        info = requests.get(f"{server.url}/model", timeout=5).json()
        assert info["source"] == "cache" and info["version"] == "1"
        assert info["cache_reason"]
        response = requests.post(
            f"{server.url}/invocations", timeout=10, json={"dataframe_records": [ROW]}
        )
        assert response.status_code == 200 and response.headers["X-Model-Version"] == "1"
    finally:
        server.stop()
        shutil.rmtree(tmp_path / "mlflow", ignore_errors=True)
