"""Benchmark of the spot emulator with 1,000 live jobs (not a timed test).

Runs ``spot-emulator serve`` as a subprocess (so that its RSS is its own), creates 1,000 synthetic
spot jobs that stay in Training, then measures from a boto3 client:

- creation throughput (jobs/s; ``--threads`` clients in parallel);
- DescribeTrainingJob latency, p50 and p99, with all jobs live;
- peak RSS of the emulator process (sampled every 50 ms by psutil).

Targets (2 cores): p50 < 5 ms, p99 < 50 ms, RSS < 300 MB.

    python benchmarks/bench_emulator.py [--jobs 1000] [--describes 3000] [--checkpoints]

The jobs have no ``CheckpointConfig`` unless ``--checkpoints``: with one, each live job scans its
checkpoint dir every 0.5 s (in worker threads), which is what would dominate at this scale.
"""

from __future__ import annotations

import argparse
import json
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

TARGETS = {"p50_ms": 5.0, "p99_ms": 50.0, "peak_rss_mb": 300.0}


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


def start_emulator(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
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
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--describes", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=4, help="parallel creating clients")
    parser.add_argument("--checkpoints", action="store_true", help="give jobs a CheckpointConfig")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="spot-bench-") as tmp:
        process, connection = start_emulator(Path(tmp))
        sampler = RssSampler(process.pid)
        sampler.start()
        try:
            idle_rss = psutil.Process(process.pid).memory_info().rss
            bucket = "bench-bucket"
            client(connection, "s3").create_bucket(Bucket=bucket)
            names = [f"bench-{i:05d}" for i in range(args.jobs)]
            created = create_jobs(connection, names, bucket, args.threads, args.checkpoints)
            to_training = wait_all_training(connection, args.jobs)
            sm = client(connection, "sagemaker")
            latencies = describe_latencies(sm, names, args.describes)
            live = health(connection)
            peak = sampler.stop()
        finally:
            if sampler.is_alive():
                sampler.stop()
            process.send_signal(signal.SIGTERM)
            stop_started = time.perf_counter()
            process.communicate(timeout=300)
            stopped_in = time.perf_counter() - stop_started

    quantiles = statistics.quantiles(latencies, n=100)
    figures = {
        "jobs": args.jobs,
        "creation_jobs_per_s": args.jobs / created,
        "all_training_after_s": to_training,
        "live_jobs_during_describes": live["live_jobs"],
        "p50_ms": quantiles[49],
        "p99_ms": quantiles[98],
        "max_ms": max(latencies),
        "idle_rss_mb": idle_rss / 2**20,
        "peak_rss_mb": peak / 2**20,
        "graceful_stop_s": stopped_in,
    }
    print(
        f"\nspot emulator benchmark: {args.jobs} live synthetic jobs, {args.describes} "
        f"DescribeTrainingJob calls, {args.threads} creating clients, "
        f"checkpoints={'on' if args.checkpoints else 'off'}, {psutil.cpu_count()} CPUs\n"
    )
    print(f"{'figure':<30}{'value':>12}{'target':>12}")
    failed = False
    for key, value in figures.items():
        target = TARGETS.get(key)
        mark = ""
        if target is not None:
            ok = value < target
            failed |= not ok
            mark = f"< {target:g} {'ok' if ok else 'MISSED'}"
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"{key:<30}{shown:>12}  {mark}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
