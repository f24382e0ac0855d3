"""Benchmark of the spot emulator with thousands of live jobs (not a timed test).

Runs ``spot-emulator serve`` as a subprocess (so that its RSS and CPU are its own), creates N
synthetic spot jobs that stay in Training, then measures from a boto3 client:

- creation throughput (jobs/s; ``--threads`` clients in parallel);
- idle CPU of the emulator over a window (``--idle-seconds``) with every job live, no calls;
- DescribeTrainingJob latency, p50 and p99, with all jobs live;
- ListTrainingJobs page latency (median): the first page of 100, a page from the middle (its
  NextToken), and the jobs changed in the last second (``LastModifiedTimeAfter``);
- DescribeLogStreams (``orderBy=LastEventTime``, descending, 50) and FilterLogEvents (100 named
  streams, the last minute) latency, median;
- peak RSS of the emulator process (sampled every 50 ms by psutil).

Targets (2 cores): at 5,000 live jobs idle CPU < 5% of a core, Describe p99 < 10 ms, a List page
as fast at 5,000 jobs as at 1,000; peak RSS < 300 MB.

    python benchmarks/bench_emulator.py [--jobs 1000 5000] [--describes 2000] [--checkpoints]
        [--before DIR]

``--before DIR`` runs the same measures against another source tree of the provider first (e.g.
``git archive main | tar -x -C DIR``) and prints both side by side.

The jobs have no ``CheckpointConfig`` unless ``--checkpoints``: with one, each live job scans its
checkpoint dir every 0.5 s (in worker threads), which is what would dominate at this scale.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import psutil  # type: ignore[import-untyped]
from botocore.config import Config

from airflow_spot_provider.emulator.testing import synthetic_request

TARGETS = {"p50_ms": 5.0, "p99_ms": 10.0, "idle_cpu_pct": 5.0, "peak_rss_mb": 300.0}


class RssSampler(threading.Thread):
    """Sample a process's RSS until stopped; keep the peak."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(self.every)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def start_emulator(
    data_dir: Path, source: Path | None = None
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Serve the emulator (of ``source``, a source tree, when given); its connection."""
    command = [
        sys.executable,
        "-m",
        "airflow_spot_provider.emulator",
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
    ]
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=source,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("export AIRFLOW_CONN_AWS_DEFAULT="):
            (assignment,) = shlex.split(line.removeprefix("export "))
            return process, json.loads(assignment.split("=", 1)[1])
    raise SystemExit(f"the emulator did not start (exit code {process.wait()})")


def client(connection: dict[str, Any], service: str) -> Any:
    extra = connection["extra"]
    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        endpoint_url=extra["service_config"][service]["endpoint_url"],
        region_name=extra["region_name"],
        aws_access_key_id=connection["login"],
        aws_secret_access_key=connection["password"],
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=4),
    )


def health(connection: dict[str, Any]) -> dict[str, Any]:
    import urllib.request

    url = connection["extra"]["service_config"]["sagemaker"]["endpoint_url"] + "/_emulator/health"
    with urllib.request.urlopen(url, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def create_jobs(
    connection: dict[str, Any], names: list[str], bucket: str, threads: int, checkpoints: bool
) -> float:
    """Create the jobs from ``threads`` clients; the elapsed seconds."""
    clients = [client(connection, "sagemaker") for _ in range(threads)]

    def create(index: int) -> None:
        request = synthetic_request(
            names[index],
            bucket,
            train_seconds=3600,
            step_seconds=60,
            checkpoint=checkpoints,
            max_runtime=7200,
            max_wait=7200,
        )
        clients[index % threads].create_training_job(**request)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, range(len(names))))
    return time.perf_counter() - started


def wait_all_training(connection: dict[str, Any], count: int, timeout: float = 300) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if health(connection)["training_jobs"] >= count:
            return time.perf_counter() - started
        time.sleep(0.5)
    raise SystemExit(f"not all {count} jobs reached Training in {timeout} s: {health(connection)}")


def describe_latencies(sm: Any, names: list[str], calls: int) -> list[float]:
    rng = random.Random(0)
    for name in names[:20]:  # warm the connection pool
        sm.describe_training_job(TrainingJobName=name)
    latencies = []
    for _ in range(calls):
        name = rng.choice(names)
        started = time.perf_counter()
        sm.describe_training_job(TrainingJobName=name)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def idle_cpu(pid: int, seconds: float) -> float:
    """The emulator's CPU over a window without calls, in % of one core."""
    process = psutil.Process(pid)
    before = process.cpu_times()
    time.sleep(seconds)
    after = process.cpu_times()
    used = float((after.user - before.user) + (after.system - before.system))
    return 100 * used / seconds


def median_ms(call: Any, times: int) -> float:
    """Median latency of ``call()`` over ``times`` calls, ms."""
    call()
    latencies: list[float] = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - started) * 1000)
    return statistics.median(latencies)


def list_latencies(sm: Any, jobs: int, times: int) -> dict[str, float]:
    """ListTrainingJobs pages: first, middle (by NextToken), changed in the last second."""
    token = None
    for _ in range(jobs // 200):  # half way through
        page = sm.list_training_jobs(MaxResults=100, **({"NextToken": token} if token else {}))
        token = page.get("NextToken")
    middle = {"NextToken": token} if token else {}
    return {
        "list_first_page_ms": median_ms(lambda: sm.list_training_jobs(MaxResults=100), times),
        "list_middle_page_ms": median_ms(
            lambda: sm.list_training_jobs(MaxResults=100, **middle), times
        ),
        "list_changed_1s_ms": median_ms(
            lambda: sm.list_training_jobs(MaxResults=100, LastModifiedTimeAfter=time.time() - 1),
            times,
        ),
    }


def logs_latencies(logs: Any, times: int) -> dict[str, float]:
    """DescribeLogStreams by last event time; FilterLogEvents over 100 streams (None: absent)."""
    group = "/aws/sagemaker/TrainingJobs"
    newest: dict[str, Any] = {
        "logGroupName": group,
        "orderBy": "LastEventTime",
        "descending": True,
        "limit": 50,
    }
    names: list[str] = []
    while len(names) < 100:  # the 100 streams that moved last
        page = logs.describe_log_streams(**newest)
        names += [s["logStreamName"] for s in page["logStreams"]]
        if "nextToken" not in page:
            break
        newest["nextToken"] = page["nextToken"]
    result = {
        "describe_log_streams_ms": median_ms(
            lambda: logs.describe_log_streams(
                logGroupName=group, orderBy="LastEventTime", descending=True, limit=50
            ),
            times,
        )
    }
    since = int((time.time() - 60) * 1000)
    try:
        result["filter_log_events_ms"] = median_ms(
            lambda: logs.filter_log_events(
                logGroupName=group, logStreamNames=names[:100], startTime=since, limit=1000
            ),
            times,
        )
    except Exception:  # the "before" tree has no FilterLogEvents
        result["filter_log_events_ms"] = float("nan")
    return result


def measure(args: argparse.Namespace, jobs: int, source: Path | None) -> dict[str, float]:
    """Every figure at ``jobs`` live jobs, for the emulator of ``source`` (None: this tree)."""
    with tempfile.TemporaryDirectory(prefix="spot-bench-") as tmp:
        process, connection = start_emulator(Path(tmp), source)
        sampler = RssSampler(process.pid)
        sampler.start()
        try:
            idle_rss = psutil.Process(process.pid).memory_info().rss
            bucket = "bench-bucket"
            client(connection, "s3").create_bucket(Bucket=bucket)
            names = [f"bench-{i:05d}" for i in range(jobs)]
            created = create_jobs(connection, names, bucket, args.threads, args.checkpoints)
            to_training = wait_all_training(connection, jobs)
            time.sleep(2)  # let the last moves settle
            cpu = idle_cpu(process.pid, args.idle_seconds)
            sm = client(connection, "sagemaker")
            latencies = describe_latencies(sm, names, args.describes)
            listing = list_latencies(sm, jobs, args.calls)
            logging = logs_latencies(client(connection, "logs"), args.calls)
            live = health(connection)
            peak = sampler.stop()
        finally:
            if sampler.is_alive():
                sampler.stop()
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=300)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "jobs": jobs,
        "live_jobs": live["live_jobs"],
        "creation_jobs_per_s": jobs / created,
        "all_training_after_s": to_training,
        "idle_cpu_pct": cpu,
        "p50_ms": quantiles[49],
        "p99_ms": quantiles[98],
        **listing,
        **logging,
        "idle_rss_mb": idle_rss / 2**20,
        "peak_rss_mb": peak / 2**20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--describes", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=50, help="calls per List/Logs figure")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=4, help="parallel creating clients")
    parser.add_argument("--checkpoints", action="store_true", help="give jobs a CheckpointConfig")
    parser.add_argument("--before", type=Path, help="a source tree to measure first, as before")
    args = parser.parse_args()

    variants: list[tuple[str, Path | None]] = [("after", None)]
    if args.before is not None:
        variants.insert(0, ("before", args.before.resolve()))
    columns: dict[str, dict[str, float]] = {}
    for jobs in args.jobs:
        for label, source in variants:
            print(f"measuring {label} at {jobs} jobs...", file=sys.stderr, flush=True)
            columns[f"{label} {jobs}"] = measure(args, jobs, source)

    print(
        f"\nspot emulator benchmark: {args.describes} DescribeTrainingJob calls, {args.calls} "
        f"calls per List/Logs figure, idle window {args.idle_seconds:g} s, "
        f"checkpoints={'on' if args.checkpoints else 'off'}, {psutil.cpu_count()} CPUs\n"
    )
    print(f"{'figure':<26}" + "".join(f"{name:>14}" for name in columns) + "  target")
    failed = False
    for key in next(iter(columns.values())):
        row = [column[key] for column in columns.values()]
        shown = "".join(
            f"{value:>14.2f}" if isinstance(value, float) else f"{value:>14}" for value in row
        )
        target = TARGETS.get(key)
        mark = ""
        if target is not None:
            last = columns[f"after {args.jobs[-1]}"][key]
            ok = last < target
            failed |= not ok
            mark = f"  < {target:g} {'ok' if ok else 'MISSED'}"
        print(f"{key:<26}{shown}{mark}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
