"""What the model server's /metrics says about one cell: requests per worker, batch sizes,
queue wait (serving/metrics.py), as the difference of a scrape before and after the cell."""

from __future__ import annotations

import re

import requests

_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>[0-9.e+-]+)$")
_WORKER = re.compile(r'worker="([^"]+)"')
NAMES = (
    "model_server_worker_requests_total",
    "model_server_batch_requests_sum",
    "model_server_batch_requests_count",
    "model_server_batch_rows_sum",
    "model_server_queue_wait_seconds_sum",
    "model_server_queue_wait_seconds_count",
    # Off the answer's path (issue 17): what the decision log and the shadow did in the cell.
    "model_server_decisions_logged_total",
    "model_server_decisions_dropped_total",
    "model_server_shadow_scored_total",
    "model_server_shadow_dropped_total",
    "model_server_shadow_errors_total",
)
# The keys of cell_stats for those counters.
BACKGROUND = {name: name.removeprefix("model_server_").removesuffix("_total") for name in NAMES[6:]}


def scrape(metrics_url: str) -> dict[tuple[str, str], float]:
    """{(metric, worker slot): value} for the per-worker series; {} if /metrics is unreachable."""
    try:
        text = requests.get(metrics_url, timeout=10).text
    except requests.RequestException:
        return {}
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] in NAMES:
            worker = _WORKER.search(match["labels"] or "")
            key = (match["name"], worker.group(1) if worker else "")
            found[key] = found.get(key, 0.0) + float(match["value"])
    return found


def cell_stats(before: dict, after: dict) -> dict:
    """Requests per worker slot, mean requests and rows per model call, mean queue wait."""

    def delta(name: str, worker: str | None = None) -> float:
        keys = {key for key in after if key[0] == name and worker in (None, key[1])}
        return sum(after[key] - before.get(key, 0.0) for key in keys)

    workers = sorted({key[1] for key in after if key[0] == NAMES[0]})
    per_worker = {w: int(delta(NAMES[0], w)) for w in workers if delta(NAMES[0], w)}
    calls = delta("model_server_batch_requests_count")
    waits = delta("model_server_queue_wait_seconds_count")
    return {
        **{key: int(delta(name)) for name, key in BACKGROUND.items()},
        "requests_per_worker": per_worker,
        "model_calls": int(calls),
        "mean_batch_requests": round(delta("model_server_batch_requests_sum") / calls, 2)
        if calls
        else None,
        "mean_batch_rows": round(delta("model_server_batch_rows_sum") / calls, 1)
        if calls
        else None,
        "mean_queue_wait_ms": round(delta("model_server_queue_wait_seconds_sum") / waits * 1000, 3)
        if waits
        else None,
    }
