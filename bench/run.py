"""`python -m bench.run`: load (a) Flask, (b) mlflow models serve, (c) the model server and
(d) the gateway in turn with wrk, on one machine and one model; write JSON, Markdown, a chart.

    python -m bench.run                     # the full run (about 12 minutes on 2 cores)
    python -m bench.run --quick --out DIR   # a smoke run of a few seconds per system
    python -m bench.run --systems c,d --rows 1 --concurrency 8 --serving-env WORKERS=3

Only 127.0.0.1 is loaded, each wrk run is bounded by its duration, and every process started
here is stopped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from importlib.metadata import version as package_version
from pathlib import Path

import requests

from bench import correctness, processes, report, server_stats
from bench.load import measure
from bench.payloads import write_payloads

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
README = HERE / "README.md"
README_BEGIN, README_END = "<!-- bench:latest:begin -->", "<!-- bench:latest:end -->"
# The correctness pass: distinct one-row requests at the concurrency where batching merges most.
CORRECTNESS_CONCURRENCY = 32


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 s cells, 1 s warm-up, c=1,8, 1 row"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    parser.add_argument("--systems", default="a,b,c,d", help="subset of a,b,c,d")
    parser.add_argument("--rows", default=None, help="body sizes (default 1,100,1000)")
    parser.add_argument("--concurrency", default=None, help="wrk connections (default 1,8,32)")
    # wrk takes whole seconds only.
    parser.add_argument("--duration", type=int, default=None, help="seconds per cell (10)")
    parser.add_argument("--warmup", type=int, default=None, help="discarded seconds (2)")
    parser.add_argument("--train-rows", type=int, default=None, help="training rows (25000)")
    parser.add_argument(
        "--serving-env", action="append", default=[], metavar="NAME=VALUE",
        help="SERVING_NAME=VALUE for (c) and (d), e.g. WORKERS=3 (for tuning experiments)",
    )  # fmt: skip
    parser.add_argument(
        "--gateway-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra nginx/render.sh variable for (d)",
    )  # fmt: skip
    parser.add_argument("--label", default="", help="a note stored with the results")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and the registry")
    args = parser.parse_args(argv)
    quick = args.quick
    args.systems = [s for s in args.systems.split(",") if s]
    if not set(args.systems) <= set(report.SYSTEMS) or (
        "d" in args.systems and "c" not in args.systems
    ):
        parser.error("--systems takes a,b,c,d; d needs c (the gateway proxies to it)")
    args.rows = _ints(args.rows or ("1" if quick else "1,100,1000"))
    args.concurrency = _ints(args.concurrency or ("1,8" if quick else "1,8,32"))
    args.duration = args.duration or (1 if quick else 10)
    # The smoke run warms up too: on a loaded machine a cold first request can outlast a 1 s
    # cell at c=1, and a cell with no answer says nothing about the system.
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    args.train_rows = args.train_rows or (2000 if quick else 25_000)
    args.serving_env = _pairs(parser, args.serving_env, "SERVING_")
    args.gateway_env = _pairs(parser, args.gateway_env, "")
    return args


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def _pairs(parser, items: list[str], prefix: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"expected NAME=VALUE, got {item!r}")
        pairs[prefix + name.removeprefix(prefix)] = value
    return pairs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} is not installed; `make system-deps` installs it")
    cells_total = len(args.systems) * len(args.rows) * len(args.concurrency)
    print(
        f"bench: {cells_total} cells x {args.warmup + args.duration:g} s = "
        f"{cells_total * (args.warmup + args.duration) / 60:.1f} min of load, plus start-ups",
        flush=True,
    )
    started = datetime.now().astimezone()
    record = {
        "started": started.isoformat(timespec="seconds"),
        "label": args.label,
        "machine": machine_facts(),
        "versions": versions(),
        "settings": {
            "quick": args.quick,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rows": args.rows,
            "concurrency": args.concurrency,
            "systems": args.systems,
            "train_rows": args.train_rows,
            "serving_env": args.serving_env,
            "gateway_env": {**processes.UNTHROTTLED, **args.gateway_env},
            "wrk_timeout": "10s",
        },
    }
    record["cells"], record["checks"] = in_workdir("bench", args.keep_workdir, run_all, args)
    record["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    record["ratios"] = report.ratios(record["cells"], record["checks"].get("model_route", []))
    record["targets"] = report.targets(record["cells"], record["checks"])
    stem = f"{started:%Y-%m-%d-%H%M}-{socket.gethostname()}" + ("-quick" if args.quick else "")
    paths = report.write(record, args.out, stem)
    if (
        not args.quick
        and args.out.resolve() == DEFAULT_OUT
        and args.systems == list(report.SYSTEMS)
    ):
        update_readme(paths)
    print(report.markdown(record))
    print(report.headline(record))
    print("bench: wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def in_workdir(program: str, keep: bool, run, args):
    """`run(args, workdir)` in a new temporary directory, removed afterwards unless kept."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{program}-"))
    try:
        return run(args, workdir)
    finally:
        if keep:
            print(f"{program}: logs and registry kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_all(args: argparse.Namespace, workdir: Path) -> tuple[list[dict], dict]:
    """Start each system in turn, check its answers, load it; stop everything in the end."""
    cells: list[dict] = []
    model_route: list[dict] = []
    running: list[processes.System] = []
    # MLflow 3's server starts a pool of job-runner processes that poll all the time; the
    # registry needs none of them, and their CPU would land on the same 2 cores as the load.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    mlflow_server = processes.MlflowServer(workdir / "mlflow")
    try:
        phase = time.monotonic()
        mlflow_server.start()
        print(f"bench: mlflow server up in {time.monotonic() - phase:.1f} s; training and "
              "promoting the default pipeline", flush=True)  # fmt: skip
        phase = time.monotonic()
        version, joblib_path = processes.prepare_registry(
            mlflow_server.uri, args.train_rows, workdir
        )
        print(f"bench: version {version} registered and exported in "
              f"{time.monotonic() - phase:.1f} s", flush=True)  # fmt: skip
        payloads = write_payloads(workdir / "payloads", sorted({1, *args.rows}))
        checks: dict = {"model_version": version, "probabilities": {}}
        for key in args.systems:
            started = time.monotonic()
            system = start(key, args, workdir, mlflow_server.uri, version, joblib_path, running)
            running.append(system)
            print(f"bench: ({key}) {system.label} ready in {time.monotonic() - started:.1f} s",
                  flush=True)  # fmt: skip
            checks["probabilities"][key] = probabilities(system, payloads[1])
            model_server = next((item for item in running if item.key == "c"), None)
            metrics_url = ""
            if model_server is not None:  # its /metrics: per-worker counts, batch sizes
                metrics_url = model_server.url.replace("/invocations", "/metrics")
            for rows in args.rows:
                for concurrency in args.concurrency:
                    before = server_stats.scrape(metrics_url) if metrics_url else {}
                    cell = measure(
                        key, system.url, system.sessions, payloads[rows], rows, concurrency,
                        args.duration, args.warmup, system.api_key,
                    ).as_dict()  # fmt: skip
                    if metrics_url:
                        cell["server"] = server_stats.cell_stats(
                            before, server_stats.scrape(metrics_url)
                        )
                    cells.append(cell)
                    print_cell(cell)
                    if key == "d" and rows == min(args.rows):
                        # The bare HTTP path through the same gateway, right after the POST
                        # cell at the same concurrency: GET /model (TLS, key, nginx, wrapper).
                        route = measure(
                            "d", system.url.replace("/invocations", "/model"), system.sessions,
                            None, 0, concurrency, args.duration, args.warmup, system.api_key,
                        ).as_dict()  # fmt: skip
                        route["route"] = "GET /model"
                        model_route.append(route)
                        print(f"  (d) GET /model      c={concurrency:<3} "
                              f"{route['req_per_s']:>8.1f} req/s  errors {route['errors']}",
                              flush=True)  # fmt: skip
            if key == ("d" if "d" in args.systems else "c"):
                checks["correctness"] = correctness.check(
                    system.check_url or system.url, mlflow_server.uri, version,
                    CORRECTNESS_CONCURRENCY, 96 if args.quick else 640, system.api_key,
                    system.verify,
                )  # fmt: skip
                print(f"bench: correctness pass ({key}): {checks['correctness']}", flush=True)
            # (c) stays up for (d), which proxies to it.
            if not (key == "c" and "d" in args.systems):
                for item in running:
                    item.stop()
                running.clear()
        checks["model_route"] = model_route
        values = list(checks["probabilities"].values())
        checks["same_predictions"] = all(
            max(abs(x - y) for x, y in zip(v, values[0], strict=True)) < 1e-5 for v in values
        )
        if not checks["same_predictions"]:
            print(f"bench: WARNING the systems disagree: {checks['probabilities']}", flush=True)
        return cells, checks
    except BaseException:
        for item in running:
            for log in item.logs:
                print(f"--- {log}\n{processes.tail(log)}", file=sys.stderr)
        raise
    finally:
        for item in running:
            item.stop()
        mlflow_server.stop()


def print_cell(cell: dict) -> None:
    line = (
        f"  ({cell['system']}) rows={cell['rows']:<5} c={cell['concurrency']:<3} "
        f"{cell['req_per_s']:>8.1f} req/s {cell['rows_per_s']:>10.0f} rows/s  "
        f"p50 {cell['p50_ms']:7.1f}  p99 {cell['p99_ms']:7.1f} ms  errors {cell['errors']}  "
        f"cpu {cell['cpu_s_per_1000_req']} s/1k"
    )
    server = cell.get("server")
    if server:
        line += (
            f"  workers {server['requests_per_worker']}  batch {server['mean_batch_requests']}"
            f"  wait {server['mean_queue_wait_ms']} ms"
        )
    print(line, flush=True)


def start(key, args, workdir, tracking_uri, version, joblib_path, running) -> processes.System:
    if key == "a":
        return processes.start_flask(workdir, joblib_path)
    if key == "b":
        return processes.start_mlflow_serve(workdir, tracking_uri, version)
    if key == "c":
        return processes.start_model_server(workdir, tracking_uri, args.serving_env)
    model_server = next(item for item in running if item.key == "c")
    return processes.start_gateway(workdir, model_server, args.gateway_env)


def probabilities(system: processes.System, payload: Path) -> list[float]:
    """One request through the route wrk loads; the probabilities it answers."""
    response = requests.post(
        system.check_url or system.url,
        data=payload.read_bytes(),
        headers={"Content-Type": "application/json", "X-API-Key": system.api_key},
        verify=system.verify,
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(f"({system.key}) answered {response.status_code}: {response.text[:500]}")
    return [round(float(p["probability"]), 6) for p in response.json()["predictions"]]


def machine_facts() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    memory = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    return {
        "host": socket.gethostname(),
        "cpu": model.group(1).strip() if model else platform.processor(),
        "cores": os.cpu_count(),
        "memory_gb": round(int(memory.group(1)) / 1024 / 1024, 1) if memory else None,
        "kernel": platform.release(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in ("mlflow", "scikit-learn", "pandas", "flask", "gunicorn", "uvicorn", "uvloop",
                 "httptools"):  # fmt: skip
        try:
            found[name] = package_version(name)
        except Exception:  # noqa: BLE001 - an absent package is recorded as such
            found[name] = None
    for tool, command in {
        "nginx": ["nginx", "-v"],
        "openssl": ["openssl", "version"],
        "wrk": ["wrk", "-v"],
    }.items():
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        found[tool] = (result.stdout + result.stderr).strip().splitlines()[0]
    return found


def update_readme(paths: dict[str, Path]) -> None:
    """Put the latest table and chart between the markers of bench/README.md."""
    if not README.exists():
        return
    text = README.read_text()
    if README_BEGIN not in text or README_END not in text:
        return
    block = (
        f"{README_BEGIN}\n![latest run](results/{paths['chart'].name})\n\n"
        f"{paths['markdown'].read_text()}\n"
        f"Raw numbers: [results/{paths['json'].name}](results/{paths['json'].name})\n{README_END}"
    )
    head, rest = text.split(README_BEGIN, 1)
    README.write_text(head + block + rest.split(README_END, 1)[1])


if __name__ == "__main__":
    sys.exit(main())
