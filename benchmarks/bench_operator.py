"""Benchmark of the operator (issue 4's measured targets), side by side in one run.

1. Worker slot time per attempt, deferred vs worker mode: how long the task runs in a worker
   (``execute`` + ``execute_complete``) for a two-attempt chain (interruption, MaxWait, resubmit)
   whose jobs last tens of seconds. Target: deferred < 5 s per attempt, whatever the job length.
2. DescribeTrainingJob calls per job per poll interval (from the backend's call counts and the
   jobs' lifetimes). Target: at most 1.
3. Import cost of the operator module beyond Airflow and the Amazon provider (``-X importtime``
   and wall time of a fresh interpreter). Target: < 100 ms.

Run: ``.venv/bin/python benchmarks/bench_operator.py [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

POLL = 1.0
DAG_ID = "bench_spot"
DAG_FILE = textwrap.dedent(
    f'''
    """Benchmark DAG: one spot training task, deferred or in the worker (from the run conf)."""
    from datetime import datetime

    from airflow.sdk import DAG

    from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
    from airflow_spot_provider.retry import SpotRetryPolicy

    for mode, deferrable in (("deferred", True), ("worker", False)):
        with DAG(dag_id=f"{DAG_ID}_{{mode}}", schedule=None, start_date=datetime(2026, 1, 1),
                 render_template_as_native_obj=True) as dag:
            SageMakerSpotTrainingOperator(
                task_id="train",
                config="{{{{ dag_run.conf['config'] }}}}",
                checkpoint_s3_uri="{{{{ dag_run.conf['checkpoint'] }}}}",
                max_run=12, max_wait=15,
                job_name="{{{{ dag_run.conf['name'] }}}}",
                spot_retry_policy=SpotRetryPolicy(max_attempts=2, backoff_initial_seconds=1),
                deferrable=deferrable, poll_interval={POLL}, print_log=False,
            )
        globals()[dag.dag_id] = dag
    '''
)


def _setup_airflow(home: Path) -> Path:
    dags = home / "dags"
    dags.mkdir(parents=True)
    (dags / "bench_spot.py").write_text(DAG_FILE)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        }
    )
    from airflow.utils import db

    db.resetdb()
    return dags


def _instrument() -> list[float]:
    """Wrap the operator's worker-side entry points with a timer (benchmark only)."""
    from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator

    spent: list[float] = []
    for method in ("execute", "execute_complete"):
        original = getattr(SageMakerSpotTrainingOperator, method)

        def timed(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _original(self, *args, **kwargs)
            finally:
                spent.append(time.perf_counter() - start)

        setattr(SageMakerSpotTrainingOperator, method, timed)
    return spent


def _config(bucket: str) -> dict[str, Any]:
    return {
        "AlgorithmSpecification": {
            "TrainingImage": "spot-emulator/synthetic:latest",
            "TrainingInputMode": "File",
        },
        "RoleArn": "arn:aws:iam::123456789012:role/bench",
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/models/"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "HyperParameters": {"train_seconds": "10", "step_seconds": "1"},
    }


def _one_run(
    emulator: Any, dags: Path, mode: str, index: int, spent: list[float]
) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    name = f"bench-{mode}-{index}-{int(time.time())}"
    emulator.admin.load_scenario(
        [{"interrupt": {"job": f"{name}*-a1", "at_training_second": 3.0}}], replace=True
    )
    emulator.admin.set_capacity("ml.m5.xlarge", None)
    sm = emulator.boto3_client("sagemaker")
    describes_before = emulator.admin.stats()["api_calls"].get("SageMaker.DescribeTrainingJob", 0)
    dag = DagBag(dag_folder=str(dags)).get_dag(f"{DAG_ID}_{mode}")
    spent.clear()
    conf = {"config": _config("bench"), "checkpoint": f"s3://bench/ckpt/{name}/", "name": name}
    # Capacity goes away after the interruption so that attempt 1 ends with MaxWaitTimeExceeded.
    started = time.monotonic()
    dag_run = _run_with_capacity_gap(emulator, dag, conf, name)
    wall = time.monotonic() - started
    describes = (
        emulator.admin.stats()["api_calls"].get("SageMaker.DescribeTrainingJob", 0)
        - describes_before
    )
    names = [
        s["TrainingJobName"]
        for s in sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"]
    ]
    lifetimes = []
    for job in names:
        d = sm.describe_training_job(TrainingJobName=job)
        # From creation to the terminal transition: the time during which it was followed.
        ended = d["SecondaryStatusTransitions"][-1]["StartTime"]
        lifetimes.append((ended - d["CreationTime"]).total_seconds())
    return {
        "mode": mode,
        "state": str(dag_run.state),
        "attempts": len(names),
        "wall_seconds": wall,
        "worker_seconds_per_attempt": sum(spent) / max(1, len(names)),
        "describes_per_job_per_poll": describes / sum(t / POLL for t in lifetimes),
    }


def _run_with_capacity_gap(emulator: Any, dag: Any, conf: dict[str, Any], name: str) -> Any:
    from airflow_spot_provider.emulator.chaos import CapacityGap

    with CapacityGap(emulator, "ml.m5.xlarge", name):
        return dag.test(run_conf=conf)


def _import_cost(runs: int) -> dict[str, float]:
    base = (
        "import airflow.providers.amazon.aws.operators.base_aws,"
        " airflow.providers.amazon.aws.hooks.base_aws,"
        " airflow.providers.amazon.aws.sensors.base_aws,"
        " airflow.providers.amazon.aws.links.base_aws,"
        " airflow.providers.amazon.aws.hooks.logs"
    )
    ours = base + "; import airflow_spot_provider.operators.spot_training"
    walls: dict[str, list[float]] = {"base": [], "ours": []}
    cumulative: list[float] = []
    for _ in range(runs):
        for key, code in (("base", base), ("ours", ours)):
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", code],
                capture_output=True,
                text=True,
                check=True,
            ).stderr
            walls[key].append(time.perf_counter() - start)
            if key == "ours":
                line = next(
                    x
                    for x in out.splitlines()
                    if x.endswith(" airflow_spot_provider.operators.spot_training")
                )
                cumulative.append(int(line.split("|")[1]) / 1000)
    return {
        "importtime_cumulative_ms": statistics.median(cumulative),
        "wall_delta_ms": (statistics.median(walls["ours"]) - statistics.median(walls["base"]))
        * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        dags = _setup_airflow(Path(tmp) / "airflow")
        from airflow_spot_provider.emulator import SpotEmulator

        with SpotEmulator(data_dir=Path(tmp) / "emulator") as emulator:
            os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = emulator.airflow_connection()
            emulator.boto3_client("s3").create_bucket(Bucket="bench")
            spent = _instrument()
            results = [
                _one_run(emulator, dags, mode, i, spent)
                for i in range(args.runs)
                for mode in ("deferred", "worker")
            ]
    for row in results:
        print(json.dumps(row))
    print(f"\nmedians over {args.runs} run(s) per mode (poll interval {POLL:.0f} s):")
    head = ("mode", "attempts", "wall s", "worker s/attempt", "describes/job/poll")
    print(f"{head[0]:<9} {head[1]:>8} {head[2]:>7} {head[3]:>17} {head[4]:>19}")
    for mode in ("deferred", "worker"):
        rows = [r for r in results if r["mode"] == mode]
        print(
            f"{mode:<9} {statistics.median(r['attempts'] for r in rows):>8.0f}"
            f" {statistics.median(r['wall_seconds'] for r in rows):>7.1f}"
            f" {statistics.median(r['worker_seconds_per_attempt'] for r in rows):>17.2f}"
            f" {statistics.median(r['describes_per_job_per_poll'] for r in rows):>19.2f}"
        )
    cost = _import_cost(max(5, args.runs))
    print(
        f"\nimport of the operator module beyond Airflow + Amazon provider base modules: "
        f"{cost['importtime_cumulative_ms']:.1f} ms (-X importtime, cumulative), "
        f"{cost['wall_delta_ms']:.0f} ms (wall, median of fresh interpreters)"
    )


if __name__ == "__main__":
    main()
