"""kill -9 of ``spot-emulator serve`` mid-job, then a restart on the same data dir and ports:
no S3 object lost, no checkpoint lost (the job resumes from the newest one written, synced or
not, and completes), no process of the dead backend left running, and the pasted connection
still good."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_spot_provider.emulator.testing import (
    log_lines,
    script_request,
    secondary_statuses,
    wait_for_job,
    wait_for_log_line,
)
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus
from tests.emulator.served import clients, run_serve, serve

TRAINER_DIR = Path(__file__).resolve().parent / "crash_trainer"


def _free_port_pair() -> int:
    """A port whose next port is free too (SageMaker on it, S3 on the next)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two consecutive free ports")


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not: it is only waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _marked(marker: str) -> set[int]:
    """Host pids of the live processes whose command line holds ``marker``.

    A job in a PID namespace knows only its own pids, so the trainer cannot tell the test its host
    pids: its command line (and its child's) carries the test's unique pid dir instead.
    """
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in command and _alive(int(entry.name)):
                found.add(int(entry.name))
    return found


def _objects(s3: Any, bucket: str) -> dict[str, str]:
    """Key to MD5 of every object of a bucket."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            found[item["Key"]] = hashlib.md5(body).hexdigest()
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_kill_9_mid_job_loses_no_object_no_checkpoint_no_process(tmp_path: Path) -> None:
    data_dir, pid_dir = tmp_path / "data", tmp_path / "pids"
    name, bucket = "survives-kill-9", "kill-9-bucket"
    port = _free_port_pair()
    with serve(data_dir, port) as (process, connection):
        aws = clients(connection)
        s3 = aws["s3"]
        s3.create_bucket(Bucket=bucket)
        for index in range(20):  # the user's data: written just before the crash
            s3.put_object(Bucket=bucket, Key=f"data/part-{index}", Body=os.urandom(1000 + index))
        request = script_request(
            name, bucket, TRAINER_DIR, "train.py", steps=40, step_seconds=0.1, pid_dir=pid_dir
        )
        aws["sagemaker"].create_training_job(**request)
        wait_for_log_line(aws["logs"], name, "step 12/40", timeout=60)
        before_objects = _objects(s3, bucket)
        time.sleep(0.3)
        # The trainer and its setsid() child, as the host sees them.
        pids = _marked(str(pid_dir))
        assert len(pids) >= 2
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        first_connection = connection
    sandbox_checkpoints = data_dir / "jobs" / name / "algo-1" / "checkpoints"
    written = sorted(p.name for p in sandbox_checkpoints.glob("step-*.ckpt"))
    assert len(written) >= 12
    assert list(pid_dir.glob("*.pids"))

    with serve(data_dir, port) as (_process, connection):
        # Same ports: the connection pasted before the crash is still good.
        assert connection == first_connection
        aws = clients(connection)
        # The processes of the dead backend are gone before any job restarts.
        assert [pid for pid in pids if _alive(pid)] == []
        final = wait_for_job(aws["sagemaker"], name, timeout=90)
        assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED, final
        assert secondary_statuses(final)[:4] == [
            S.STARTING,
            S.DOWNLOADING,
            S.TRAINING,
            S.INTERRUPTED,  # the backend went down: the instances were lost
        ]
        assert secondary_statuses(final)[-2:] == [S.UPLOADING, S.COMPLETED]
        # Every object written before the crash is there, byte for byte.
        after = _objects(aws["s3"], bucket)
        assert {k: after.get(k) for k in before_objects} == before_objects
        # Every checkpoint file written before the crash reached S3, synced or not ...
        in_s3 = {k.rsplit("/", 1)[1] for k in after if k.startswith(f"checkpoints/{name}/")}
        assert set(written) <= in_s3
        # ... and the job went on from the newest of them (or a newer one, where the trainer ran
        # on until the restart killed it: without PID namespaces, nothing kills it sooner).
        messages = log_lines(aws["logs"], name)
        resumed = [int(m.split("=")[1]) for m in messages if m.startswith("resumed from step=")]
        assert len(resumed) == 1
        assert resumed[0] >= int(written[-1][5:9])
        assert messages[-1] == "done"
    # And nothing of either life runs on.
    pids |= _marked(str(pid_dir))
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if _alive(pid)] == []


def test_a_second_backend_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serve(data_dir, 0) as (process, _connection):
        second = run_serve(data_dir)
        assert second.returncode != 0
        assert f"in use by the spot emulator of pid {process.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert process.poll() is None  # the first one goes on
