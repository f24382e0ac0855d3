"""The policies the simulator compares, each a real SpotRetryPolicy (plus the request's mode).

- ``no-resubmission``: one spot attempt, as the Amazon provider runs it;
- ``unbounded-spot``: resubmit on spot after any spot ending, without limit (SkyPilot-like);
- ``fixed-attempts``: this provider's default policy (3 attempts, on MaxWaitTimeExceeded);
- ``last-on-demand``: the default with the last attempt on-demand (Flyte's rule);
- ``deadline-aware``: the deadline-aware policy (Uniform Progress' safety net);
- ``on-demand``: every job on-demand from the start (the reference for cost).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from airflow_spot_provider.retry import RETRYABLE_OUTCOMES, SpotRetryPolicy
from airflow_spot_provider.simulator.jobs import JobModel

__all__ = ["POLICIES", "ComparedPolicy", "policy_names"]


@dataclass(frozen=True)
class ComparedPolicy:
    """One policy of the comparison.

    :param name: its name in the table and the JSON.
    :param spot: whether attempt 1 asks for spot.
    :param make: builds the policy for a job, from the job model and the job's deadline.
    """

    name: str
    spot: bool
    make: Callable[[JobModel, datetime], SpotRetryPolicy]


def _deadline_aware(job: JobModel, deadline: datetime) -> SpotRetryPolicy:
    return SpotRetryPolicy(
        retry_on=RETRYABLE_OUTCOMES,
        max_attempts=20,
        deadline=deadline,
        deadline_aware=True,
        expected_training_seconds=job.training_seconds,
        restart_overhead_seconds=job.restart_overhead_seconds,
        checkpoint_interval_seconds=job.checkpoint_period_seconds,
    )


POLICIES: tuple[ComparedPolicy, ...] = (
    ComparedPolicy("no-resubmission", True, lambda job, deadline: SpotRetryPolicy(max_attempts=1)),
    ComparedPolicy(
        "unbounded-spot",
        True,
        lambda job, deadline: SpotRetryPolicy(retry_on=RETRYABLE_OUTCOMES, max_attempts=1000),
    ),
    ComparedPolicy("fixed-attempts", True, lambda job, deadline: SpotRetryPolicy()),
    ComparedPolicy(
        "last-on-demand", True, lambda job, deadline: SpotRetryPolicy(on_demand_fallback=True)
    ),
    ComparedPolicy("deadline-aware", True, _deadline_aware),
    ComparedPolicy("on-demand", False, lambda job, deadline: SpotRetryPolicy(max_attempts=1)),
)


def policy_names() -> list[str]:
    """The names of the compared policies, in table order."""
    return [p.name for p in POLICIES]
