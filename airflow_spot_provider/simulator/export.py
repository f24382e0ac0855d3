"""Export one simulated job's market events as an embedded-backend scenario, with its decisions.

The scenario (``spot-emulator --scenario FILE``, format in :mod:`emulator.scenario`) replays the
job's capacity gaps as ``no_capacity`` windows and its interruptions as ``interrupt`` events at
the training second of the run they hit, all scaled by ``time_scale`` (0.001: an hour takes
3.6 s). Running the same policy through the follower against that backend should then take the
decisions printed here, at the scaled times.

The backend's ``no_capacity`` takes spot capacity only (on-demand capacity is a pool of its own,
as the simulator assumes), so the windows are replayed as they are, past an on-demand switch too.
``tests/e2e/test_equivalence.py`` runs exported scenarios through the real operator and compares
its decisions with the simulator's.

Fidelity gaps: the backend interrupts only in the Training phase (an interruption the simulator
places in Downloading fires at training second 0); the backend's start-up, checkpoint and upload
times are those of its runner, not the job model's, so the scaled times agree only as closely as
the training script's pace follows the job model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_spot_provider.simulator.engine import ChainResult
from airflow_spot_provider.simulator.markets import Availability

__all__ = ["backend_scenario", "decision_lines"]


def _gaps(capacity: Availability, until: float) -> list[tuple[float, float]]:
    """The capacity gaps (start, end) that begin before ``until``."""
    capacity.extend(until)
    edges = [c for c in capacity.changes if c < until]
    up, start = capacity.initially, 0.0
    gaps: list[tuple[float, float]] = []
    for edge in edges:
        if not up:
            gaps.append((start, edge))
        up, start = not up, edge
    if not up:
        gaps.append((start, capacity.next_change(start)))
    return gaps


def backend_scenario(
    result: ChainResult,
    capacity: Availability,
    *,
    job_glob: str,
    instance_type: str,
    time_scale: float,
) -> dict[str, Any]:
    """The embedded-backend scenario of one simulated chain.

    :param result: the chain, as the simulator ran it.
    :param capacity: the job's capacity timeline.
    :param job_glob: glob of the chain's job names in the backend; ``{attempt}`` is replaced by
        the attempt number (e.g. ``train-*-a{attempt}``).
    :param instance_type: the instance type whose capacity the gaps take away.
    :param time_scale: backend seconds per simulated second.
    """
    # Past the chain's end, so that a slower run of the same chain meets the same market.
    ends = [t for t in (result.finished_seconds, result.deadline_seconds) if t != float("inf")]
    until = 2 * max(ends, default=86_400.0)
    events: list[dict[str, Any]] = [
        {
            "no_capacity": {
                "instance_type": instance_type,
                "from": round(a * time_scale, 3),
                "until": round(min(b, until) * time_scale, 3),
            }
        }
        for a, b in _gaps(capacity, until)
    ]
    for attempt, start, trained in result.interrupted_runs:
        events.append(
            {
                "interrupt": {
                    "job": job_glob.format(attempt=attempt),
                    "at_training_second": round(trained * time_scale, 3),
                    "attempt": start,
                }
            }
        )
    return {"events": events}


def decision_lines(result: ChainResult, *, time_scale: float) -> Sequence[str]:
    """The chain's decisions, one line each, at simulated and scaled times.

    :param result: the chain.
    :param time_scale: backend seconds per simulated second.
    """
    return [
        f"{d.seconds / 3600:7.2f} h ({d.seconds * time_scale:8.2f} s scaled)  {d.kind:<20}"
        f" {'on-demand' if d.on_demand else 'spot':<9}  rule={d.rule or '-'}"
        for d in result.decisions
    ]
