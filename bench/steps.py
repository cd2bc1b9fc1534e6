"""`python -m bench.steps`: where one request's time goes on the batch path, step by step.

    python -m bench.steps                 # 1,000 rows (make bench-steps)
    python -m bench.steps --rows 1 --repeat 200

Trains and promotes the default pipeline on a real `mlflow server` in a temporary directory,
loads @champion the way a worker does (serving.loading.load_and_check) and times, in this one
process, each step a request of the benchmark's body takes in the model server: parsing,
records to rows, the contract check, MLflow's frame building, `pyfunc.predict`, the answer's
bytes, and the decision log writer's work for it (JSON of the rows and outputs, the SQLite
insert and commit). Medians of `--repeat` runs, in milliseconds. It is the profile behind
bench/README.md ("Issue 15's targets"); the numbers are one process with
OMP_NUM_THREADS=1, as in the workers, not a server under load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as serving/gunicorn_conf.py sets it

from bench import processes  # noqa: E402 - after the thread setting, before numpy loads
from bench.payloads import records  # noqa: E402
from bench.run import in_workdir  # noqa: E402
from common.facts import CHAMPION, MODEL_NAME  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.steps", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows per request (1000)")
    parser.add_argument("--repeat", type=int, default=30, help="runs per step (30)")
    parser.add_argument("--train-rows", type=int, default=4000, help="training rows (4000)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")
    return args


def timed(step, repeat: int) -> float:
    """The median of `repeat` runs of `step()`, in ms, after one run that is not counted."""
    step()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs) * 1000


def measure(args: argparse.Namespace, workdir: Path) -> list[tuple[str, float]]:
    import mlflow
    from prometheus_client import CollectorRegistry

    from serving.batching import mlflow_frame_builder, mlflow_serialiser
    from serving.contract import check_rows, contract_of
    from serving.decisions import DecisionLog, DecisionMetrics, DecisionSettings
    from serving.decisions.log import _Entry
    from serving.evidence import RowView
    from serving.intake import _json_rows, parse_json, read_with_contract
    from serving.loading import load_and_check
    from serving.settings import ServingSettings

    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    server = processes.MlflowServer(workdir / "mlflow")
    try:
        server.start()
        processes.prepare_registry(server.uri, args.train_rows, workdir)
        mlflow.set_tracking_uri(server.uri)
        model, _seconds = load_and_check(f"models:/{MODEL_NAME}@{CHAMPION}")
    finally:
        server.stop()
    contract = contract_of(model.metadata.metadata)
    settings = ServingSettings()
    body = json.dumps({"dataframe_records": records(args.rows)}).encode()
    document = parse_json(body)
    columns, rows = _json_rows(document, contract, settings.max_rows)
    accepted = read_with_contract(body, "application/json", contract, settings)
    build_frame = mlflow_frame_builder(model.metadata.get_input_schema())
    frame = build_frame(accepted.columns, accepted.data)
    outputs = model.predict(frame)
    serialise = mlflow_serialiser()
    decision_log = DecisionLog(
        DecisionSettings(store_uri=f"sqlite:///{workdir / 'decisions.db'}"),
        DecisionMetrics(CollectorRegistry()),
    )
    store = decision_log._store_or_open()
    count = iter(range(10**9))

    def entry():
        view = RowView(accepted.columns, accepted.data)
        return _Entry(time.time(), f"steps-{next(count)}", "bench", MODEL_NAME, "1",
                      "champion", view, outputs, 1.0, args.rows)  # fmt: skip

    def encode():
        return decision_log._rows(entry(), store.time_value)

    def write():
        store.write(encode())

    repeat = args.repeat
    steps = [
        ("JSON parse (duplicate-key hook)", timed(lambda: parse_json(body), repeat)),
        ("records to rows", timed(lambda: _json_rows(document, contract, 10**6), repeat)),
        (
            "contract check",
            timed(lambda: check_rows(columns, [list(r) for r in rows], contract), repeat),
        ),  # fmt: skip
        ("MLflow's frame building", timed(lambda: build_frame(columns, accepted.data), repeat)),
        ("pyfunc.predict", timed(lambda: model.predict(frame), repeat)),
        ("the answer's bytes", timed(lambda: serialise(outputs), repeat)),
        ("decision log: rows' JSON", timed(encode, repeat)),
        ("decision log: rows' JSON + SQLite insert + commit", timed(write, repeat)),
    ]
    decision_log.close()
    return steps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    steps = in_workdir("bench.steps", False, measure, args)
    print(f"One {args.rows}-row request, median of {args.repeat} runs, one process:\n")
    print("| step | ms |\n|---|---:|")
    for name, ms in steps:
        print(f"| {name} | {ms:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
