"""``make ui``: Airflow on this machine with the embedded backend, the example DAGs and the view.

Like ``airflow standalone``, but with what this provider needs: the embedded SageMaker spot
backend (``aws_default`` points at it), the repository's ``dags/`` folder, one shared JWT
secret and Execution API URL, and the simple auth manager letting everyone in as admin (a
local try-out, never a deployment). The Airflow home is ``.demo/airflow``, so the run that
``make demo`` made is in the view. It prints the view's URL and runs until Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from airflow_spot_provider.plugins.chains import VIEW_PREFIX

DEFAULT_PORT = 8080
COMPONENTS = (
    ("scheduler", "--skip-serve-logs"),
    ("triggerer", "--skip-serve-logs"),
    ("dag-processor",),
)


def free_port() -> int:
    """A TCP port that the OS says is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_env(home: Path, port: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every component shares: home, API URL, JWT secret, all-admin auth.

    :param home: ``AIRFLOW_HOME``.
    :param port: the api-server's port.
    :param base: the environment to extend (``os.environ`` by default).
    """
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": env.get("AIRFLOW__API_AUTH__JWT_SECRET")
            or secrets.token_urlsafe(64),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        }
    )
    return env


def start_api_server(env: Mapping[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start ``airflow api-server`` (one worker) on 127.0.0.1:``port``, output to ``log``.

    :param env: the components' environment.
    :param port: the port.
    :param log: the log file.
    """
    args = ("api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
    return _start(env, args, log)


def _start(env: Mapping[str, str], args: tuple[str, ...], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop each component ourselves
        )


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Wait until ``url`` answers (any HTTP status), or fail if the process ends first.

    :param url: the URL to poll.
    :param process: the server process.
    :param timeout: seconds to wait at most.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop the components we started: SIGTERM to each, SIGKILL after 20 s.

    :param processes: the processes.
    """
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> int:
    """Start everything, print the view's URL, wait for Ctrl-C (or SIGTERM)."""
    from airflow_spot_provider.emulator import SpotEmulator

    # Both stop everything cleanly (the finally below), even where SIGINT was ignored on entry.
    signal.signal(signal.SIGINT, _exit_on_signal)
    signal.signal(signal.SIGTERM, _exit_on_signal)

    repo = Path.cwd()
    root = repo / ".demo"
    port = int(os.environ.get("SPOT_UI_PORT", DEFAULT_PORT))
    (root / "airflow").mkdir(parents=True, exist_ok=True)
    log = root / "ui.log"
    with SpotEmulator(data_dir=root / "ui-emulator") as emulator:
        env = airflow_env(root / "airflow", port)
        env.update(
            {
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
                "AIRFLOW_CONN_AWS_DEFAULT": emulator.airflow_connection(),
                "SPOT_EXAMPLES_POLL_INTERVAL": "1",
            }
        )
        print(f"Preparing the Airflow database in {root / 'airflow'} (log: {log})...", flush=True)
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            capture_output=True,
            check=False,
        )
        if migrate.returncode != 0:
            print(migrate.stderr.decode(errors="replace"), file=sys.stderr)
            return 1
        processes = [start_api_server(env, port, log)]
        try:
            wait_until_up(f"http://127.0.0.1:{port}/api/v2/monitor/health", processes[0])
            processes += [_start(env, args, log) for args in COMPONENTS]
            print(f"\nAirflow UI:          http://127.0.0.1:{port}/", flush=True)
            print(f"Spot training view:  http://127.0.0.1:{port}{VIEW_PREFIX}/", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
            while all(p.poll() is None for p in processes):
                time.sleep(1)
            print(f"A component exited; see {log}.", file=sys.stderr)
            return 1
        finally:
            stop(processes)


if __name__ == "__main__":
    sys.exit(main())
