"""The attempts of a spot training chain, summed up: per-attempt figures, totals, a table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_spot_provider.lifecycle import SpotJobReport, savings_percent


def _total(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def summarize_attempts(history: Sequence[SpotJobReport]) -> dict[str, Any]:
    """Per-attempt figures and totals, plain JSON; seconds are per instance, as SageMaker reports.

    :param history: the reports of every attempt, oldest first.
    """
    attempts = [
        {
            "attempt": number,
            "job_name": r.job_name,
            "outcome": r.outcome.value if r.outcome else None,
            "interruptions": r.interruptions,
            "training_seconds": r.training_seconds,
            "billable_seconds": r.billable_seconds,
            "savings_percent": r.savings_percent,
            "instance_type": r.instance_type,
            "instance_count": r.instance_count,
            "managed_spot": r.managed_spot,
            # For the Spot training view's timeline (airflow_spot_provider.timeline).
            "transitions": [t.to_json() for t in r.transitions],
            "creation_time": r.creation_time.isoformat() if r.creation_time else None,
            "end_time": r.end_time.isoformat() if r.end_time else None,
        }
        for number, r in enumerate(history, start=1)
    ]
    training = _total(r.training_seconds for r in history)
    billable = _total(r.billable_seconds for r in history)
    # An attempt with training time but no billable figure would make any total ratio a lie.
    complete = all(r.billable_seconds is not None for r in history if r.training_seconds)
    totals = {
        "attempts": len(history),
        "interruptions": sum(r.interruptions for r in history),
        "training_seconds": training,
        "billable_seconds": billable,
        "effective_savings_percent": savings_percent(billable, training) if complete else None,
    }
    return {"attempts": attempts, "totals": totals}


def _cell(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}{suffix}"
    return f"{value}{suffix}"


_COLUMNS = ("#", "job name", "outcome", "interruptions", "training s", "billable s", "savings")
_NUMERIC = frozenset({0, 3, 4, 5, 6})


def format_summary_table(summary: Mapping[str, Any]) -> str:
    """A fixed-width text table of :func:`summarize_attempts`' result, for the task log.

    :param summary: the dict made by :func:`summarize_attempts` (possibly through JSON).
    """
    head = [*_COLUMNS, "instance", "spot"]
    rows = [
        [
            _cell(a.get("attempt")),
            _cell(a.get("job_name")),
            _cell(a.get("outcome")),
            _cell(a.get("interruptions")),
            _cell(a.get("training_seconds")),
            _cell(a.get("billable_seconds")),
            _cell(a.get("savings_percent"), "%"),
            f"{a.get('instance_count') or 1} x {_cell(a.get('instance_type'))}",
            _cell(a.get("managed_spot")),
        ]
        for a in summary.get("attempts", ())
    ]
    t = summary.get("totals", {})
    total = [
        "",
        f"total ({_cell(t.get('attempts'))} attempt(s))",
        "",
        _cell(t.get("interruptions")),
        _cell(t.get("training_seconds")),
        _cell(t.get("billable_seconds")),
        _cell(t.get("effective_savings_percent"), "%"),
        "",
        "",
    ]
    widths = [max(len(row[i]) for row in (head, *rows, total)) for i in range(len(head))]

    def line(row: Sequence[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        return "  ".join(
            c.rjust(w) if i in _NUMERIC else c.ljust(w) for i, (c, w) in pairs
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *(line(r) for r in rows), rule, line(total)])
