"""Benchmark of following N spot jobs from one triggerer: our trigger against the Amazon one's.

For each N and each run, and for each kind of trigger in turn (the order rotates between runs,
so that the kinds share the machine's moods), on a fresh embedded backend served in a process of
its own (``spot-emulator serve``):

1. create N synthetic spot jobs that train for two hours, logging a line every 10 s (no
   process and no checkpoint sync per job: the backend stays cheap), and wait until all train;
2. start a trigger process (``trigger_process.py``: one asyncio loop running the triggers as
   Airflow's triggerer does, Variables through a supervisor process on a real metadata DB) with
   one trigger per job: ``amazon`` (the Amazon provider's ``SageMakerTrigger``,
   ``job_type="training"``), ``ours`` (``SageMakerSpotTrainingTrigger``, ``print_log=True``, the
   operator's default) or ``ours-nolog`` (``print_log=False``); same poll interval;
3. once every job was read once, wait one interval (and until the jobs' start of training is
   older than the watch's 30 s List margin), then count the backend's API calls by
   operation over ``--window`` seconds (its admin stats), and the Variable writes;
4. stop every job with StopTrainingJob, spread evenly over one poll interval, and wait for the
   triggers' events; the backend's event log says when each job became terminal.

Figures per kind and N (medians over the runs): API calls per poll cycle (by operation; Variable
writes apart), the effective poll interval (how often a job's status is read: the window times N
over the reads, a read being a Describe of the job, or a List walk filtered on
``LastModifiedTimeAfter``, whose answer tells every job's news: listed, or unchanged), peak RSS
of the trigger process (sampled every 50 ms), the event loop's worst lag (a task sleeping 50 ms;
from the first trigger's creation to the shutdown, and within the window; an idle process probes the
same window for the machine's share), terminal status -> event latency (median and max over
jobs), startup (from creating the first trigger until every job was described once since its
trigger existed).

    python benchmarks/bench_triggers.py [--n 100 300 1000] [--runs 3]
        [--kinds amazon,ours,ours-nolog] [--interval 5] [--window 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import psutil  # type: ignore[import-untyped]  # noqa: E402
from bench_emulator import RssSampler, client, start_emulator  # noqa: E402

from airflow_spot_provider.emulator.admin import AdminClient  # noqa: E402
from airflow_spot_provider.emulator.testing import synthetic_request  # noqa: E402
from airflow_spot_provider.lifecycle import TrainingJobStatus  # noqa: E402
from airflow_spot_provider.watch.book import Tuning  # noqa: E402

KINDS = ("amazon", "ours", "ours-nolog")
# The shared watch's List margin: a job changed within it is listed again on every walk.
LIST_MARGIN_S = Tuning().margin.total_seconds()
TITLES = {
    "amazon": "Amazon `SageMakerTrigger`",
    "ours": "ours (`print_log=True`)",
    "ours-nolog": "ours, `print_log=False`",
}
# The figures, in the order: key, title, goal.
FIGURES = (
    ("calls_per_cycle", "API calls per poll cycle", "<= 10 + jobs that changed"),
    ("interval_s", "effective poll interval (s)", "the configured one"),
    ("peak_rss_mb", "peak RSS of the process (MB)", "< 400 MB"),
    ("lag_max_ms", "event-loop lag, max (ms)", "< 100 ms"),
    ("lag_max_window_ms", "event-loop lag, max while following (ms)", "< 100 ms"),
    ("lag_control_ms", "same, in an idle process at the same time (ms)", "(the machine's share)"),
    ("latency_median_s", "terminal status -> event, median (s)", "below Amazon's median"),
    ("latency_max_s", "terminal status -> event, max (s)", "<= interval + 1 s"),
    ("startup_s", "startup of all triggers (s)", "< 10 s"),
)
BUCKET = "bench-triggers"
JOB_SECONDS = 7200
LOG_STEP_SECONDS = 10
STARTUP_TIMEOUT = 600.0
# The machine's own share of the lag: an idle process running the same probe over the window.
CONTROL_PROBE = """
import asyncio, sys, time
async def probe(seconds):
    worst, end = 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        await asyncio.sleep(0.05)
        worst = max(worst, time.monotonic() - started - 0.05)
    print(1000 * worst)
asyncio.run(probe(float(sys.argv[1])))
"""


def airflow_home(base: Path) -> dict[str, str]:
    """A temporary Airflow home with a migrated metadata DB; the environment that uses it.

    :param base: where to put it.
    """
    env = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    env.update(
        AIRFLOW_HOME=str(base),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(base / "dags"),
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    if not (base / "airflow.db").exists():
        print("airflow db migrate (once)...", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    return env


def _drain(stream: Any) -> None:
    """Read a child's output to its end, so that a full pipe never blocks it."""
    for _ in stream:
        pass


def create_jobs(connection: dict[str, Any], names: list[str]) -> None:
    """Create the long synthetic jobs (4 clients) and wait until all of them train."""
    clients = [client(connection, "sagemaker") for _ in range(4)]
    client(connection, "s3").create_bucket(Bucket=BUCKET)

    def create(index: int) -> None:
        request = synthetic_request(
            names[index], BUCKET, train_seconds=JOB_SECONDS, step_seconds=LOG_STEP_SECONDS,
            checkpoint=False, max_runtime=2 * JOB_SECONDS, max_wait=2 * JOB_SECONDS,
        )  # fmt: skip
        clients[index % 4].create_training_job(**request)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(create, range(len(names))))
    admin = AdminClient(_endpoint(connection), "")  # health needs no token
    deadline = time.monotonic() + 300
    while admin.health()["training_jobs"] < len(names):
        if time.monotonic() > deadline:
            raise SystemExit(f"not all {len(names)} jobs train after 300 s: {admin.health()}")
        time.sleep(0.5)


def _endpoint(connection: dict[str, Any]) -> str:
    return str(connection["extra"]["service_config"]["sagemaker"]["endpoint_url"])


def stop_jobs(connection: dict[str, Any], names: list[str], over: float) -> None:
    """StopTrainingJob on every job, evenly spread over ``over`` seconds."""
    clients = [client(connection, "sagemaker") for _ in range(4)]
    started = time.monotonic()

    def stop(index: int) -> None:
        time.sleep(max(0.0, started + over * index / len(names) - time.monotonic()))
        clients[index % 4].stop_training_job(TrainingJobName=names[index])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(stop, range(len(names))))


def _wait_events(triggers: TriggerProcess, n: int, interval: float) -> None:
    """Wait until every trigger fired, or none fired for a while (their events count missing)."""
    fired = 0
    while fired < n:
        more = triggers.wait_for(
            "fired", 3 * interval + 60, until=lambda count, seen=fired: count > seen
        )
        if more is None:
            return
        fired = more


def terminal_times(admin: AdminClient) -> dict[str, float]:
    """When each job reached a terminal TrainingJobStatus (the backend's event log)."""
    ended: dict[str, float] = {}
    for event in admin.events(kind="transition"):
        if TrainingJobStatus(event["status"]).is_terminal:
            ended.setdefault(event["job"], event["time"])
    return ended


class TriggerProcess:
    """The trigger process of one measurement, its RSS sampled from here.

    :param spec: what it runs (``kind``, ``names``, ``interval``, ``log_path``).
    :param env: its environment.
    :param workdir: where its spec goes.
    """

    def __init__(self, spec: dict[str, Any], env: dict[str, str], workdir: Path) -> None:
        path = workdir / "spec.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "trigger_process.py"), str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        assert self.process.stdout is not None and self.process.stderr is not None
        self.sampler = RssSampler(self.process.pid)
        self.sampler.start()
        self.stderr: list[str] = []
        threading.Thread(target=self._keep_stderr, daemon=True).start()
        self.said: dict[str, Any] = {}
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _keep_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr = [*self.stderr[-50:], line]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                said = json.loads(line)
            except ValueError:
                continue
            with self._changed:
                self.said.update(said)
                self._changed.notify_all()
        with self._changed:
            self.said["exited"] = True
            self._changed.notify_all()

    def wait_for(self, key: str, timeout: float, until: Any = None) -> Any:
        """Wait until the process said ``key`` (and ``until(value)`` holds); its value.

        :param key: ``created``, ``all_started``, ``fired``, ``result``.
        :param timeout: seconds.
        :param until: a predicate on the value, if any.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = self.said.get(key)
                if value is not None and (until is None or until(value)):
                    return value
                if self.said.get("exited") or time.monotonic() > deadline:
                    return None
                self._changed.wait(max(0.0, min(1.0, deadline - time.monotonic())))

    def go(self) -> None:
        """Wait until it is ready (Airflow imported, supervisor up), then let it create."""
        if self.wait_for("ready", STARTUP_TIMEOUT) is None:
            raise SystemExit(f"the trigger process never got ready:\n{''.join(self.stderr)}")
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self) -> tuple[dict[str, Any], int]:
        """Close its stdin (it shuts its triggers down and reports); its result and peak RSS."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        result = self.wait_for("result", 120)
        peak = self.sampler.stop()
        if self.process.wait(timeout=60) != 0 or result is None:
            raise SystemExit(f"the trigger process failed:\n{''.join(self.stderr)}")
        return result, peak


def measure(kind: str, n: int, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """One measurement: N jobs, N triggers of one kind; the figures.

    :param kind: ``amazon``, ``ours`` or ``ours-nolog``.
    :param n: the number of jobs.
    :param args: the command line.
    :param env: the environment with the Airflow home.
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-{n}-") as tmp:
        workdir = Path(tmp)
        began = time.monotonic()
        backend, connection = start_emulator(workdir / "backend")
        _progress(began, "backend serving")
        assert backend.stdout is not None
        threading.Thread(target=_drain, args=(backend.stdout,), daemon=True).start()
        try:
            names = [f"bench-{kind}-{i:05d}" for i in range(n)]
            admin = AdminClient.for_data_dir(_endpoint(connection), workdir / "backend")
            child_env = {**env, "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection)}
            spec = {
                "kind": kind, "names": names, "interval": args.interval,
                "log_path": str(workdir / "triggers.log"),
            }  # fmt: skip
            triggers = TriggerProcess(spec, child_env, workdir)  # gets ready meanwhile
            create_jobs(connection, names)
            trained = time.monotonic()
            _progress(began, f"{n} jobs training")
            _start(triggers, args, f"{kind}-{n}")
            _progress(began, "every job described since its trigger exists")
            # A full cycle in flight before the window opens, and the jobs' last change (the
            # start of their training) older than the watch's List margin: the window measures
            # a fleet that only logs, not the burst that created it (the walks page through
            # the jobs changed within the margin, 1 page per 100).
            settled = trained + LIST_MARGIN_S + args.interval - time.monotonic()
            time.sleep(max(args.interval, settled))
            window = _count(admin, backend.pid, triggers.process.pid, args, f"{kind}-{n}")
            stop_jobs(connection, names, args.interval)
            _progress(began, "window counted, jobs stopped")
            _wait_events(triggers, n, args.interval)
            _progress(began, "events fired")
            result, peak = triggers.finish()
            _progress(began, "trigger process ended")
            ended = terminal_times(admin)
        finally:
            backend.send_signal(signal.SIGTERM)
            backend.wait(timeout=120)
        _progress(began, "backend ended")
    measured = figures(
        result, peak, names, ended,
        window=(window["start"], window["end"]), calls=window["calls"], interval=args.interval,
    )  # fmt: skip
    measured["backend_cpu_pct"] = window["backend_cpu_pct"]
    measured["lag_control_ms"] = window["lag_control_ms"]
    return measured


def _start(triggers: TriggerProcess, args: argparse.Namespace, label: str) -> None:
    """Let the trigger process create its triggers; wait until every job was described once
    (or :data:`STARTUP_TIMEOUT`: the startup is then missing from the figures)."""
    triggers.go()
    profiler = _profile(args, triggers.process.pid, f"{label}-startup")
    triggers.wait_for("all_started", STARTUP_TIMEOUT)
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)


def _count(
    admin: AdminClient, backend: int, triggers: int, args: argparse.Namespace, label: str
) -> dict[str, Any]:
    """The window: the backend's calls by operation and its CPU (% of a core) over it."""
    start, before, cpu = time.time(), admin.stats()["api_calls"], _cpu_seconds(backend)
    profiler = _profile(args, triggers, label, args.window)
    control = subprocess.Popen(
        [sys.executable, "-c", CONTROL_PROBE, str(args.window)], stdout=subprocess.PIPE, text=True
    )
    time.sleep(args.window)
    end, after, cpu = time.time(), admin.stats()["api_calls"], _cpu_seconds(backend) - cpu
    if profiler is not None:
        profiler.wait(timeout=60)
    calls = Counter(after)
    calls.subtract(before)
    control_ms = float(control.communicate(timeout=60)[0] or "nan")
    return {
        "start": start, "end": end, "calls": calls,
        "backend_cpu_pct": 100 * cpu / (end - start), "lag_control_ms": control_ms,
    }  # fmt: skip


def _progress(began: float, what: str) -> None:
    print(f"  {time.monotonic() - began:6.1f} s: {what}", file=sys.stderr, flush=True)


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _profile(
    args: argparse.Namespace, pid: int, label: str, seconds: float | None = None
) -> subprocess.Popen[bytes] | None:
    """With ``--profile DIR``: py-spy samples the trigger process without pausing it, collapsed
    stacks into ``DIR/<label>.txt``, for ``seconds`` (None: until sent SIGINT).

    :param args: the command line.
    :param pid: the trigger process.
    :param label: the file's name.
    :param seconds: how long.
    """
    if args.profile is None:
        return None
    args.profile.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        raise SystemExit(f"--profile needs py-spy next to {sys.executable} (pip install py-spy)")
    duration = ["--duration", str(int(seconds))] if seconds else []
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), *duration, "--format", "raw",
         "--nonblocking", "--output", str(args.profile / f"{label}.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def figures(
    result: dict[str, Any],
    peak: int,
    names: list[str],
    ended: dict[str, float],
    *,
    window: tuple[float, float],
    calls: Counter[str],
    interval: float,
) -> dict[str, Any]:
    """The figures of one measurement from its raw data.

    :param result: what the trigger process reported.
    :param peak: its peak RSS, bytes.
    :param names: the jobs.
    :param ended: when each job became terminal.
    :param window: the counting window (epoch seconds).
    :param calls: the backend's API calls in the window, by operation.
    :param interval: the poll interval.
    """
    start, end = window
    started = result["all_started"] or start
    cycles = (end - start) / interval
    reads: Counter[str] = Counter()
    for at, operation, job in result["calls"]:
        if start <= at < end and operation == "DescribeTrainingJob":
            reads[job] += 1
    # A walk filtered on LastModifiedTimeAfter reads every job (listed, or unchanged); pages of
    # unfiltered walks read the jobs they list.
    walks = sum(1 for at in result.get("walks", []) if start <= at < end)
    for at, page in result["listed"]:
        if start <= at < end and not walks:
            reads.update(page)
    read = sum(reads[name] for name in names) + walks * len(names)
    writes = sum(
        1 for at, kind, _ in result["comms"] if start <= at < end and kind == "PutVariable"
    )
    latencies = [
        result["fired"][name] - ended[name]
        for name in names
        if name in result["fired"] and name in ended
    ]
    by_operation = {op.rpartition(".")[2]: count / cycles for op, count in calls.items() if count}
    return {
        "calls_per_cycle": sum(calls.values()) / cycles,
        "calls_by_operation": by_operation,
        "variable_writes_per_cycle": writes / cycles,
        "interval_s": (end - start) * len(names) / read if read else end - start,
        "peak_rss_mb": peak / 2**20,
        "lag_max_ms": 1000 * max((lag for _, lag in result["lags"]), default=0.0),
        "lag_max_window_ms": _lag_max(result["lags"], start, end),
        "gc_max_ms_by_generation": {
            g: 1000 * max((p for _, gen, p in result.get("gc_pauses", []) if gen == g), default=0)
            for g in (0, 1, 2)
        },
        "lag_max_by_phase_ms": {
            "startup": _lag_max(result["lags"], result["created_start"], started),
            "window": _lag_max(result["lags"], start, end),
            "ending": _lag_max(result["lags"], end, result["shutdown_at"]),
        },
        "latency_median_s": statistics.median(latencies) if latencies else float("nan"),
        "latency_max_s": max(latencies, default=float("nan")),
        "missing_events": len(names) - len(latencies),
        "startup_s": started - result["created_start"] if result["all_started"] else float("nan"),
        "log_mb": result["log_bytes"] / 2**20,
        "comms_requests": dict(Counter(kind for _, kind, _ in result["comms"])),
        "comms_seconds_median_max": _median_max([took for _, _, took in result["comms"]]),
        "log_problems": result["log_problems"],
    }


def _lag_max(lags: list[tuple[float, float]], since: float, until: float) -> float:
    """The worst lag seen between two moments, ms."""
    return 1000 * max((lag for at, lag in lags if since <= at <= until), default=0.0)


def _median_max(values: list[float]) -> tuple[float, float]:
    return (statistics.median(values), max(values)) if values else (0.0, 0.0)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run.get(key, float("nan")) for run in runs))


def _calls_cell(runs: list[dict[str, Any]]) -> str:
    """Calls per cycle, the operations that make them, and Variable writes apart."""
    operations: dict[str, float] = {}
    for op in {op for run in runs for op in run["calls_by_operation"]}:
        operations[op] = statistics.median(run["calls_by_operation"].get(op, 0.0) for run in runs)
    shown = ", ".join(
        f"{op} {count:,.0f}" for op, count in sorted(operations.items()) if count >= 0.5
    )
    cell = f"{_median(runs, 'calls_per_cycle'):,.0f} ({shown})"
    writes = _median(runs, "variable_writes_per_cycle")
    return cell + (f" + {writes:,.0f} Variable writes" if writes >= 0.5 else "")


def cell(runs: list[dict[str, Any]], key: str) -> str:
    """One figure's table cell: the median over the runs.

    :param runs: the measurements of one kind at one N.
    :param key: the figure.
    """
    if key == "calls_per_cycle":
        return _calls_cell(runs)
    value = _median(runs, key)
    if key in {"peak_rss_mb", "lag_max_ms", "lag_max_window_ms", "lag_control_ms"}:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def tables(
    results: dict[tuple[str, int], list[dict[str, Any]]], kinds: list[str], ns: list[int]
) -> str:
    """The markdown: the issue's table at the largest N, then every N and the growth with N.

    :param results: the measurements by (kind, N).
    :param kinds: the kinds measured.
    :param ns: the N measured.
    """
    top = ns[-1]
    runs = {len(results[(kind, top)]) for kind in kinds}
    lines = [
        f"| figure at {top:,} jobs (median of {'/'.join(map(str, sorted(runs)))} runs) | "
        + " | ".join(TITLES[k] for k in kinds)
        + " | goal |",
        "| --- |" + " --- |" * (len(kinds) + 1),
    ]
    for key, title, goal in FIGURES:
        lines.append(
            f"| {title} | "
            + " | ".join(cell(results[(k, top)], key) for k in kinds)
            + f" | {goal} |"
        )
    lines += [
        "",
        "| figure | kind | "
        + " | ".join(f"N={n:,}" for n in ns)
        + (f" | {ns[-1]:,}/{ns[0]:,} |" if len(ns) > 1 else " |"),
        "| --- | --- |" + " --- |" * (len(ns) + (1 if len(ns) > 1 else 0)),
    ]
    for key, title, _ in FIGURES:
        for kind in kinds:
            values = [_median(results[(kind, n)], key) for n in ns]
            row = f"| {title} | {kind} | " + " | ".join(
                cell(results[(kind, n)], key).split(" (")[0] for n in ns
            )
            if len(ns) > 1:
                row += f" | {values[-1] / values[0]:.2f}x |" if values[0] else " | - |"
            else:
                row += " |"
            lines.append(row)
    return "\n".join(lines)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n", type=int, nargs="+", default=[100, 300, 1000], help="jobs (and triggers)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per kind and N (median)")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated, of " + ", ".join(KINDS)
    )
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval, seconds")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of counting")
    parser.add_argument(
        "--airflow-home", type=Path, help="an Airflow home to use (default: a new one)"
    )
    parser.add_argument("--json", type=Path, help="write every measurement here, as they come")
    parser.add_argument("--profile", type=Path, help="py-spy the window into this folder")
    parser.add_argument(
        "--source", type=Path, help="run the triggers from this source tree of the provider"
    )
    parser.add_argument(
        "--report", type=Path, nargs="+", help="measure nothing: the tables of --json files"
    )
    args = parser.parse_args(argv)
    args.kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(args.kinds) - set(KINDS))
    if unknown or not args.kinds:
        parser.error(f"--kinds: each must be one of {', '.join(KINDS)}, got {unknown}")
    if min(args.n) < 1 or args.runs < 1 or args.interval <= 0 or args.window <= 0:
        parser.error("--n and --runs must be >= 1, --interval and --window > 0")
    return args


def _load(paths: list[Path]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The measurements of ``--json`` files, together."""
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for path in paths:
        for key, runs in json.loads(path.read_text(encoding="utf-8")).items():
            kind, n = key.rsplit(" ", 1)
            results.setdefault((kind, int(n)), []).extend(runs)
    return results


def main(argv: list[str] | None = None) -> int:
    """Measure (or read ``--report`` files), print the tables."""
    args = _arguments(argv)
    if args.report:
        results = _load(args.report)
        kinds = [k for k in KINDS if any(kind == k for kind, _ in results)]
        ns = sorted({n for _, n in results})
        print(tables(results, kinds, ns))
        return 0
    kinds, ns = args.kinds, sorted(set(args.n))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-airflow-home-") as home:
        env = airflow_home(args.airflow_home or Path(home))
        if args.source is not None:  # the trigger process imports the provider from there
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(args.source.resolve()), env.get("PYTHONPATH")])
            )
        for n in ns:
            for run in range(args.runs):
                for kind in kinds[run % len(kinds) :] + kinds[: run % len(kinds)]:
                    print(f"N={n} run {run + 1}/{args.runs}: {kind}", file=sys.stderr, flush=True)
                    measured = measure(kind, n, args, env)
                    measured["load_average"] = os.getloadavg()[0]
                    print(f"  {json.dumps(measured)}", file=sys.stderr, flush=True)
                    results.setdefault((kind, n), []).append(measured)
                    if args.json:
                        text = {f"{k} {n}": v for (k, n), v in results.items()}
                        args.json.write_text(json.dumps(text, indent=1), encoding="utf-8")
    print(
        f"\nTriggers side by side: poll interval {args.interval:g} s, counting window "
        f"{args.window:g} s, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n"
    )
    print(tables(results, kinds, ns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
