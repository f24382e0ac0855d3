"""The ``deadline`` argument of the operator and the sensor: read, checked, put into the policy.

DAG authors template it, e.g. ``deadline="{{ data_interval_end + macros.timedelta(hours=12) }}"``,
or pass an aware datetime or its ISO-8601 text. After rendering it is read here, checked (an aware
moment; in the future when the task starts; consistent with the policy's deadline-aware fields)
before any AWS call, and it replaces the policy's deadline for that run: the policy stays
immutable, :func:`task_policy` derives a new one, which the runner carries to every mode (the
worker, the trigger's ``switch`` JSON, a sensor's pokes).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from airflow_spot_provider.exceptions import SpotRequestValidationError, Violation
from airflow_spot_provider.request_input import is_static
from airflow_spot_provider.retry import SpotRetryPolicy, read_deadline

__all__ = ["check_static", "read_deadline", "task_policy"]

_FIELD = "deadline"


def task_policy(
    policy: SpotRetryPolicy, value: Any, *, now: datetime | None = None
) -> SpotRetryPolicy:
    """The policy of this run: ``policy`` with the task's deadline, when one is given.

    :param policy: the task's ``spot_retry_policy`` (not modified).
    :param value: the rendered ``deadline`` argument (see :func:`read_deadline`).
    :param now: the task's start, when the deadline must still be ahead of it; None skips that
        rule (DAG parse time, a resumed or retried task: the policy then decides on a deadline
        that has passed meanwhile).
    :raises SpotRequestValidationError: naming ``deadline``, the value and the rule.
    """
    deadline = read_deadline(value, _FIELD)
    if deadline is None:
        if policy.deadline_aware and policy.deadline is None:
            rule = (
                "is required: the spot_retry_policy is deadline_aware and has no deadline"
                " of its own"
            )
            raise SpotRequestValidationError([Violation(_FIELD, value, rule)])
        return policy
    if now is not None and deadline <= now:
        rule = f"must be after the task's start ({now.isoformat()}); it is {deadline.isoformat()}"
        raise SpotRequestValidationError([Violation(_FIELD, value, rule)])
    return replace(policy, deadline=deadline)


def check_static(policy: SpotRetryPolicy, value: Any) -> None:
    """At DAG parse time: check ``value`` if it is already known (no template, no XComArg).

    :param policy: the task's ``spot_retry_policy``.
    :param value: the ``deadline`` argument as given.
    :raises SpotRequestValidationError: naming ``deadline``, the value and the rule.
    """
    # A datetime (or None) is known; so is any other plain value (a number is refused here).
    if value is None or isinstance(value, datetime) or is_static(value):
        task_policy(policy, value)
