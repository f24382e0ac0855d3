"""A real Airflow 3.3 deployment on this machine: one OS process per component, as users run it.

``airflow db migrate``, then ``api-server``, ``scheduler``, ``triggerer`` and ``dag-processor``
as separate processes (LocalExecutor, SQLite), sharing an ``AIRFLOW_HOME`` in a temp dir, the
Execution API URL and the JWT secret. Each component runs in its own session (process group),
so that :meth:`AirflowDeployment.kill` takes it down with the children of its group (the
scheduler's LocalExecutor workers; a task process has a group of its own and lives on), and
:meth:`AirflowDeployment.start` brings it back.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
COMPONENTS = ("api-server", "scheduler", "triggerer", "dag-processor")
# A CeleryExecutor deployment adds Celery workers (`airflow celery worker`).
CELERY_WORKER = "celery-worker"
_COMMANDS = {component: [component] for component in COMPONENTS} | {
    CELERY_WORKER: ["celery", "worker"]
}
# The components whose processes call AWS: the task processes (children of the scheduler's
# LocalExecutor workers, or of a Celery worker, inheriting its environment) and the triggerer.
# The api-server and the dag-processor don't.
NEEDS_AWS = frozenset({"scheduler", "triggerer", CELERY_WORKER})
# Without --skip-serve-logs they bind the fixed ports 8793/8794 (they share the log folder here).
_SERVE_LOGS = frozenset({"scheduler", "triggerer", CELERY_WORKER})
TRIGGERER_HEALTH_CHECK_THRESHOLD = 10


def free_port() -> int:
    """A TCP port the OS has just handed out on the loopback (free at that moment)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def settings(home: Path, api_port: int) -> dict[str, str]:
    """The configuration every component shares, as ``AIRFLOW__SECTION__KEY`` variables.

    :param home: the deployment's ``AIRFLOW_HOME``.
    :param api_port: the api-server's port (it serves the Execution API too).
    """
    jwt_secret = secrets.token_hex(64)  # 128 characters: past the 64-byte minimum
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        # Faster than the defaults, still the same mechanisms: heartbeats every 1-2 s, a dead
        # triggerer's triggers taken over after 10 s instead of 30 s.
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(
            TRIGGERER_HEALTH_CHECK_THRESHOLD
        ),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its own Airflow settings, plus ``extra``.

    The test session configures Airflow for ``dag.test()`` (unit-test mode, its own home and
    bundles); none of that may reach the deployment.

    :param extra: the deployment's variables.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(extra)
    return env


class AirflowDeployment:
    """The four components of one Airflow deployment, started, killed and restarted at will.

    :param home: an empty directory for ``AIRFLOW_HOME`` (config, SQLite DB, logs, dags).
    :param dags: DAG files to copy into the deployment's dags folder.
    :param aws_connection: ``AIRFLOW_CONN_AWS_DEFAULT`` for the components that call AWS.
    :param overrides: settings that replace or extend :func:`settings` (another executor, DB).
    """

    def __init__(
        self,
        home: Path,
        dags: list[Path],
        aws_connection: str,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.env = clean_environment({**settings(home, self.api_port), **(overrides or {})})
        self.aws_connection = aws_connection
        (home / "dags").mkdir(parents=True, exist_ok=True)
        for dag in dags:
            shutil.copy(dag, home / "dags" / dag.name)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._outputs: list[IO[bytes]] = []

    def migrate(self) -> None:
        """``airflow db migrate`` (creates the metadata DB's tables); fails with its stderr."""
        done = subprocess.run(
            [AIRFLOW, "db", "migrate"],
            check=False,  # the error below says why, with migrate's own words
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=180,
        )
        if done.returncode:
            tail = done.stderr.decode(errors="replace")[-3000:]
            raise RuntimeError(f"airflow db migrate exited with {done.returncode}:\n{tail}")

    def start(self, component: str, name: str | None = None) -> subprocess.Popen[bytes]:
        """Start one component in its own process group; its output goes to ``<home>/<name>.out``.

        :param component: one of :data:`COMPONENTS`, or :data:`CELERY_WORKER`.
        :param name: the process's name in :attr:`processes` (default: the component's), so
            that a deployment can run two triggerers or two workers.
        """
        if component not in _COMMANDS:
            raise ValueError(f"component={component!r}: must be one of {sorted(_COMMANDS)}")
        name = name or component
        env = dict(self.env)
        if component in NEEDS_AWS:
            env["AIRFLOW_CONN_AWS_DEFAULT"] = self.aws_connection
        args = [AIRFLOW, *_COMMANDS[component]]
        if component in _SERVE_LOGS:
            args.append("--skip-serve-logs")
        if component == "api-server":
            args += ["--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"]
        if component == CELERY_WORKER:
            args += ["--celery-hostname", f"{name}@%h"]  # two workers on one host
        output = (self.home / f"{name}.out").open("ab")
        self._outputs.append(output)
        process = subprocess.Popen(
            args, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[name] = process
        return process

    def kill(self, name: str) -> None:
        """``kill -9`` a component and every process it started (its process group).

        :param name: the process's name in :attr:`processes`.
        """
        process = self.processes.pop(name)
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=30)

    def restart(self, component: str) -> None:
        """Kill a component with ``kill -9``, then start it again.

        :param component: one of :data:`COMPONENTS`.
        """
        self.kill(component)
        self.start(component)

    def kill_task_process(self, ti_id: str) -> int:
        """``kill -9`` the process running a task instance (not its supervisor), and wait for it.

        The task process is a child of a LocalExecutor worker, itself a child of the scheduler,
        and is titled ``airflow worker -- <task instance id>``: looked up among the scheduler's
        descendants only, so that no other process on the machine is ever hit.

        :param ti_id: the task instance's id (``id`` in the REST API).
        :returns: the pid killed.
        """
        title = f"airflow worker -- {ti_id}"
        scheduler = psutil.Process(self.processes["scheduler"].pid)
        for process in scheduler.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if " ".join(process.cmdline()).strip() == title:
                    process.kill()
                    process.wait(timeout=30)
                    return process.pid
        raise LookupError(f"no process titled {title!r} under the scheduler")

    def stop(self) -> None:
        """SIGTERM every component, then SIGKILL what is left after a grace period."""
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()
        for output in self._outputs:
            output.close()

    def close(self, keep: bool) -> None:
        """Stop every component, then remove the home, or keep it and print its path.

        :param keep: keep the home (config, DB, component outputs, task logs) for inspection.
        """
        self.stop()
        if keep:
            print(f"deployment kept for inspection: {self.home}")
        else:
            shutil.rmtree(self.home, ignore_errors=True)

    def wait_healthy(self, timeout: float = 180.0) -> None:
        """Wait until the api-server answers and reports every other component healthy.

        :param timeout: seconds.
        """
        wait_for(self._healthy, timeout, "the deployment to be healthy")

    def _healthy(self) -> bool:
        for component, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{component} exited with {process.returncode}: {self.tail()}")
        try:
            health = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all(health.get(part, {}).get("status") == "healthy" for part in parts)

    def trigger_runners(
        self, dag_id: str, run_id: str, task_id: str = "train", map_index: int = -1
    ) -> set[int]:
        """The triggerer jobs that ran a trigger of a task instance (try 1).

        Each writes the trigger's log to ``attempt=1.log.trigger.<triggerer job id>.log`` once
        the trigger runs; a trigger only assigned to a triggerer has no such file yet.

        :param dag_id: the DAG.
        :param run_id: the run.
        :param task_id: the task.
        :param map_index: its map index (-1: not mapped).
        """
        folder = (
            self.home
            / "logs"
            / f"dag_id={dag_id}"
            / f"run_id={run_id}"
            / f"task_id={task_id}"
            / (f"map_index={map_index}" if map_index >= 0 else "")
        )
        logs = folder.glob("attempt=1.log.trigger.*.log")
        return {int(path.name.split(".")[-2]) for path in logs}

    def errors_about(self, ti_id: str) -> list[str]:
        """The scheduler's error lines that name a task instance.

        :param ti_id: the task instance's id.
        """
        path = self.home / "scheduler.out"
        text = path.read_text(errors="replace") if path.exists() else ""
        return [line[:400] for line in text.splitlines() if "[error" in line and ti_id in line]

    def tail(self, lines: int = 30) -> str:
        """The last lines of each process's output, for failure messages.

        :param lines: lines per component.
        """
        text = []
        for path in sorted(self.home.glob("*.out")):
            last = path.read_text(errors="replace").splitlines()[-lines:]
            text.append(f"--- {path.stem} ---\n" + "\n".join(last))
        return "\n".join(text)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll ``predicate`` until it returns a true value, and return that value.

    :param predicate: called every ``every`` seconds.
    :param timeout: seconds before failing with ``what``.
    :param what: what is awaited, for the failure message.
    :param every: seconds between two calls.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
