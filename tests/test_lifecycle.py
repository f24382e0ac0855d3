"""The lifecycle vocabulary against botocore's model and the seed's four lifecycles."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import botocore.session
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_spot_provider import lifecycle
from airflow_spot_provider.lifecycle import (
    SPOT_TRANSITIONS,
    JobOutcome,
    SecondaryStatus,
    SpotJobReport,
    TrainingJobStatus,
    Transition,
    classify_outcome,
    savings_percent,
)
from tests.seed_lifecycles import SEED_SCENARIOS, describe_response


def _model_enum(shape: str) -> set[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return set(model.shape_for(shape).enum)


def test_training_job_status_has_every_api_value() -> None:
    assert {s.value for s in TrainingJobStatus} == _model_enum("TrainingJobStatus")


def test_secondary_status_has_every_api_value() -> None:
    assert {s.value for s in SecondaryStatus} == _model_enum("SecondaryStatus")


@pytest.mark.parametrize("status", list(TrainingJobStatus))
def test_primary_groupings_partition(status: TrainingJobStatus) -> None:
    # Every status is either terminal or may still bill, never both.
    assert status.is_terminal != status.is_running
    assert status.is_known


@pytest.mark.parametrize("status", list(SecondaryStatus))
def test_secondary_values_round_trip(status: SecondaryStatus) -> None:
    assert SecondaryStatus(status.value) is status
    assert str(status) == status.value


def test_unknown_status_is_not_terminal_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    lifecycle._seen_unknown.discard(("SecondaryStatus", "Hibernating"))
    with caplog.at_level(logging.WARNING, logger=lifecycle.__name__):
        first = SecondaryStatus("Hibernating")
        second = SecondaryStatus("Hibernating")
    assert first == "Hibernating" and second.value == "Hibernating"
    assert not first.is_known
    assert not first.is_terminal and not first.is_billable
    assert sum("Hibernating" in r.message for r in caplog.records) == 1
    primary = TrainingJobStatus("Archived")
    assert not primary.is_terminal
    assert classify_outcome(primary, first) is None


def test_empty_or_non_string_status_is_refused() -> None:
    with pytest.raises(ValueError):
        SecondaryStatus("")
    with pytest.raises(ValueError):
        TrainingJobStatus(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("primary", "secondary", "reason", "expected"),
    [
        ("Completed", "Completed", None, JobOutcome.COMPLETED),
        ("Stopped", "MaxWaitTimeExceeded", None, JobOutcome.MAX_WAIT_EXCEEDED),
        ("Stopped", "MaxRuntimeExceeded", None, JobOutcome.MAX_RUNTIME_EXCEEDED),
        ("Stopped", "Stopped", None, JobOutcome.STOPPED),
        ("Stopped", None, None, JobOutcome.STOPPED),
        ("Failed", "Failed", "CapacityError: Unable to provision", JobOutcome.CAPACITY_ERROR),
        ("Failed", "Failed", "AlgorithmError: exit 1", JobOutcome.FAILED),
        ("Failed", "Failed", None, JobOutcome.FAILED),
        # Message text is not a decision input: a capacity word elsewhere changes nothing.
        ("Failed", "Failed", "AlgorithmError: CapacityError inside", JobOutcome.FAILED),
        ("Deleting", "Completed", None, JobOutcome.COMPLETED),
        ("Deleting", "MaxWaitTimeExceeded", None, JobOutcome.MAX_WAIT_EXCEEDED),
        ("Deleting", "Failed", None, JobOutcome.FAILED),
        ("InProgress", "Training", None, None),
        ("InProgress", "Interrupted", None, None),
        ("Stopping", "Stopping", None, None),
    ],
)
def test_classify_outcome(
    primary: str, secondary: str | None, reason: str | None, expected: JobOutcome | None
) -> None:
    assert classify_outcome(primary, secondary, reason) is expected


def test_every_outcome_is_reachable() -> None:
    reached = {
        classify_outcome(p, s, r)
        for p in TrainingJobStatus
        for s in SecondaryStatus
        for r in (None, "CapacityError: x")
    }
    assert set(JobOutcome) <= reached
    assert [o for o in JobOutcome if o.is_success] == [JobOutcome.COMPLETED]


@pytest.mark.parametrize(
    ("scenario", "interruptions", "outcome"),
    [
        ("no-interruption", 0, JobOutcome.COMPLETED),
        ("one-interruption", 1, JobOutcome.COMPLETED),
        ("two-interruptions-max-wait", 2, JobOutcome.MAX_WAIT_EXCEEDED),
        ("never-launched", 0, JobOutcome.MAX_WAIT_EXCEEDED),
    ],
)
def test_seed_lifecycles(scenario: str, interruptions: int, outcome: JobOutcome) -> None:
    report = SpotJobReport.from_describe(describe_response(scenario))
    assert report.interruptions == interruptions
    assert report.outcome is outcome
    assert report.is_terminal
    statuses = [t.status for t in report.transitions]
    assert tuple(statuses) == SEED_SCENARIOS[scenario][1]
    # Every move of the guide's lifecycles is a legal one in the vocabulary.
    for before, after in pairwise(statuses):
        assert after in SPOT_TRANSITIONS[before], (before, after)


def test_second_interruption_goes_straight_to_downloading() -> None:
    statuses = [
        t.status
        for t in SpotJobReport.from_describe(
            describe_response("two-interruptions-max-wait")
        ).transitions
    ]
    second = [i for i, s in enumerate(statuses) if s is SecondaryStatus.INTERRUPTED][1]
    assert statuses[second + 1] is SecondaryStatus.DOWNLOADING


def test_seed_savings_example() -> None:
    assert savings_percent(100, 500) == 80.0
    report = SpotJobReport.from_describe(describe_response("no-interruption"))
    assert report.savings_percent == 80.0


@pytest.mark.parametrize(("billable", "training"), [(None, 500), (100, None), (100, 0)])
def test_savings_none_without_figures(billable: int | None, training: int | None) -> None:
    assert savings_percent(billable, training) is None


def test_never_launched_has_no_figures() -> None:
    report = SpotJobReport.from_describe(describe_response("never-launched"))
    assert report.savings_percent is None
    assert report.training_seconds is None
    assert report.cluster_billable_seconds is None


def test_cluster_billable_seconds_multiplies_instances() -> None:
    response = describe_response("no-interruption")
    response["ResourceConfig"]["InstanceCount"] = 4
    report = SpotJobReport.from_describe(response)
    assert report.cluster_billable_seconds == 400
    assert report.savings_percent == 80.0


def test_report_reads_epoch_seconds_and_iso() -> None:
    response = describe_response("one-interruption")
    for item in response["SecondaryStatusTransitions"]:
        item["StartTime"] = item["StartTime"].timestamp()
    response["CreationTime"] = "2026-01-01T00:00:00"
    report = SpotJobReport.from_describe(response)
    assert report.transitions[0].start == datetime(2026, 1, 1, tzinfo=UTC)
    assert report.creation_time == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("scenario", list(SEED_SCENARIOS))
def test_report_json_round_trip(scenario: str) -> None:
    report = SpotJobReport.from_describe(describe_response(scenario))
    encoded = json.dumps(report.to_json())
    assert "datetime" not in encoded  # ISO strings, never repr()
    back = SpotJobReport.from_json(json.loads(encoded))
    assert back == report
    assert back.to_json() == report.to_json()


_times = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(
    statuses=st.lists(st.sampled_from(list(SecondaryStatus)), max_size=12),
    primary=st.sampled_from(list(TrainingJobStatus)),
    training=st.none() | st.integers(1, 10**7),
    billable=st.none() | st.integers(1, 10**7),
    count=st.integers(1, 100),
    start=_times,
    message=st.text(max_size=40),
)
def test_report_round_trip_property(
    statuses: list[SecondaryStatus],
    primary: TrainingJobStatus,
    training: int | None,
    billable: int | None,
    count: int,
    start: datetime | None,
    message: str,
) -> None:
    transitions = tuple(
        Transition(s, start, start + timedelta(seconds=1) if start else None, message)
        for s in statuses
    )
    report = SpotJobReport(
        job_name="job-1",
        status=primary,
        secondary_status=statuses[-1] if statuses else None,
        outcome=classify_outcome(primary, statuses[-1] if statuses else None),
        transitions=transitions,
        training_seconds=training,
        billable_seconds=billable,
        instance_count=count,
        creation_time=start,
    )
    back = SpotJobReport.from_json(json.loads(json.dumps(report.to_json())))
    assert back == report
    assert back.interruptions == statuses.count(SecondaryStatus.INTERRUPTED)
