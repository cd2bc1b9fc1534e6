"""`python -m bench.paired`: what one setting or one request option costs, measured as pairs.

    python -m bench.paired                           # every comparison, 5 rounds (~12 min)
    python -m bench.paired --compare reasons --rounds 3
    python -m bench.paired --quick --out DIR         # smoke run (tests/integration)

Each comparison has a base and a variant of the model server (c), both started at once on
their own ports from the same registry, so nothing restarts between measurements. Every
round loads each cell on both, in alternating order (base first in even rounds, the variant
first in odd ones), and the report gives medians and the median of the per-round ratios
(variant / base): on a shared 2-core machine a single cell swings by half, the ratio of two
neighbouring cells much less (bench/README.md, "Paired comparisons").

- balance: `SERVING_BALANCED_ACCEPT=false` against the fair accept (default); issue 15,
  are connections spread over the workers?
- reasons: a body without `params` against `"params": {"reasons": 4}`; issue 16, what do
  reason codes cost?
- decisions: `DECISIONS_MODE=off` against `full` (default); issue 17, at most 5 %
- shadow: `SHADOW_SHARE=0` (default) against `1` (every request, @challenger set); issue 17,
  at most 10 %; shadow-tenth: the same with `SHADOW_SHARE=0.1`

Only 127.0.0.1 is loaded, each wrk run is bounded, every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench import processes, server_stats
from bench.load import measure
from bench.payloads import write_payloads
from bench.run import in_workdir, machine_facts, versions
from common.facts import CHALLENGER, MODEL_NAME, REASONS_PARAM

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"


@dataclass(frozen=True)
class Variant:
    """One side of a comparison. A variant that keeps the defaults has no env, so every
    comparison against the defaults shares one server."""

    label: str
    env: tuple[tuple[str, str], ...] = ()  # the model server's settings
    params: tuple[tuple[str, int], ...] = ()  # MLflow `params` in every request body


@dataclass(frozen=True)
class Comparison:
    name: str
    question: str
    base: Variant
    variant: Variant
    cells: tuple[tuple[int, int], ...]  # (rows per request, concurrency)
    max_cost: float | None = None  # the target: variant at least (1 - max_cost) x base
    needs_challenger: bool = False


COMPARISONS = {
    c.name: c
    for c in (
        Comparison(
            "balance",
            "connections spread over the workers (issue 15)",
            Variant("uvicorn's accept", (("SERVING_BALANCED_ACCEPT", "false"),)),
            Variant("fair accept (default)"),
            ((1, 8), (1, 32)),
        ),
        Comparison(
            "reasons",
            "the cost of 4 reason codes per row (issue 16)",
            Variant("no params"),
            Variant("reasons 4", params=((REASONS_PARAM, 4),)),
            ((1, 8), (100, 8)),
        ),
        Comparison(
            "decisions",
            "decision logging on against off (issue 17, target: at most 5 %)",
            Variant("log off", (("DECISIONS_MODE", "off"),)),
            Variant("log full (default)"),
            ((1, 8), (1000, 8)),
            max_cost=0.05,
        ),
        Comparison(
            "shadow",
            "shadow scoring of every request on against off (issue 17, target: at most 10 %)",
            Variant("shadow off (default)"),
            Variant("shadow 100 %", (("SHADOW_SHARE", "1"),)),
            ((1, 8), (1000, 8)),
            max_cost=0.10,
            needs_challenger=True,
        ),
        Comparison(
            "shadow-tenth",
            "shadow scoring of a tenth of the requests (issue 17, target: at most 10 %)",
            Variant("shadow off (default)"),
            Variant("shadow 10 %", (("SHADOW_SHARE", "0.1"),)),
            ((1, 8), (1000, 8)),
            max_cost=0.10,
            needs_challenger=True,
        ),
    )
}


@dataclass
class Server:
    system: processes.System
    metrics_url: str
    logs: list[Path] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.paired", description=__doc__.splitlines()[0])
    parser.add_argument("--compare", default=",".join(COMPARISONS), help="subset, comma-separated")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (5)")
    parser.add_argument("--duration", type=int, default=None, help="seconds per cell (5)")
    parser.add_argument("--warmup", type=int, default=None, help="discarded seconds (1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s cells")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and the registry")
    args = parser.parse_args(argv)
    names = [name for name in args.compare.split(",") if name]
    unknown = sorted(set(names) - set(COMPARISONS))
    if unknown or not names:
        parser.error(f"--compare takes {','.join(COMPARISONS)}; got {args.compare!r}")
    args.comparisons = [COMPARISONS[name] for name in names]
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.duration = args.duration or (1 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("bench.paired: wrk is not installed; `make system-deps` installs it")
    started = datetime.now().astimezone()
    record = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "versions": versions(),
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "quick": args.quick,
        },
    }
    record["comparisons"] = in_workdir("bench.paired", args.keep_workdir, run_all, args)
    record["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    stem = f"{started:%Y-%m-%d-%H%M}-{socket.gethostname()}-paired" + (
        "-quick" if args.quick else ""
    )
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / f"{stem}.json", args.out / f"{stem}.md"
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    md_path.write_text(markdown(record))
    print(markdown(record))
    print(f"bench.paired: wrote {json_path}, {md_path}")
    return 0


def run_all(args: argparse.Namespace, workdir: Path) -> list[dict]:
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    mlflow_server = processes.MlflowServer(workdir / "mlflow")
    servers: dict[tuple, Server] = {}
    try:
        mlflow_server.start()
        version, _ = processes.prepare_registry(
            mlflow_server.uri, 2000 if args.quick else 25_000, workdir
        )
        if any(c.needs_challenger for c in args.comparisons):
            # The champion's own version as @challenger: the shadow then does the champion's
            # work again, which is what shadowing costs, whatever the challenger decides.
            from mlflow import MlflowClient

            MlflowClient(mlflow_server.uri).set_registered_model_alias(
                MODEL_NAME, CHALLENGER, version
            )
        sizes = sorted({rows for c in args.comparisons for rows, _ in c.cells})
        bodies = payloads(workdir / "payloads", args.comparisons, sizes)
        for comparison in args.comparisons:
            for variant in (comparison.base, comparison.variant):
                if variant.env not in servers:
                    servers[variant.env] = start_server(
                        workdir, mlflow_server.uri, variant, servers
                    )
        return [
            run_comparison(args, comparison, servers, bodies) for comparison in args.comparisons
        ]
    except BaseException:
        for server in servers.values():
            for log in server.system.logs:
                print(f"--- {log}\n{processes.tail(log)}", file=sys.stderr)
        raise
    finally:
        for server in servers.values():
            server.system.stop()
        mlflow_server.stop()


def start_server(workdir: Path, tracking_uri: str, variant: Variant, servers: dict) -> Server:
    name = f"server-{len(servers)}"
    system = processes.start_model_server(workdir / name, tracking_uri, dict(variant.env))
    print(f"bench.paired: {name} ({variant.label}, {dict(variant.env) or 'defaults'}) ready",
          flush=True)  # fmt: skip
    return Server(system, system.url.replace("/invocations", "/metrics"))


def payloads(directory: Path, comparisons, sizes: list[int]) -> dict[tuple, Path]:
    """{(rows, params): body path}: the benchmark's bodies, with each variant's params."""
    plain = write_payloads(directory, sizes)
    bodies: dict[tuple, Path] = {(rows, ()): path for rows, path in plain.items()}
    for params in {v.params for c in comparisons for v in (c.base, c.variant)} - {()}:
        for rows, path in plain.items():
            document = json.loads(path.read_text())
            document["params"] = dict(params)
            target = directory / f"rows-{rows}-{'-'.join(f'{k}{v}' for k, v in params)}.json"
            target.write_text(json.dumps(document))
            bodies[(rows, params)] = target
    return bodies


def run_comparison(args, comparison: Comparison, servers: dict, bodies: dict) -> dict:
    print(f"bench.paired: {comparison.name}: {comparison.question}", flush=True)
    cells = []
    for rows, concurrency in comparison.cells:
        rounds = []
        for number in range(args.rounds):
            order = ("base", "variant") if number % 2 == 0 else ("variant", "base")
            measured = {}
            for side in order:
                variant = getattr(comparison, side)
                server = servers[variant.env]
                before = server_stats.scrape(server.metrics_url)
                cell = measure(
                    "c", server.system.url, server.system.sessions, bodies[(rows, variant.params)],
                    rows, concurrency, args.duration, args.warmup,
                ).as_dict()  # fmt: skip
                cell["server"] = server_stats.cell_stats(
                    before, server_stats.scrape(server.metrics_url)
                )
                measured[side] = cell
            rounds.append(measured)
            base, variant = measured["base"], measured["variant"]
            print(f"  rows={rows:<5} c={concurrency:<3} round {number + 1}: "
                  f"{base['rows_per_s']:>9.0f} / {variant['rows_per_s']:>9.0f} rows/s  "
                  f"workers {base['server']['requests_per_worker']} / "
                  f"{variant['server']['requests_per_worker']}  "
                  f"errors {base['errors']} / {variant['errors']}", flush=True)  # fmt: skip
        cells.append(summarise(comparison, rows, concurrency, rounds))
    return {
        "name": comparison.name,
        "question": comparison.question,
        "base": comparison.base.label,
        "variant": comparison.variant.label,
        "base_env": dict(comparison.base.env),
        "variant_env": dict(comparison.variant.env),
        "variant_params": dict(comparison.variant.params),
        "max_cost": comparison.max_cost,
        "cells": cells,
    }


def busiest_share(cell: dict) -> float | None:
    """The busiest worker's share of the cell's requests (0.5 is an even split of two)."""
    counts = list(cell["server"]["requests_per_worker"].values())
    return round(max(counts) / sum(counts), 3) if counts and sum(counts) else None


def summarise(comparison: Comparison, rows: int, concurrency: int, rounds: list[dict]) -> dict:
    def median(side: str, key: str):
        values = [r[side][key] for r in rounds if r[side][key] is not None]
        return round(statistics.median(values), 3) if values else None

    ratios = [
        r["variant"]["rows_per_s"] / r["base"]["rows_per_s"]
        for r in rounds
        if r["base"]["rows_per_s"]
    ]
    ratio = round(statistics.median(ratios), 3) if ratios else None
    summary = {
        "rows": rows,
        "concurrency": concurrency,
        "rounds": rounds,
        "errors": sum(r[side]["errors"] for r in rounds for side in ("base", "variant")),
        "ratio_median": ratio,
        "ratio_min": round(min(ratios), 3) if ratios else None,
        "ratio_max": round(max(ratios), 3) if ratios else None,
    }
    for side in ("base", "variant"):
        summary[side] = {
            "rows_per_s": median(side, "rows_per_s"),
            "req_per_s": median(side, "req_per_s"),
            "p50_ms": median(side, "p50_ms"),
            "p99_ms": median(side, "p99_ms"),
            "cpu_s_per_1000_req": median(side, "cpu_s_per_1000_req"),
            "busiest_worker_share": statistics.median(
                [s for r in rounds if (s := busiest_share(r[side])) is not None] or [0]
            ),
            "background": {
                key: sum(r[side]["server"][key] for r in rounds)
                for key in server_stats.BACKGROUND.values()
            },
        }
    if comparison.max_cost is not None and ratio is not None:
        summary["target_met"] = ratio >= 1 - comparison.max_cost
    return summary


def markdown(record: dict) -> str:
    settings = record["settings"]
    lines = [
        f"Paired run {record['started']} on `{record['machine']['host']}`: "
        f"{record['machine']['cpu']}, {record['machine']['cores']} cores; load average "
        f"before/after {record['machine']['loadavg_before']} / "
        f"{record['machine']['loadavg_after']}. {settings['rounds']} alternating rounds of "
        f"{settings['warmup_s']} s warm-up + {settings['duration_s']} s per side and cell, "
        "the model server (c) direct.",
        "",
        "| comparison | rows | c | base rows/s | variant rows/s | ratio (median, min-max) "
        "| CPU s/1k base / variant | p50 ms base / variant | busiest worker base / variant "
        "| errors | target |",
        "|---|---:|---:|---:|---:|---|---|---|---|---:|---|",
    ]
    for comparison in record["comparisons"]:
        for cell in comparison["cells"]:
            base, variant = cell["base"], cell["variant"]
            target = ""
            if "target_met" in cell:
                limit = f"≥ {1 - comparison['max_cost']:.2f}"
                target = f"{limit}: {'met' if cell['target_met'] else '**missed**'}"
            lines.append(
                f"| {comparison['name']}: {comparison['base']} → {comparison['variant']} "
                f"| {cell['rows']} | {cell['concurrency']} | {base['rows_per_s']:,.0f} "
                f"| {variant['rows_per_s']:,.0f} | {cell['ratio_median']} "
                f"({cell['ratio_min']}-{cell['ratio_max']}) "
                f"| {base['cpu_s_per_1000_req']} / {variant['cpu_s_per_1000_req']} "
                f"| {base['p50_ms']} / {variant['p50_ms']} "
                f"| {base['busiest_worker_share']} / {variant['busiest_worker_share']} "
                f"| {cell['errors']} | {target} |"
            )
    lines += ["", "What ran off the answer's path, summed over the rounds (variant side):", ""]
    for comparison in record["comparisons"]:
        for cell in comparison["cells"]:
            background = {k: v for k, v in cell["variant"]["background"].items() if v}
            lines.append(
                f"- {comparison['name']} rows={cell['rows']} c={cell['concurrency']}: "
                f"{background or 'nothing'}"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
