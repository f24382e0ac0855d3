"""Tests of the checkpoint advice and the summary's advice and decisions blocks."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_spot_provider.economics import (
    DEFAULT_CHECKPOINT_COST_SECONDS,
    checkpoint_advice,
    checkpoint_cost,
    decision_entry,
    expected_work_lost_seconds,
    measured_checkpoint_cost,
    summarize_with_advice,
    young_daly_interval_seconds,
)
from airflow_spot_provider.exceptions import SpotRequestValidationError
from airflow_spot_provider.lifecycle import SecondaryStatus
from airflow_spot_provider.progress import CheckpointObject
from airflow_spot_provider.retry import RETRYABLE_OUTCOMES, SpotRetryPolicy, SwitchToOnDemand
from airflow_spot_provider.summary import summarize_attempts
from tests.spot_reports import T0, job

S = SecondaryStatus


def test_young_daly() -> None:
    # C = 60 s, M = 4 h: sqrt(2 * 60 * 14400) = 1314.5 s, about 22 minutes.
    assert young_daly_interval_seconds(60, 4 * 3600) == pytest.approx(1314.53, abs=0.01)
    assert expected_work_lost_seconds(1800, 300) == 1200
    for bad in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="must be a finite number > 0"):
            young_daly_interval_seconds(bad, 100)


@given(
    cost=st.floats(min_value=1, max_value=3600),
    mtbi=st.floats(min_value=60, max_value=1e7),
    factor=st.floats(min_value=0.2, max_value=5),
)
def test_young_daly_minimises_the_first_order_waste(
    cost: float, mtbi: float, factor: float
) -> None:
    # Waste per second of work ~ C / T + T / (2 M): the Young interval is its minimum.
    def waste(interval: float) -> float:
        return cost / interval + interval / (2 * mtbi)

    best = young_daly_interval_seconds(cost, mtbi)
    assert waste(best) <= waste(best * factor) * (1 + 1e-9)


TWO_INTERRUPTIONS = job(
    "train-a1",
    [
        (S.STARTING, 0),
        (S.DOWNLOADING, 0),
        (S.TRAINING, 300),
        (S.INTERRUPTED, 7200),
        (S.DOWNLOADING, 9000),
        (S.TRAINING, 9300),
        (S.INTERRUPTED, 16200),
        (S.DOWNLOADING, 18000),
        (S.TRAINING, 18300),
        (S.UPLOADING, 21600),
        (S.COMPLETED, 21600),
    ],
    status="Completed",
    ended=21600,
    TrainingTimeInSeconds=21600,
    BillableTimeInSeconds=6480,
)


def test_advice_from_observed_interruptions() -> None:
    advice = checkpoint_advice(
        [TWO_INTERRUPTIONS], given_cost_seconds=60, checkpoint_interval_seconds=1800
    )
    held = 7200 + 7200 + 3600  # the three runs on instances
    assert advice["interruptions"] == 2
    assert advice["running_seconds"] == held
    assert advice["mean_seconds_between_interruptions"] == held / 2
    assert advice["young_daly_interval_seconds"] == pytest.approx(
        math.sqrt(2 * 60 * held / 2), abs=0.1
    )
    assert advice["expected_work_lost_seconds_per_interruption"] == 1800 / 2 + 300
    assert "checkpoint every 17 min" in advice["advice"]


def test_no_interruption_no_interval() -> None:
    quiet = job(
        "train-a1",
        [(S.STARTING, 0), (S.DOWNLOADING, 0), (S.TRAINING, 300), (S.COMPLETED, 3600)],
        status="Completed",
        ended=3600,
    )
    advice = checkpoint_advice([quiet], given_cost_seconds=60)
    assert advice["young_daly_interval_seconds"] is None
    assert "no interruption observed" in advice["advice"]


def test_summary_with_advice_and_decisions_is_plain_json() -> None:
    policy = SpotRetryPolicy(
        retry_on=RETRYABLE_OUTCOMES,
        deadline=T0 + timedelta(hours=12),
        deadline_aware=True,
        expected_training_seconds=8 * 3600,
    )
    first = policy.first_attempt(now=T0, request={"EnableManagedSpotTraining": True})
    waiting = job("train-a1", [(S.STARTING, 0)])
    switch = policy.decide_while_waiting(
        [], waiting, now=T0 + timedelta(hours=4), last_request={"EnableManagedSpotTraining": True}
    )
    assert isinstance(switch, SwitchToOnDemand)
    summary = summarize_with_advice(
        [TWO_INTERRUPTIONS], given_cost_seconds=60, decisions=[first, switch]
    )
    assert json.loads(json.dumps(summary)) == summary
    base = summarize_attempts([TWO_INTERRUPTIONS])
    assert {k: summary[k] for k in base} == base  # the existing blocks are untouched
    assert summary["decisions"] == [decision_entry(first), decision_entry(switch)]
    assert summary["decisions"][1] | {"reason": ""} == {
        "kind": "switch-to-on-demand",
        "rule": "slack-exhausted",
        "at": (T0 + timedelta(hours=4)).isoformat(),
        "on_demand": True,
        "reason": "",
    }


# --- the checkpoint cost ----------------------------------------------------------------------

STOPPED_IN_TRAINING = job(
    "stopped",
    [
        (S.STARTING, 0),
        (S.DOWNLOADING, 60),
        (S.TRAINING, 120),
        (S.STOPPING, 1000),
        (S.STOPPED, 1100),
    ],
    status="Stopped",
    ended=1100,
)
INTERRUPTED_THEN_WAITING = job(
    "interrupted",
    [
        (S.STARTING, 0),
        (S.TRAINING, 120),
        (S.INTERRUPTED, 1000),
        (S.STARTING, 1010),
        (S.STOPPING, 5000),
        (S.MAX_WAIT_TIME_EXCEEDED, 5010),
    ],
    status="Stopped",
    ended=5010,
)


def objects(*seconds: float) -> list[CheckpointObject]:
    return [
        CheckpointObject(f"ckpt-{i}", 10, T0 + timedelta(seconds=s)) for i, s in enumerate(seconds)
    ]


def test_the_cost_runs_from_sigterm_to_the_newest_checkpoint_object() -> None:
    # SIGTERM comes with Stopping (a stop) or Interrupted right after the last billable phase.
    assert measured_checkpoint_cost(STOPPED_IN_TRAINING, objects(500, 1042.5)) == 42.5
    assert measured_checkpoint_cost(INTERRUPTED_THEN_WAITING, objects(900, 1007)) == 7.0
    # The newest object older than the SIGTERM (the last sync came before it; the backend's
    # Interrupted begins after the notice), later than SIGKILL could allow, or none: no figure.
    assert measured_checkpoint_cost(STOPPED_IN_TRAINING, objects(990)) is None
    assert measured_checkpoint_cost(STOPPED_IN_TRAINING, objects(1000 + 241)) is None
    assert measured_checkpoint_cost(STOPPED_IN_TRAINING, []) is None
    # A run that never held instances, or ended on its own, has no SIGTERM to measure from.
    never = job("never", [(S.STARTING, 0), (S.STOPPING, 50), (S.STOPPED, 60)], status="Stopped")
    assert measured_checkpoint_cost(never, objects(55)) is None
    failed = job("failed", [(S.STARTING, 0), (S.TRAINING, 10), (S.FAILED, 50)], status="Failed")
    assert measured_checkpoint_cost(failed, objects(55)) is None


def test_measured_cost_beats_the_users_figure_which_beats_the_default() -> None:
    assert checkpoint_cost({"a1": 40.0, "a2": 50.0}, 10.0) == (45.0, "measured")
    assert checkpoint_cost({}, 10.0) == (10.0, "given")
    assert checkpoint_cost({}, None) == (DEFAULT_CHECKPOINT_COST_SECONDS, "default")

    def advice(measured: dict[str, float], given: float | None) -> dict[str, Any]:
        return checkpoint_advice(
            [INTERRUPTED_THEN_WAITING], measured=measured, given_cost_seconds=given
        )

    # The advice derives its cost and says where it comes from, as checkpoint_cost does.
    both = advice({"interrupted": 7.0, "earlier": 9.0}, 12.0)
    assert (both["checkpoint_cost_seconds"], both["checkpoint_cost_source"]) == (8.0, "measured")
    assert both["checkpoint_cost_measured"] == {"interrupted": 7.0, "earlier": 9.0}
    assert "with 8 s per checkpoint (measured)" in both["advice"]
    given = advice({}, 12.0)
    assert (given["checkpoint_cost_seconds"], given["checkpoint_cost_source"]) == (12.0, "given")
    assert "with 12 s per checkpoint (given)" in given["advice"]
    default = advice({}, None)
    assert default["checkpoint_cost_seconds"] == DEFAULT_CHECKPOINT_COST_SECONDS
    assert default["checkpoint_cost_source"] == "default"
    assert default["checkpoint_cost_measured"] == {}
    assert SpotRetryPolicy(checkpoint_cost_seconds=12).checkpoint_cost_seconds == 12.0
    assert SpotRetryPolicy(checkpoint_cost_seconds=None).checkpoint_cost_seconds is None
    with pytest.raises(SpotRequestValidationError) as caught:
        SpotRetryPolicy(checkpoint_cost_seconds=0)
    (violation,) = caught.value.violations
    assert str(violation) == (
        "SpotRetryPolicy.checkpoint_cost_seconds=0: must be a finite number >= 0.001 or None"
    )
