"""Oversize input is refused, with AWS-shaped errors, before anything is allocated; the backend
goes on serving. Logs and checkpoint syncs are bounded; a damaged state file is named."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.checkpoints import UPLOAD_THREADS, CheckpointSync
from airflow_spot_provider.emulator.logs import DROPPED_MARKER, LOG_GROUP
from airflow_spot_provider.emulator.testing import (
    fast_config,
    script_request,
    synthetic_request,
    wait_for_job,
)
from airflow_spot_provider.lifecycle import TrainingJobStatus
from tests.emulator.served import raw_request, run_serve

JSON_11 = {"Content-Type": "application/x-amz-json-1.1"}


def _call(emulator: SpotEmulator, operation: str, body: bytes) -> tuple[int, dict[str, Any]]:
    status, _headers, answer = raw_request(
        emulator.endpoint_url, "POST", "/", body,
        {**JSON_11, "X-Amz-Target": f"SageMaker.{operation}"},
    )  # fmt: skip
    return status, json.loads(answer)


@pytest.mark.parametrize(
    ("count", "code"),
    [
        (1180591620717411303424, "ValidationException"),  # past int64: once grew until OOM
        (2**31, "ValidationException"),  # past botocore's int32
        (10_001, "ResourceLimitExceeded"),  # within int32, past the default quota
    ],
)
def test_instance_count_is_bounded_before_anything_is_allocated(
    emulator: SpotEmulator, sm: Any, bucket: str, job_name: str, count: int, code: str
) -> None:
    request = synthetic_request(job_name, bucket)
    request["ResourceConfig"]["InstanceCount"] = count
    status, answer = _call(emulator, "CreateTrainingJob", json.dumps(request).encode())
    assert (status, answer["__type"]) == (400, code), answer
    assert str(count) in answer["message"]
    with pytest.raises(sm.exceptions.ClientError):  # nothing was created
        sm.describe_training_job(TrainingJobName=job_name)


def test_every_integer_member_is_within_int32(
    emulator: SpotEmulator, bucket: str, job_name: str
) -> None:
    request = synthetic_request(job_name, bucket)
    request["StoppingCondition"]["MaxRuntimeInSeconds"] = 2**40
    request["ResourceConfig"]["VolumeSizeInGB"] = 2**31
    status, answer = _call(emulator, "CreateTrainingJob", json.dumps(request).encode())
    assert status == 400
    assert answer["message"].startswith("2 validation errors detected")
    assert "less than or equal to 2147483647" in answer["message"]


@pytest.mark.parametrize("path", ["/", "/_emulator/scenario"])
def test_deep_nesting_is_a_400_not_a_500(emulator: SpotEmulator, sm: Any, path: str) -> None:
    body = b"[" * 1000 + b"]" * 1000
    status, _headers, answer = raw_request(
        emulator.endpoint_url, "POST", path, b'{"a": ' + body + b"}",
        {**JSON_11, "X-Amz-Target": "SageMaker.ListTrainingJobs",
         "Content-Type": "application/json" if path != "/" else JSON_11["Content-Type"],
         "X-Spot-Emulator-Token": emulator.admin_token},
    )  # fmt: skip
    assert status == 400, answer
    assert b"1001 levels deep" in answer
    assert "TrainingJobSummaries" in sm.list_training_jobs()  # still serving


def test_oversize_body_is_an_aws_shaped_400(emulator: SpotEmulator) -> None:
    body = b'{"x": "' + b"a" * (emulator.config.max_body_bytes + 1) + b'"}'
    status, answer = _call(emulator, "ListTrainingJobs", body)
    assert (status, answer["__type"]) == (400, "RequestEntityTooLargeException")


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/nope", 404), ("DELETE", "/", 405)]
)
def test_unknown_paths_and_methods_are_aws_shaped(
    emulator: SpotEmulator, method: str, path: str, status: int
) -> None:
    got, headers, answer = raw_request(emulator.endpoint_url, method, path)
    assert got == status
    assert headers["Content-Type"] == JSON_11["Content-Type"]
    assert json.loads(answer)["__type"] == "UnknownOperationException"


def test_a_damaged_state_file_is_named_in_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "emulator.sqlite3").write_bytes(b"this is not a database" * 100)
    result = run_serve(data_dir)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert str(data_dir / "emulator.sqlite3") in lines[0]
    assert "move it away" in lines[0]


def test_job_log_is_capped_with_a_marker(tmp_path: Path) -> None:
    cap = 64 * 1024
    source = tmp_path / "src"
    source.mkdir()
    (source / "chatty.py").write_text(
        "for i in range(4000):\n    print(f'line {i:05d} ' + 'x' * 90)\n", encoding="utf-8"
    )
    with SpotEmulator(config=fast_config(tmp_path / "data", log_cap_bytes=cap)) as emulator:
        sm, logs, s3 = (emulator.boto3_client(s) for s in ("sagemaker", "logs", "s3"))
        s3.create_bucket(Bucket="chatty")
        sm.create_training_job(**script_request("chatty", "chatty", source, "chatty.py"))
        assert wait_for_job(sm, "chatty")["TrainingJobStatus"] == TrainingJobStatus.COMPLETED
        (stream,) = logs.describe_log_streams(logGroupName=LOG_GROUP)["logStreams"]
        events = logs.get_log_events(
            logGroupName=LOG_GROUP, logStreamName=stream["logStreamName"], startFromHead=True
        )["events"]
        messages = [e["message"] for e in events]
        stored = sum(len(m) + 26 for m in messages)
        assert stored <= cap
        prefix = DROPPED_MARKER.split("{count}")[0]
        assert messages[0].startswith(prefix), messages[:2]
        dropped = int(messages[0][len(prefix) :].split()[0])
        kept = [m for m in messages if m.startswith("line ")]
        assert kept[-1].startswith("line 03999")
        assert dropped + len(kept) == 4000  # every line is either kept or counted


def test_a_sync_past_its_budget_before_any_upload_still_starts_its_first_batch(
    tmp_path: Path, standalone_s3: Any
) -> None:
    # A budget already spent when the uploads begin (the scan took it all on a loaded machine):
    # every sync still uploads a batch, so that the periodic syncs always make progress.
    standalone_s3.create_bucket(Bucket="spent-budget")
    local = tmp_path / "ckpt"
    local.mkdir()
    for index in range(3 * UPLOAD_THREADS):
        (local / f"shard-{index:03d}.bin").write_bytes(b"x" * 64)
    sync = CheckpointSync(standalone_s3, "s3://spent-budget/run", local, budget_seconds=0)
    counts = [sync.sync_once() for _ in range(3)]
    assert counts == [UPLOAD_THREADS] * 3
    assert sync.sync_once() == 0  # all there


def test_checkpoint_sync_is_bounded_and_loses_nothing(tmp_path: Path, standalone_s3: Any) -> None:
    standalone_s3.create_bucket(Bucket="many-files")
    local = tmp_path / "ckpt"
    local.mkdir()
    for index in range(3000):
        (local / f"shard-{index:05d}.bin").write_bytes(b"x" * 64)
    sync = CheckpointSync(standalone_s3, "s3://many-files/run", local, budget_seconds=0.5)
    started = time.monotonic()
    first = sync.sync_once()
    assert time.monotonic() - started < 10  # the budget, plus the uploads in flight
    assert 0 < first < 3000
    # What the budget left goes at the next syncs: nothing is lost.
    total = first
    while total < 3000:
        total += sync.sync_once()
    listed = standalone_s3.get_paginator("list_objects_v2").paginate(
        Bucket="many-files", Prefix="run/"
    )
    assert sum(len(page.get("Contents", [])) for page in listed) == 3000
