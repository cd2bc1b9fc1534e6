"""Results: the JSON record, the Markdown table, the PNG chart and the ratios."""

from __future__ import annotations

import json
from pathlib import Path

SYSTEMS = {
    "a": "(a) Flask app",
    "b": "(b) mlflow models serve",
    "c": "(c) model server",
    "d": "(d) gateway TLS -> (c)",
}
RATIOS = [("c", "b"), ("d", "b"), ("d", "c"), ("d", "a")]


def cell(cells: list[dict], system: str, rows: int, concurrency: int) -> dict | None:
    for item in cells:
        if (item["system"], item["rows"], item["concurrency"]) == (system, rows, concurrency):
            return item
    return None


def ratios(cells: list[dict], model_route: list[dict] = ()) -> list[dict]:
    """Every ratio pair for every (rows, concurrency) both systems ran, on rows per second;
    and "d/GET": (d)'s one-row POST /invocations over GET /model through the same gateway."""
    out = []
    for route in model_route:
        post = cell(cells, "d", 1, route["concurrency"])
        if post and route["req_per_s"]:
            out.append(
                {
                    "ratio": "d/GET",
                    "rows": 1,
                    "concurrency": route["concurrency"],
                    "value": round(post["req_per_s"] / route["req_per_s"], 3),
                }
            )
    keys = sorted({(item["rows"], item["concurrency"]) for item in cells})
    for top, bottom in RATIOS:
        for rows, concurrency in keys:
            upper, lower = (
                cell(cells, top, rows, concurrency),
                cell(cells, bottom, rows, concurrency),
            )
            if upper and lower and lower["rows_per_s"]:
                out.append(
                    {
                        "ratio": f"{top}/{bottom}",
                        "rows": rows,
                        "concurrency": concurrency,
                        "value": round(upper["rows_per_s"] / lower["rows_per_s"], 2),
                    }
                )
    return out


def targets(cells: list[dict], run_checks: dict | None = None) -> list[dict]:
    """Issue 15's and issue 8's targets, each with its value and whether it holds (None: not
    measured). c=1 latency against the unbatched server needs a run with BATCHING=false."""

    def rate(system, rows, concurrency):
        found = cell(cells, system, rows, concurrency)
        return found["rows_per_s"] if found else None

    def ratio(top, bottom):
        return top / bottom if top and bottom else None

    run_checks = run_checks or {}
    route = {item["concurrency"]: item["req_per_s"] for item in run_checks.get("model_route", [])}
    checks = [
        _check("d >= 8 x b, 1 row, c=32", ratio(rate("d", 1, 32), rate("b", 1, 32)), 8),
        _check("d >= 4 x a, 1 row, c=32", ratio(rate("d", 1, 32), rate("a", 1, 32)), 4),
        _check("d >= 0.2 x GET /model, c=32", ratio(rate("d", 1, 32), route.get(32)), 0.2),
        _check("d >= 3 x b rows/s, 1000 rows, c=8",
               ratio(rate("d", 1000, 8), rate("b", 1000, 8)), 3),
    ]  # fmt: skip
    correct = run_checks.get("correctness")
    if correct:
        checks.append(
            {
                "target": f"correctness pass c={correct['concurrency']}: every answer equals "
                "its row's unbatched prediction",
                "value": f"{correct['equal']}/{correct['requests']}",
                "met": correct["equal"] == correct["requests"],
            }
        )
    d8, b8 = rate("d", 1, 8), rate("b", 1, 8)
    checks.append(_check("d >= 1.5 x b, 1 row, c=8", d8 / b8 if d8 and b8 else None, 1.5))
    for rows in sorted({item["rows"] for item in cells}):
        for concurrency in sorted({item["concurrency"] for item in cells}):
            d, c = rate("d", rows, concurrency), rate("c", rows, concurrency)
            checks.append(
                _check(f"d/c >= 0.9, {rows} rows, c={concurrency}", d / c if d and c else None, 0.9)
            )
    for concurrency in sorted({item["concurrency"] for item in cells}):
        d, b = rate("d", 1000, concurrency), rate("b", 1000, concurrency)
        checks.append(
            _check(f"d >= b rows/s, 1000 rows, c={concurrency}", d / b if d and b else None, 1.0)
        )
    errors = sum(item["errors"] for item in cells)
    checks.append({"target": "no errors", "value": errors, "met": errors == 0})
    return checks


def _check(name: str, value: float | None, minimum: float) -> dict:
    return {
        "target": name,
        "value": None if value is None else round(value, 2),
        "met": None if value is None else value >= minimum,
    }


def markdown(record: dict) -> str:
    machine = record["machine"]
    settings = record["settings"]
    lines = [
        f"Run {record['started']} on `{machine['host']}`: {machine['cpu']}, {machine['cores']} "
        f"cores, {machine['memory_gb']} GB; load average before/after "
        f"{machine['loadavg_before']} / {machine['loadavg_after']}. "
        f"{settings['duration_s']:g} s per cell after {settings['warmup_s']:g} s of warm-up; "
        "wrk -t min(c,2) -c c, closed loop.",
        "",
        "| system | rows | c | req/s | rows/s | p50 ms | p90 ms | p99 ms | errors "
        "| CPU s / 1k req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for item in record["cells"]:
        cpu = item["cpu_s_per_1000_req"]
        lines.append(
            f"| {SYSTEMS[item['system']]} | {item['rows']} | {item['concurrency']} | "
            f"{item['req_per_s']:,.0f} | {item['rows_per_s']:,.0f} | {item['p50_ms']:.1f} | "
            f"{item['p90_ms']:.1f} | {item['p99_ms']:.1f} | {item['errors']} | "
            f"{'-' if cpu is None else f'{cpu:.2f}'} |"
        )
    lines += ["", "Ratios (rows/s; the same as req/s for one size):", ""]
    lines += ["| ratio | " + " | ".join(_ratio_columns(record)) + " |"]
    lines += ["|---|" + "---:|" * len(_ratio_columns(record))]
    for top, bottom in [*RATIOS, ("d", "GET")]:
        name = f"{top}/{bottom}"
        values = {
            f"{r['rows']} rows c={r['concurrency']}": r["value"]
            for r in record["ratios"]
            if r["ratio"] == name
        }
        if values:
            lines.append(
                f"| {name} | "
                + " | ".join(f"{values.get(col, '-')}" for col in _ratio_columns(record))
                + " |"
            )
    served = [item for item in record["cells"] if item.get("server")]
    if served:
        lines += ["", "Model server per cell (/metrics): requests per worker slot, requests and "
                  "rows per model call, queue wait:", "",
                  "| system | rows | c | requests per worker | model calls | requests / call "
                  "| rows / call | mean queue wait ms |",
                  "|---|---:|---:|---|---:|---:|---:|---:|"]  # fmt: skip
        for item in served:
            stats = item["server"]
            workers = " / ".join(f"{n}" for _, n in sorted(stats["requests_per_worker"].items()))
            lines.append(
                f"| {SYSTEMS[item['system']]} | {item['rows']} | {item['concurrency']} | "
                f"{workers or '-'} | {stats['model_calls']} | {stats['mean_batch_requests']} | "
                f"{stats['mean_batch_rows']} | {stats['mean_queue_wait_ms']} |"
            )
    checks = record.get("checks", {})
    if checks.get("model_route"):
        lines += ["", "GET /model through the same gateway (the bare HTTP path), after each "
                  "one-row cell of (d):", ""]  # fmt: skip
        for item in checks["model_route"]:
            lines.append(f"- c={item['concurrency']}: {item['req_per_s']:,.0f} req/s, "
                         f"p50 {item['p50_ms']:.1f} ms, errors {item['errors']}")  # fmt: skip
    lines += ["", "Targets (issues 15 and 8):", ""]
    for check in record["targets"]:
        verdict = {True: "met", False: "**missed**", None: "not measured"}[check["met"]]
        lines.append(f"- {check['target']}: {check['value']} ({verdict})")
    return "\n".join(lines) + "\n"


def _ratio_columns(record: dict) -> list[str]:
    keys = sorted({(r["rows"], r["concurrency"]) for r in record["ratios"]})
    return [f"{rows} rows c={concurrency}" for rows, concurrency in keys]


def chart(record: dict, path: Path) -> None:
    """Three panels: 1-row req/s, 1-row p99, rows/s of the largest body; by concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = record["cells"]
    sizes = sorted({item["rows"] for item in cells})
    levels = sorted({item["concurrency"] for item in cells})
    systems = [key for key in SYSTEMS if any(item["system"] == key for item in cells)]
    panels = [
        ("req_per_s", sizes[0], f"requests/s, {sizes[0]} row(s)"),
        ("p99_ms", sizes[0], f"p99 latency ms, {sizes[0]} row(s)"),
        ("rows_per_s", sizes[-1], f"rows/s, {sizes[-1]} rows per request"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 4.5))
    width = 0.8 / max(len(systems), 1)
    for axis, (metric, rows, title) in zip(axes, panels, strict=True):
        for index, system in enumerate(systems):
            values = [
                (cell(cells, system, rows, level) or {}).get(metric, 0) or 0 for level in levels
            ]
            positions = [i + (index - (len(systems) - 1) / 2) * width for i in range(len(levels))]
            axis.bar(positions, values, width, label=SYSTEMS[system])
        axis.set_xticks(range(len(levels)), [f"c={level}" for level in levels])
        axis.set_title(title)
        if metric == "p99_ms":
            axis.set_yscale("log")
    axes[0].legend(fontsize=8)
    machine = record["machine"]
    figure.suptitle(f"{record['started']} · {machine['cpu']} · {machine['cores']} cores")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(record: dict, out: Path, stem: str) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / f"{stem}.json",
        "markdown": out / f"{stem}.md",
        "chart": out / f"{stem}.png",
    }
    paths["json"].write_text(json.dumps(record, indent=2) + "\n")
    paths["markdown"].write_text(markdown(record))
    chart(record, paths["chart"])
    return paths


def headline(record: dict) -> str:
    """The ratios printed at the end of a run: 1 row and the largest body, at each level."""
    lines = ["ratios (rows/s):"]
    for top, bottom in [*RATIOS, ("d", "GET")]:
        name = f"{top}/{bottom}"
        parts = [
            f"{r['rows']}r c{r['concurrency']}={r['value']}"
            for r in record["ratios"]
            if r["ratio"] == name
        ]
        if parts:
            lines.append(f"  {name}: " + "  ".join(parts))
    lines.append("targets:")
    for check in record["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[check["met"]]
        lines.append(f"  {check['target']}: {check['value']} {verdict}")
    return "\n".join(lines)
