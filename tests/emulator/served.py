"""``spot-emulator serve`` as a user runs it, for the tests that restart or kill it."""

from __future__ import annotations

import http.client
import json
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

SERVE = [sys.executable, "-m", "airflow_spot_provider.emulator", "serve"]


@contextmanager
def serve(
    data_dir: Path, port: int = 0, crash: bool = False
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """Run ``spot-emulator serve``; yield the process and the connection it printed.

    :param data_dir: the data dir.
    :param port: ``--port`` (S3 on the next one unless 0).
    :param crash: end it with SIGKILL instead of SIGTERM (unless the test ended it already).
    """
    command = [
        *SERVE, "--port", str(port), "--data-dir", str(data_dir), "--tick", "0.02",
        "--notice", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ended_by_test = False
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("export AIRFLOW_CONN_AWS_DEFAULT="):
                # The line is shell: what a user pastes.
                (assignment,) = shlex.split(line.removeprefix("export "))
                yield process, json.loads(assignment.split("=", 1)[1])
                break
        else:
            raise AssertionError(f"the emulator did not start: {''.join(seen)}")
    finally:
        ended_by_test = process.poll() is not None
        if not ended_by_test:
            process.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    if not ended_by_test:
        assert process.returncode == (-signal.SIGKILL if crash else 0), output


def clients(connection: dict[str, Any]) -> dict[str, Any]:
    """boto3 clients from the Airflow connection JSON, as a plain script would build them.

    :param connection: the printed connection.
    """
    extra = connection["extra"]
    return {
        service: boto3.client(
            service,
            endpoint_url=extra["service_config"][service]["endpoint_url"],
            region_name=extra["region_name"],
            aws_access_key_id=connection["login"],
            aws_secret_access_key=connection["password"],
            config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
        )
        for service in ("sagemaker", "logs", "s3")
    }


def run_serve(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run ``spot-emulator serve`` expecting it to refuse to start; its result.

    :param data_dir: the data dir.
    """
    return subprocess.run(
        [*SERVE, "--port", "0", "--data-dir", str(data_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def raw_request(
    url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request with exactly the headers given (and ``Host`` from ``url`` unless
    given): what a browser, or an attacker, would send; the status, headers and body."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        sent = {"Host": parts.netloc, "Content-Length": str(len(body)), **(headers or {})}
        for name, value in sent.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()
