"""Progress checks: the listing against the embedded backend's S3, the findings on real jobs of
the backend (empty prefix, stale checkpoints, on-demand job), and the pure logic exhaustively."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.testing import (
    fast_config,
    script_request,
    synthetic_request,
    wait_for_job,
    wait_for_secondary,
)
from airflow_spot_provider.lifecycle import (
    JobOutcome,
    SecondaryStatus,
    SpotJobReport,
    TrainingJobStatus,
    Transition,
)
from airflow_spot_provider.progress import (
    CheckpointObject,
    FindingKind,
    ProgressRequirement,
    apply_requirement,
    attempt_findings,
    checkpoints_stale,
    list_checkpoint_objects,
    no_checkpoints,
    ran_on_demand,
    split_s3_uri,
    trained_seconds,
)
from airflow_spot_provider.retry import GiveUp, RequestChanges, Resubmit

BUCKET = "progress-tests"
TRAINERS = Path(__file__).parent / "verify" / "trainers"
# An instance type no other test of this module's backend uses: its capacity is taken away.
GAP_TYPE = "ml.c5.2xlarge"
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
_S = SecondaryStatus


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpotEmulator]:
    """A backend of this module's own (a capacity gap must not touch other tests)."""
    with SpotEmulator(config=fast_config(tmp_path_factory.mktemp("progress"))) as running:
        running.boto3_client("s3").create_bucket(Bucket=BUCKET)
        yield running


@pytest.fixture(scope="module")
def s3(emulator: SpotEmulator) -> Any:
    """A boto3 S3 client of the backend."""
    return emulator.boto3_client("s3")


@pytest.fixture(scope="module")
def sm(emulator: SpotEmulator) -> Any:
    """A boto3 SageMaker client of the backend."""
    return emulator.boto3_client("sagemaker")


# -- the listing, on the backend's S3 -------------------------------------------------------------


def test_listing_is_paginated_and_skips_folder_markers(s3: Any) -> None:
    for index in range(5):
        s3.put_object(Bucket=BUCKET, Key=f"ckpt/a/step-{index}.json", Body=b"x" * (index + 1))
    s3.put_object(Bucket=BUCKET, Key="ckpt/a/", Body=b"")  # a console "folder"
    s3.put_object(Bucket=BUCKET, Key="ckpt/ab/other.json", Body=b"not under ckpt/a/")
    calls: list[dict[str, Any]] = []
    s3.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda params, **_: calls.append(params)
    )

    objects = list_checkpoint_objects(s3, f"s3://{BUCKET}/ckpt/a", page_size=2)

    assert [o.key for o in objects] == [f"ckpt/a/step-{i}.json" for i in range(5)]
    assert [o.size for o in objects] == [1, 2, 3, 4, 5]
    assert all(o.last_modified.tzinfo is not None for o in objects)
    assert len({o.etag for o in objects}) == 5 and all(o.etag.startswith('"') for o in objects)
    assert len(calls) == 3  # 6 keys (marker included) in pages of 2


def test_empty_prefix_is_a_no_checkpoints_finding(s3: Any) -> None:
    uri = f"s3://{BUCKET}/never-written/"
    objects = list_checkpoint_objects(s3, uri)
    assert objects == []
    finding = no_checkpoints(objects, uri, next_attempt=2)
    assert finding is not None and finding.kind is FindingKind.NO_CHECKPOINTS
    assert finding.message == (
        f"no checkpoint objects under {uri}: attempt 2 would start from scratch"
    )


# -- findings on real jobs of the backend ---------------------------------------------------------


def test_stale_checkpoints_of_an_interrupted_attempt(
    emulator: SpotEmulator, sm: Any, s3: Any
) -> None:
    """A trainer that saves only at its end, interrupted, then no capacity until MaxWait: the
    prefix holds only an object from before the attempt."""
    name = "stale-1"
    uri = f"s3://{BUCKET}/checkpoints/{name}/"
    s3.put_object(Bucket=BUCKET, Key=f"checkpoints/{name}/old.bin", Body=b"from an older chain")
    request = script_request(name, BUCKET, TRAINERS, "checkpoints_at_end.py", total_steps=200)
    request["ResourceConfig"]["InstanceType"] = GAP_TYPE
    request["CheckpointConfig"] = {"S3Uri": uri}
    request["StoppingCondition"] = {"MaxRuntimeInSeconds": 5, "MaxWaitTimeInSeconds": 6}
    emulator.admin.load_scenario([{"interrupt": {"job": name, "at_training_second": 1.5}}])
    sm.create_training_job(**request)
    try:
        # A training job keeps its instances; once interrupted it finds no capacity again.
        wait_for_secondary(sm, name, _S.TRAINING)
        emulator.admin.set_capacity(GAP_TYPE, False)
        final = wait_for_job(sm, name, timeout=60)
    finally:
        emulator.admin.set_capacity(GAP_TYPE, None)
    report = SpotJobReport.from_describe(final)
    assert report.outcome is JobOutcome.MAX_WAIT_EXCEEDED and report.interruptions == 1

    objects = list_checkpoint_objects(s3, uri)
    assert [o.key for o in objects] == [f"checkpoints/{name}/old.bin"]
    finding = checkpoints_stale(objects, report, attempt=1, checkpoint_interval_seconds=1.0)
    assert finding is not None and finding.kind is FindingKind.CHECKPOINTS_STALE
    assert finding.message.startswith(f"checkpoints did not advance during attempt 1 ({name})")
    # With a longer interval than it trained, the same listing is no finding.
    assert checkpoints_stale(objects, report, 1, trained_seconds(report) + 1) is None


def test_on_demand_job_asked_as_spot_is_flagged(sm: Any) -> None:
    sm.create_training_job(**synthetic_request("od-1", BUCKET, spot=False, train_seconds=0.2))
    sm.create_training_job(**synthetic_request("spot-1", BUCKET, spot=True, train_seconds=0.2))
    on_demand = SpotJobReport.from_describe(wait_for_job(sm, "od-1"))
    spot = SpotJobReport.from_describe(wait_for_job(sm, "spot-1"))
    assert on_demand.managed_spot is False and spot.managed_spot is True

    finding = ran_on_demand(on_demand, attempt=3, requested_spot=True)
    assert finding is not None and finding.kind is FindingKind.RAN_ON_DEMAND
    assert finding.attempt == 3 and finding.job_name == "od-1"
    assert ran_on_demand(spot, 1, requested_spot=True) is None
    assert ran_on_demand(on_demand, 1, requested_spot=False) is None  # an on-demand fallback


# -- the pure logic -------------------------------------------------------------------------------


def _report(
    statuses: list[tuple[SecondaryStatus, float]], *, spot: bool = True, name: str = "job-a1"
) -> SpotJobReport:
    transitions = tuple(Transition(s, T0 + timedelta(seconds=t)) for s, t in statuses)
    last = statuses[-1][0]
    return SpotJobReport(
        job_name=name,
        status=TrainingJobStatus.STOPPED if last.is_terminal else TrainingJobStatus.IN_PROGRESS,
        secondary_status=last,
        outcome=JobOutcome.MAX_WAIT_EXCEEDED if last.is_terminal else None,
        transitions=transitions,
        managed_spot=spot,
        end_time=T0 + timedelta(seconds=statuses[-1][1]),
    )


INTERRUPTED_ONCE = [
    (_S.STARTING, 0),
    (_S.DOWNLOADING, 10),
    (_S.TRAINING, 20),
    (_S.INTERRUPTED, 320),
    (_S.STARTING, 330),
    (_S.DOWNLOADING, 340),
    (_S.TRAINING, 350),
    (_S.STOPPING, 650),
    (_S.MAX_WAIT_TIME_EXCEEDED, 660),
]


def _object(seconds: float, key: str = "ckpt/a.pt") -> CheckpointObject:
    return CheckpointObject(key, 10, T0 + timedelta(seconds=seconds))


def test_trained_seconds_sums_training_phases() -> None:
    assert trained_seconds(_report(INTERRUPTED_ONCE)) == 600.0
    assert trained_seconds(_report([(_S.STARTING, 0)])) == 0.0


@pytest.mark.parametrize(
    ("newest", "interval", "stale"),
    [
        (None, 60, True),  # nothing at all
        (19, 60, True),  # older than the first Training
        (20, 60, False),  # written as Training began
        (400, 60, False),  # written during the attempt
        (None, 600, False),  # trained no longer than one interval
        (None, 599.9, True),
    ],
)
def test_stale_decision(newest: float | None, interval: float, stale: bool) -> None:
    objects = [] if newest is None else [_object(newest - 100, "old"), _object(newest)]
    finding = checkpoints_stale(objects, _report(INTERRUPTED_ONCE), 2, interval)
    assert (finding is not None) is stale
    if finding is not None:
        assert finding.message.startswith("checkpoints did not advance during attempt 2 (job-a1)")


def test_stale_needs_an_interruption_and_a_training() -> None:
    uninterrupted = [(_S.STARTING, 0), (_S.DOWNLOADING, 1), (_S.TRAINING, 2), (_S.STOPPING, 900)]
    never_trained = [(_S.STARTING, 0), (_S.STOPPING, 900), (_S.MAX_WAIT_TIME_EXCEEDED, 901)]
    assert checkpoints_stale([], _report(uninterrupted), 1, 1) is None
    assert checkpoints_stale([], _report(never_trained), 1, 1) is None
    with pytest.raises(ValueError, match=r"checkpoint_interval_seconds=0: must be > 0"):
        checkpoints_stale([], _report(INTERRUPTED_ONCE), 1, 0)


def test_attempt_findings_checks_every_attempt_for_on_demand_and_the_last_for_staleness() -> None:
    history = [
        _report(INTERRUPTED_ONCE, spot=False, name="a1"),
        _report(INTERRUPTED_ONCE, spot=True, name="a2"),
    ]
    found = attempt_findings([], history, [True, True], checkpoint_interval_seconds=60)
    assert [(f.kind, f.job_name) for f in found] == [
        (FindingKind.RAN_ON_DEMAND, "a1"),
        (FindingKind.CHECKPOINTS_STALE, "a2"),
    ]
    assert [f.to_json()["kind"] for f in found] == ["ran_on_demand", "checkpoints_stale"]
    with pytest.raises(ValueError, match=r"requested_spot has 1 entries for 2 attempt"):
        attempt_findings([], history, [True], 60)


RESUBMIT = Resubmit(attempt=2, delay_seconds=0, changes=RequestChanges(), reason="MaxWait")
GIVE_UP = GiveUp(reason="budget used", outcome=JobOutcome.MAX_WAIT_EXCEEDED)


@pytest.mark.parametrize(
    ("decision", "empty", "requirement"),
    list(itertools.product([RESUBMIT, GIVE_UP], [True, False], list(ProgressRequirement))),
)
def test_apply_requirement_every_combination(
    decision: Resubmit | GiveUp, empty: bool, requirement: ProgressRequirement
) -> None:
    uri = "s3://b/ckpt/"
    findings = [f for f in [no_checkpoints([] if empty else [_object(1)], uri, 2)] if f]
    result = apply_requirement(decision, findings, requirement, JobOutcome.MAX_WAIT_EXCEEDED)
    gives_up = empty and requirement is ProgressRequirement.GIVE_UP and decision is RESUBMIT
    if gives_up:
        assert isinstance(result, GiveUp)
        assert result.outcome is JobOutcome.MAX_WAIT_EXCEEDED
        assert "would start from scratch" in result.reason
        assert "require_checkpoint_progress=give_up" in result.reason
    else:
        assert result is decision


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://b/ckpt/run-1/", ("b", "ckpt/run-1/")),
        ("s3://b", ("b", "")),
        ("https://b.s3.us-east-1.amazonaws.com/ckpt", ("b", "ckpt")),
    ],
)
def test_split_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert split_s3_uri(uri) == expected


def test_split_s3_uri_refuses_other_uris() -> None:
    with pytest.raises(ValueError, match=r"checkpoint URI 'gs://b/x': must be s3://bucket/prefix"):
        split_s3_uri("gs://b/x")


def test_object_from_listing_needs_last_modified() -> None:
    item = {"Key": "k", "Size": 3, "LastModified": T0}
    assert CheckpointObject.from_listing(item) == CheckpointObject("k", 3, T0)
    tagged = CheckpointObject.from_listing({**item, "ETag": '"abc"'})
    assert tagged.etag == '"abc"'
    with pytest.raises(ValueError, match="has no LastModified"):
        CheckpointObject.from_listing({"Key": "k"})
