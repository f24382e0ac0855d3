"""``make demo``: ``example_retry_on_stopped`` end to end on the embedded backend.

The demo starts the embedded SageMaker spot backend, then runs the example DAG with
``airflow dags test`` while :class:`~airflow_spot_provider.emulator.chaos.CapacityGap` plays the
spot market through the backend's admin API: the first attempt is interrupted after two seconds
of training and spot capacity then stays away until SageMaker stops the job with
``MaxWaitTimeExceeded``. The DAG's
sensor resubmits the job; the second attempt restores the checkpoint from S3 and completes. The
demo prints each attempt's lifecycle and the savings, then stops the backend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from airflow_spot_provider.lifecycle import SpotJobReport
from airflow_spot_provider.summary import format_summary_table, summarize_attempts

DAG_ID = "example_retry_on_stopped"
JOB_BASE = "retry-on-stopped"
INSTANCE_TYPE = "ml.m5.xlarge"
# Short stopping conditions so that MaxWait passes within seconds (AWS would use hours).
RUN_CONF = {"steps": 80, "step_sleep": 0.1, "max_run_seconds": 15, "max_wait_seconds": 15}
SCENARIO = {"events": [{"interrupt": {"job": f"{JOB_BASE}-*-a1", "at_training_second": 2.0}}]}


def _jobs(sm: Any) -> list[dict[str, Any]]:
    summaries = sm.list_training_jobs(NameContains=JOB_BASE, MaxResults=100)
    names = [s["TrainingJobName"] for s in summaries["TrainingJobSummaries"]]
    described = [sm.describe_training_job(TrainingJobName=n) for n in names]
    return sorted(described, key=lambda d: d["CreationTime"])


def _say(line: str) -> None:
    print(line, flush=True)


def _airflow(env: dict[str, str], *args: str, log: Path) -> int:
    with log.open("a") as out:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=env, stdout=out, stderr=out, check=False
        ).returncode


def _print_report(sm: Any) -> None:
    reports = [SpotJobReport.from_describe(d) for d in _jobs(sm)]
    print("\nEach attempt's lifecycle (DescribeTrainingJob):")
    for number, report in enumerate(reports, start=1):
        sequence = " -> ".join(t.status.value for t in report.transitions)
        print(f"  attempt {number} {report.job_name}\n    {sequence}")
    print("\n" + format_summary_table(summarize_attempts(reports)))


def main() -> int:
    """Run the demo; the exit code is the DAG run's (0 on success)."""
    from airflow_spot_provider.emulator import SpotEmulator
    from airflow_spot_provider.emulator.chaos import CapacityGap

    repo = Path.cwd()
    root = repo / ".demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    log = root / "airflow.log"
    started = time.monotonic()
    with SpotEmulator(data_dir=root / "emulator", scenario=SCENARIO) as emulator:
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
            "AIRFLOW_CONN_AWS_DEFAULT": emulator.airflow_connection(),
            "SPOT_EXAMPLES_POLL_INTERVAL": "1",
        }
        print("Preparing the Airflow database...", flush=True)
        if _airflow(env, "db", "migrate", log=log) != 0:
            print(f"airflow db migrate failed: see {log}")
            return 1
        print(f"Running {DAG_ID} with airflow dags test (full log: {log})...", flush=True)
        # The first attempt's interruption is scripted (SCENARIO); the gap in capacity that
        # follows it lasts until SageMaker stops that attempt with MaxWaitTimeExceeded.
        with CapacityGap(emulator, INSTANCE_TYPE, JOB_BASE, say=_say):
            code = _airflow(env, "dags", "test", DAG_ID, "-c", json.dumps(RUN_CONF), log=log)
        _print_report(emulator.boto3_client("sagemaker"))
    for line in log.read_text().splitlines():
        if "resumed from checkpoint" in line:  # the trainer's own words, from CloudWatch Logs
            print("\nThe second attempt's log:", line.split("] ", 1)[-1].split(" [")[0])
    verdict = "succeeded" if code == 0 else f"failed (exit {code}, see {log})"
    print(f"\nThe DAG run {verdict} in {time.monotonic() - started:.0f} s.")
    port = os.environ.get("SPOT_UI_PORT", "8080")
    print(
        "\nSee this run in the Airflow UI (Spot training view): run\n    make ui\n"
        f"then open http://127.0.0.1:{port}/spot-training/?dag_id={DAG_ID}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
