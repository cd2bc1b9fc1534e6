"""`python -m bench.run --quick`: the benchmark still runs end to end and writes sane results.

No timing is asserted (issue 8: targets belong to the benchmark, never to tests); the test
checks that every system answered, the files exist, the numbers are consistent, the four
systems predicted the same, and no process was left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from stack.services import ROOT

SYSTEMS = {"a", "b", "c", "d"}


def _cmdlines_containing(text: str) -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(cmdline)
    return found


def _run_quick(module: str, out: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    """Run `python -m module --quick`, check it succeeded and left no process behind."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--out", str(out), "--keep-workdir", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    kept = next(
        line.split(" kept in ")[1].strip()
        for line in result.stdout.splitlines()
        if " kept in " in line
    )
    try:
        assert _cmdlines_containing(kept) == [], "a benchmark process outlived the run"
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    return result


def test_quick_benchmark_writes_sane_results(tmp_path):
    out = tmp_path / "results"
    result = _run_quick("bench.run", out, timeout=400)

    (record_path,) = out.glob("*-quick.json")
    record = json.loads(record_path.read_text())
    assert record_path.with_suffix(".md").read_text().startswith("Run ")
    assert record_path.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    cells = record["cells"]
    assert {cell["system"] for cell in cells} == SYSTEMS
    assert {(cell["rows"], cell["concurrency"]) for cell in cells} == {(1, 1), (1, 8)}
    for cell in cells:
        assert cell["errors"] == 0, cell
        assert cell["ok"] == cell["requests"] > 0, cell
        assert cell["req_per_s"] > 0 and cell["rows_per_s"] == cell["req_per_s"], cell
        assert 0 < cell["p50_ms"] <= cell["p90_ms"] <= cell["p99_ms"] <= cell["max_ms"], cell
        assert cell["cpu_s_per_1000_req"] is not None and cell["cpu_s_per_1000_req"] > 0, cell
    assert record["checks"]["same_predictions"], record["checks"]
    assert {r["ratio"] for r in record["ratios"]} == {"c/b", "d/b", "d/c", "d/a", "d/GET"}
    assert all(r["value"] > 0 for r in record["ratios"])
    # GET /model through the same gateway at each concurrency, with no error
    routes = record["checks"]["model_route"]
    assert [r["concurrency"] for r in routes] == [1, 8] and all(r["errors"] == 0 for r in routes)
    assert all(r["ok"] == r["requests"] > 0 for r in routes)
    # the correctness pass: every distinct row answered with its own unbatched prediction
    correct = record["checks"]["correctness"]
    assert correct["errors"] == 0 and correct["equal"] == correct["requests"] > 0, correct
    # the model server's /metrics per cell: requests per worker add up to the cell's requests
    for cell in cells:
        if cell["system"] in ("c", "d"):
            served = sum(cell["server"]["requests_per_worker"].values())
            assert served >= cell["requests"], cell
            assert cell["server"]["model_calls"] > 0, cell
    assert record["machine"]["cores"] >= 1 and record["versions"]["wrk"].startswith("wrk")
    assert "ratios (rows/s):" in result.stdout and "d/b:" in result.stdout


def test_quick_paired_run_alternates_and_sees_the_background_work(tmp_path):
    out = tmp_path / "paired"
    _run_quick("bench.paired", out, "--compare", "balance,shadow", "--rounds", "2", timeout=600)
    (record_path,) = out.glob("*-paired-quick.json")
    record = json.loads(record_path.read_text())
    assert record_path.with_suffix(".md").read_text().startswith("Paired run ")
    by_name = {comparison["name"]: comparison for comparison in record["comparisons"]}
    assert list(by_name) == ["balance", "shadow"]
    for comparison in by_name.values():
        for cell in comparison["cells"]:
            assert cell["errors"] == 0, cell
            assert len(cell["rounds"]) == 2 and cell["ratio_median"] > 0, cell
            for measured in cell["rounds"]:
                for side in ("base", "variant"):
                    served = sum(measured[side]["server"]["requests_per_worker"].values())
                    assert served >= measured[side]["requests"] > 0, measured[side]
    # balance: the base really ran uvicorn's own accept, the variant the default
    assert by_name["balance"]["base_env"] == {"SERVING_BALANCED_ACCEPT": "false"}
    assert by_name["balance"]["variant_env"] == {}
    # shadow: only the variant scored with @challenger; both logged their decisions
    for cell in by_name["shadow"]["cells"]:
        assert cell["variant"]["background"]["shadow_scored"] > 0, cell
        assert cell["base"]["background"]["shadow_scored"] == 0, cell
        assert cell["base"]["background"]["decisions_logged"] > 0, cell
    assert "target" in record_path.with_suffix(".md").read_text()


def test_the_step_profile_times_every_step_of_a_request():
    """`python -m bench.steps`: a real mlflow server, a trained model, every step timed."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.steps", "--rows", "20", "--repeat", "2",
         "--train-rows", "2000"],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")][1:]
    steps = {line.split(" | ")[0][2:]: float(line.split(" | ")[1].rstrip(" |")) for line in table}
    assert len(steps) == 8 and all(ms > 0 for ms in steps.values()), steps
    assert _cmdlines_containing("bench.steps-") == [], "a process outlived the run"
