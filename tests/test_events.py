"""Trigger events, the state a deferred task carries, and task results: JSON round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_spot_provider.events import (
    BackoffEnded,
    ChainState,
    ChainSummary,
    FollowFailed,
    JobEnded,
    LaunchResult,
    event_from_json,
)
from airflow_spot_provider.lifecycle import JobOutcome, SpotJobReport, json_safe
from airflow_spot_provider.next_action import Submit
from airflow_spot_provider.position import Position, StreamMark
from tests.seed_lifecycles import describe_response


def through_json(data: dict[str, Any]) -> Any:
    """What crosses a deferral, an event, an XCom or a Variable: JSON text."""
    return json.loads(json.dumps(data))


def test_job_ended_round_trip() -> None:
    describe = json_safe(describe_response("one-interruption"))
    position = Position("seed-one-interruption", 9, streams={"s": StreamMark("t", 4)})
    state = ChainState(positions={"seed-one-interruption": position}).to_json()
    event = JobEnded("seed-one-interruption", describe, position, state)
    again = event_from_json(through_json(event.to_json()))
    assert again == event
    assert isinstance(again, JobEnded) and ChainState.from_json(again.state).positions == {
        "seed-one-interruption": position
    }
    assert isinstance(again, JobEnded) and again.report.outcome is JobOutcome.COMPLETED


def test_follow_failed_round_trip_and_junk_refused() -> None:
    event = FollowFailed("j-a1", "AccessDeniedException", "denied", {"latest": "j-a1"})
    assert event_from_json(through_json(event.to_json())) == event
    waited = BackoffEnded(ChainState(latest="j-a2").to_json())
    assert event_from_json(through_json(waited.to_json())) == waited
    with pytest.raises(ValueError, match="not a spot training trigger event"):
        event_from_json({"status": "something else"})


def test_chain_state_round_trip_with_a_pending_submission() -> None:
    state = ChainState(
        positions={"j-a1": Position("j-a1", 3, ended=True)},
        ended={"j-a1": json_safe(describe_response("never-launched"))},
        pending=Submit(
            "j-a2", 2, {"TrainingJobName": "j-a2"}, datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
        ),
        latest="j-a1",
        checkpoint_costs={"j-a1": 1.25},
    )
    again = ChainState.from_json(through_json(state.to_json()))
    assert again == state
    assert ChainState.from_json(None) == ChainState()


def test_results_name_the_first_job_as_job_name_and_the_latest_apart() -> None:
    first = SpotJobReport.from_describe(describe_response("never-launched"))
    last = SpotJobReport.from_describe(describe_response("no-interruption"))
    summary = ChainSummary.of("seed-never-launched", [first, last])
    data = through_json(summary.to_json())
    assert data["job_name"] == data["first_job_name"] == "seed-never-launched"
    assert data["latest_job_name"] == "seed-no-interruption"
    assert data["outcome"] == "COMPLETED"
    assert ChainSummary.from_json(data) == summary
    launch = LaunchResult("j-a1", "j-a2", "arn:j-a2", None)
    launched = through_json(launch.to_json())
    assert launched["job_name"] == "j-a1"
    assert LaunchResult.from_json(launched) == launch
