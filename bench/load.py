"""One benchmark cell: wrk against a URL, with the server side's CPU time from /proc."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

LUA = Path(__file__).with_name("post.lua")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# wrk's default is 2 s; a 1,000-row request queued behind 31 others on one worker can take
# longer, and that is slowness, not an error.
WRK_TIMEOUT = "10s"


@dataclass
class Cell:
    system: str
    rows: int
    concurrency: int
    duration_s: float
    requests: int
    ok: int
    errors: int
    error_detail: dict
    req_per_s: float
    rows_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_s: float
    cpu_s_per_1000_req: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def session_cpu_seconds(sessions: list[int]) -> float:
    """User + system CPU of every live process in these sessions, and of their reaped children.

    Each server runs in its own session (started with start_new_session), so the session id
    finds the whole tree: supervisor, gunicorn master and workers; nginx master and workers.
    """
    wanted, ticks = set(sessions), 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # the process ended between listing and reading
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        # After "pid (comm) ": state ppid pgrp session ... utime(11) stime cutime cstime
        if int(fields[3]) in wanted:
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


def run_wrk(
    url: str, payload: Path | None, concurrency: int, duration: int, api_key: str = ""
) -> dict:
    """Run wrk with post.lua and return its BENCH_JSON summary (payload None: a GET)."""
    command = [
        "wrk",
        f"-t{min(concurrency, 2)}",
        f"-c{concurrency}",
        f"-d{duration}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
        "-s",
        str(LUA),
        url,
    ]
    env = {**os.environ, "API_KEY": api_key}
    env.update({"PAYLOAD": str(payload)} if payload else {"METHOD": "GET"})
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=duration + 60, check=False
    )
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line.removeprefix("BENCH_JSON "))
    raise RuntimeError(
        f"wrk gave no summary (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    )


def measure(
    system_key: str,
    url: str,
    sessions: list[int],
    payload: Path | None,
    rows: int,
    concurrency: int,
    duration: int,
    warmup: int,
    api_key: str = "",
) -> Cell:
    """Warm up (discarded), then one measured wrk run with the servers' CPU before and after."""
    if warmup > 0:
        run_wrk(url, payload, concurrency, warmup, api_key)
    cpu_before = session_cpu_seconds(sessions)
    summary = run_wrk(url, payload, concurrency, duration, api_key)
    cpu = session_cpu_seconds(sessions) - cpu_before
    seconds = summary["duration_us"] / 1e6
    errors = summary["errors"]
    socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    ok = max(summary["requests"] - errors["status"], 0)
    latency = summary["latency_us"]
    return Cell(
        system=system_key,
        rows=rows,
        concurrency=concurrency,
        duration_s=round(seconds, 3),
        requests=summary["requests"],
        ok=ok,
        errors=errors["status"] + socket_errors,
        error_detail=errors,
        req_per_s=round(ok / seconds, 1),
        rows_per_s=round(ok * rows / seconds, 1),
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        cpu_s=round(cpu, 2),
        cpu_s_per_1000_req=round(cpu / ok * 1000, 3) if ok else None,
    )
