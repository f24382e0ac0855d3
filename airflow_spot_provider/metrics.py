"""Metrics of a spot training chain, sent once through Airflow's ``Stats`` when the chain ends.

Names (all under ``spot_training.``; tags ``dag_id`` and ``task_id`` on each, plus the ones
listed). With plain StatsD the tags are dropped unless ``[metrics] statsd_influxdb_enabled`` is
set; Datadog and OpenTelemetry keep them.

=====================================  ========  =================================================
name                                   type      value
=====================================  ========  =================================================
``spot_training.chains``               counter   1 per chain that ended (tag ``outcome``)
``spot_training.attempts``             counter   the chain's attempts (jobs created)
``spot_training.resubmissions``        counter   1 per attempt after the first (tag ``reason``:
                                                 how the attempt before it ended)
``spot_training.interruptions``        counter   spot interruptions over all attempts
``spot_training.max_wait_exceeded``    counter   attempts that SageMaker stopped at MaxWait
``spot_training.max_runtime_exceeded`` counter   attempts that SageMaker stopped at MaxRuntime
``spot_training.training_seconds``     counter   TrainingTimeInSeconds summed over attempts
``spot_training.billable_seconds``     counter   BillableTimeInSeconds summed over attempts
``spot_training.savings_percent``      gauge     the chain's effective savings (when known)
=====================================  ========  =================================================

Seconds are per instance, as SageMaker reports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from airflow_spot_provider.lifecycle import JobOutcome

PREFIX = "spot_training"
CHAINS = f"{PREFIX}.chains"
ATTEMPTS = f"{PREFIX}.attempts"
RESUBMISSIONS = f"{PREFIX}.resubmissions"
INTERRUPTIONS = f"{PREFIX}.interruptions"
MAX_WAIT_EXCEEDED = f"{PREFIX}.max_wait_exceeded"
MAX_RUNTIME_EXCEEDED = f"{PREFIX}.max_runtime_exceeded"
TRAINING_SECONDS = f"{PREFIX}.training_seconds"
BILLABLE_SECONDS = f"{PREFIX}.billable_seconds"
SAVINGS_PERCENT = f"{PREFIX}.savings_percent"

_ENDINGS = {
    JobOutcome.MAX_WAIT_EXCEEDED.value: MAX_WAIT_EXCEEDED,
    JobOutcome.MAX_RUNTIME_EXCEEDED.value: MAX_RUNTIME_EXCEEDED,
}

_SECONDS = ((TRAINING_SECONDS, "training_seconds"), (BILLABLE_SECONDS, "billable_seconds"))


class StatsSink(Protocol):
    """The part of Airflow's ``Stats`` used here."""

    def incr(
        self, stat: str, count: int | None = None, rate: float | None = None, *, tags: Any = None
    ) -> None:
        """Add ``count`` to a counter."""

    def gauge(self, stat: str, value: float, *, tags: Any = None) -> None:
        """Set a gauge."""


def _airflow_stats() -> StatsSink:
    from airflow.sdk.observability.stats import Stats

    stats: StatsSink = Stats()
    return stats


def chain_outcome(result: Mapping[str, Any]) -> str:
    """How the chain ended: its last attempt's outcome, or ``"unknown"``.

    :param result: the task's return value (or :func:`~airflow_spot_provider.summary.
        summarize_attempts` of a chain given up).
    """
    attempts = result.get("attempts") or ()
    last = attempts[-1].get("outcome") if attempts else None
    return str(last or result.get("outcome") or "unknown")


def emit_chain_metrics(
    result: Mapping[str, Any],
    *,
    dag_id: str,
    task_id: str,
    stats: StatsSink | None = None,
) -> None:
    """Send a finished chain's metrics; call once per chain, when it has ended.

    :param result: the task's return value, or :func:`~airflow_spot_provider.summary.
        summarize_attempts` of a chain that was given up (same ``attempts``/``totals`` keys).
    :param dag_id: the task's DAG (tag).
    :param task_id: the task (tag).
    :param stats: where to send; Airflow's ``Stats`` by default.
    """
    sink = stats if stats is not None else _airflow_stats()
    tags = {"dag_id": dag_id, "task_id": task_id}
    attempts = list(result.get("attempts") or ())
    totals = result.get("totals") or {}
    sink.incr(CHAINS, tags={**tags, "outcome": chain_outcome(result)})
    sink.incr(ATTEMPTS, len(attempts), tags=tags)
    for previous in attempts[:-1]:
        sink.incr(RESUBMISSIONS, tags={**tags, "reason": str(previous.get("outcome"))})
    interruptions = sum(int(a.get("interruptions") or 0) for a in attempts)
    if interruptions:
        sink.incr(INTERRUPTIONS, interruptions, tags=tags)
    for attempt in attempts:
        ending = _ENDINGS.get(str(attempt.get("outcome")))
        if ending is not None:
            sink.incr(ending, tags=tags)
    for name, key in _SECONDS:
        if totals.get(key):
            sink.incr(name, int(totals[key]), tags=tags)
    savings = totals.get("effective_savings_percent")
    if savings is not None:
        sink.gauge(SAVINGS_PERCENT, float(savings), tags=tags)
