"""What a shared watch needs from the backend, through real boto3: ListTrainingJobs by
LastModifiedTime with cursor pages that hold while jobs change, DescribeLogStreams by last event
time, FilterLogEvents across streams."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.testing import synthetic_request, wait_for_job
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def _names(response: dict[str, Any]) -> list[str]:
    return [s["TrainingJobName"] for s in response["TrainingJobSummaries"]]


def _wait_secondary(sm: Any, name: str, secondary: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = sm.describe_training_job(TrainingJobName=name)
        if job["SecondaryStatus"] == secondary:
            return job
        assert time.monotonic() < deadline, f"{name} stayed {job['SecondaryStatus']}"
        time.sleep(0.05)


def _pages(
    call: Callable[..., dict[str, Any]], token: str, pause: float = 0.0, **kwargs: Any
) -> Iterator[dict[str, Any]]:
    """Every page of a paginated call, following its ``token`` (pausing between pages)."""
    while True:
        page = call(**kwargs)
        yield page
        if token not in page:
            return
        kwargs[token] = page[token]
        time.sleep(pause)


def _walk(sm: Any, pause: float = 0.0, **kwargs: Any) -> list[str]:
    """Every name of a List walk, page by page."""
    return [
        n for p in _pages(sm.list_training_jobs, "NextToken", pause, **kwargs) for n in _names(p)
    ]


def test_job_changed_between_two_lists_is_listed(sm: Any, bucket: str, job_name: str) -> None:
    changed, still = f"{job_name}-changed", f"{job_name}-still"
    for name in (changed, still):
        sm.create_training_job(**synthetic_request(name, bucket, train_seconds=60))
    for name in (changed, still):
        _wait_secondary(sm, name, S.TRAINING)
    first = sm.list_training_jobs(NameContains=job_name, MaxResults=100)
    assert sorted(_names(first)) == sorted([changed, still])
    watermark = max(s["LastModifiedTime"] for s in first["TrainingJobSummaries"])
    try:
        sm.stop_training_job(TrainingJobName=changed)
        second = sm.list_training_jobs(NameContains=job_name, LastModifiedTimeAfter=watermark)
        assert _names(second) == [changed]
        summary = second["TrainingJobSummaries"][0]
        assert summary["TrainingJobStatus"] == TrainingJobStatus.STOPPING
        assert summary["SecondaryStatus"] == S.STOPPING
        assert summary["LastModifiedTime"] > watermark
        described = sm.describe_training_job(TrainingJobName=changed)
        assert described["LastModifiedTime"] == summary["LastModifiedTime"]
        before = sm.list_training_jobs(
            NameContains=job_name, LastModifiedTimeBefore=summary["LastModifiedTime"]
        )
        assert _names(before) == [still]
        # Every secondary-status change advances it: Stopping -> Stopped is listed again.
        stopped = wait_for_job(sm, changed)
        assert stopped["LastModifiedTime"] > summary["LastModifiedTime"]
        third = sm.list_training_jobs(
            NameContains=job_name, LastModifiedTimeAfter=summary["LastModifiedTime"]
        )
        assert _names(third) == [changed]
    finally:
        sm.stop_training_job(TrainingJobName=still)


@pytest.mark.parametrize("order", ["Ascending", "Descending"])
@pytest.mark.parametrize("since", [None, 1.0])
def test_pages_list_every_job_once_while_jobs_change(
    sm: Any, bucket: str, job_name: str, order: str, since: float | None
) -> None:
    names = [f"{job_name}-{i:02d}" for i in range(12)]
    for index, name in enumerate(names):
        # Short and staggered runs: jobs change status while the pages are read.
        sm.create_training_job(**synthetic_request(name, bucket, train_seconds=0.2 * index))
    kwargs: dict[str, Any] = {"NameContains": job_name, "MaxResults": 3, "SortOrder": order}
    if since is not None:
        kwargs["LastModifiedTimeAfter"] = since  # the last-modified index path
    walked = _walk(sm, pause=0.3, **kwargs)
    assert sorted(walked) == names and len(walked) == len(names)
    assert walked == (names if order == "Ascending" else names[::-1])
    for name in names:
        wait_for_job(sm, name)


def test_list_page_size_bounds(sm: Any, emulator: SpotEmulator) -> None:
    # boto3 refuses MaxResults 0 itself: a client that does not check shows the server's answer.
    raw = emulator.boto3_client("sagemaker", config=Config(parameter_validation=False))
    for size, rule in ((0, "greater than or equal to 1"), (101, "less than or equal to 100")):
        with pytest.raises(ClientError) as raised:
            raw.list_training_jobs(MaxResults=size)
        error = raised.value.response["Error"]
        assert error["Code"] == "ValidationException" and rule in error["Message"]
    with pytest.raises(ClientError) as raised:
        sm.list_training_jobs(NextToken="not-a-token")
    assert raised.value.response["Error"]["Message"] == "Invalid pagination token."


@pytest.fixture(scope="module")
def three_streams(sm: Any, logs: Any, bucket: str) -> list[str]:
    """Streams of three jobs run one after the other: their last events are in that order."""
    streams = []
    for index in range(3):
        name = f"streams-{index}-{int(time.time())}"
        sm.create_training_job(
            **synthetic_request(name, bucket, train_seconds=0.4, step_seconds=0.1)
        )
        wait_for_job(sm, name)
        time.sleep(0.02)  # distinct last event times
        found = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=name + "/")
        streams += [s["logStreamName"] for s in found["logStreams"]]
    assert len(streams) == 3
    return streams


def test_describe_log_streams_by_last_event_time(logs: Any, three_streams: list[str]) -> None:
    pages = list(
        _pages(
            logs.describe_log_streams,
            "nextToken",
            logGroupName=LOG_GROUP,
            orderBy="LastEventTime",
            descending=True,
            limit=2,
        )
    )
    assert all(len(page["logStreams"]) <= 2 for page in pages)
    walked = [stream for page in pages for stream in page["logStreams"]]
    names = [s["logStreamName"] for s in walked]
    assert len(names) == len(set(names))  # each stream once
    last = [s.get("lastEventTimestamp", 0) for s in walked]
    assert last == sorted(last, reverse=True)
    ours = [n for n in names if n in three_streams]
    assert ours == three_streams[::-1]  # the stream that moved last comes first

    by_name = [
        s["logStreamName"]
        for page in _pages(
            logs.describe_log_streams,
            "nextToken",
            logGroupName=LOG_GROUP,
            logStreamNamePrefix="streams-",
            limit=1,
        )
        for s in page["logStreams"]
    ]
    assert by_name == sorted(by_name) and set(three_streams) <= set(by_name)
    with pytest.raises(ClientError) as raised:
        logs.describe_log_streams(logGroupName=LOG_GROUP, limit=51)
    error = raised.value.response["Error"]
    assert error["Code"] == "InvalidParameterException" and "'limit'" in error["Message"]


def test_filter_log_events_across_streams(logs: Any, three_streams: list[str]) -> None:
    expected = []
    for stream in three_streams:
        events = logs.get_log_events(
            logGroupName=LOG_GROUP, logStreamName=stream, startFromHead=True
        )["events"]
        assert events
        expected += [(e["timestamp"], stream, e["message"]) for e in events]
    expected.sort(key=lambda e: e[0])
    start = expected[len(expected) // 2][0]

    pages = list(
        _pages(
            logs.filter_log_events,
            "nextToken",
            logGroupName=LOG_GROUP,
            logStreamNames=three_streams,
            startTime=start,
            limit=4,
            interleaved=True,
        )
    )
    assert len(pages) > 1 and all(len(page["events"]) <= 4 for page in pages)
    read = [(e["timestamp"], e["logStreamName"], e["message"]) for p in pages for e in p["events"]]
    wanted = [e for e in expected if e[0] >= start]
    assert [e[0] for e in read] == sorted(e[0] for e in read)
    assert sorted(read) == sorted(wanted)
    assert {e[1] for e in read} == {e[1] for e in wanted}

    ended = logs.filter_log_events(
        logGroupName=LOG_GROUP, logStreamNames=three_streams, endTime=expected[0][0] + 1
    )["events"]
    assert ended and all(e["timestamp"] <= expected[0][0] for e in ended)


def test_filter_log_events_limits(logs: Any, three_streams: list[str]) -> None:
    cases: list[dict[str, Any]] = [
        {"logStreamNames": [f"s{i}" for i in range(101)]},
        {"logStreamNames": three_streams, "logStreamNamePrefix": "streams-"},
        {"limit": 10_001},
        {"nextToken": "bad"},
    ]
    for case in cases:
        with pytest.raises(ClientError) as raised:
            logs.filter_log_events(logGroupName=LOG_GROUP, **case)
        assert raised.value.response["Error"]["Code"] == "InvalidParameterException", case
    with pytest.raises(ClientError) as raised:
        logs.filter_log_events(logGroupName="/no/such/group")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
