"""The trigger benchmark's harness, run small (5 jobs, a few seconds) so that it cannot rot.

A real run: the served backend, a trigger process with our trigger under Airflow's trigger
runner, its Variables through a supervisor process on this session's metadata DB.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_triggers.py"


@pytest.mark.e2e
@pytest.mark.usefixtures("airflow_db")
def test_the_harness_measures_five_triggers(tmp_path: Path) -> None:
    import os

    out = tmp_path / "figures.json"
    command = [
        sys.executable, str(BENCH), "--n", "5", "--runs", "1", "--kinds", "ours",
        "--interval", "1", "--window", "3", "--airflow-home", os.environ["AIRFLOW_HOME"],
        "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (measured,) = json.loads(out.read_text())["ours 5"]
    assert measured["missing_events"] == 0, measured  # every trigger fired once its job ended
    assert measured["log_problems"]["count"] >= 0  # the trigger runner's log was read
    # Calls counted at the backend: each job read at least once per interval, at most a few calls.
    assert 0 < measured["calls_per_cycle"] <= 5 * 5, measured
    assert measured["interval_s"] <= 1.5, measured
    assert measured["comms_requests"].get("GetVariable", 0) >= 5  # each loads its position
    assert measured["peak_rss_mb"] > 50 and measured["startup_s"] < 60, measured
    assert 0 <= measured["latency_median_s"] <= measured["latency_max_s"] < 30, measured
    assert measured["lag_control_ms"] >= 0, measured
    assert "| API calls per poll cycle |" in done.stdout, done.stdout
