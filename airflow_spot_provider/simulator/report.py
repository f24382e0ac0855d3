"""The simulator's results: one row per policy and market, as a table, JSON and a plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow_spot_provider.simulator.engine import ChainResult

__all__ = ["PlotUnavailableError", "Row", "format_table", "plot_rows", "summarize", "to_json"]


@dataclass(frozen=True)
class Row:
    """The figures of one policy on one market (the ``--json`` schema, one object per row).

    :param policy: the policy's name.
    :param band: the market: a Spot Instance Advisor band or a trace column.
    :param jobs: jobs simulated.
    :param deadlines_met: fraction of jobs whose model was there by the deadline.
    :param cost_vs_on_demand: cost as a fraction of running every job on-demand.
    :param p50_hours: median time from start to model (None: more than half never finished).
    :param p95_hours: 95th percentile of the same (None: more than 5% never finished).
    :param interruptions_per_job: spot interruptions per job.
    :param work_lost_hours_per_job: training hours lost to interruptions per job.
    :param on_demand_hours_per_job: on-demand instance hours per job (what keeping the deadline
        buys: the switches of the deadline-aware policy, the fallback's last attempts).
    """

    policy: str
    band: str
    jobs: int
    deadlines_met: float
    cost_vs_on_demand: float
    p50_hours: float | None
    p95_hours: float | None
    interruptions_per_job: float
    work_lost_hours_per_job: float
    on_demand_hours_per_job: float


def _percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None when it falls on a job that never finished."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    value = sorted_values[rank - 1]
    return None if math.isinf(value) else round(value / 3600.0, 3)


def summarize(policy: str, band: str, results: Sequence[ChainResult], on_demand_cost: float) -> Row:
    """Aggregate the chains of one policy on one market.

    :param policy: the policy's name.
    :param band: the market's name.
    :param results: one result per job.
    :param on_demand_cost: USD of one uninterrupted on-demand run of the job.
    """
    jobs = len(results)
    finished = sorted(r.finished_seconds for r in results)
    return Row(
        policy=policy,
        band=band,
        jobs=jobs,
        deadlines_met=round(sum(r.met_deadline for r in results) / jobs, 4),
        cost_vs_on_demand=round(sum(r.cost for r in results) / (jobs * on_demand_cost), 4),
        p50_hours=_percentile(finished, 0.5),
        p95_hours=_percentile(finished, 0.95),
        interruptions_per_job=round(sum(r.interruptions for r in results) / jobs, 4),
        work_lost_hours_per_job=round(sum(r.lost_seconds for r in results) / jobs / 3600.0, 4),
        on_demand_hours_per_job=round(sum(r.on_demand_seconds for r in results) / jobs / 3600.0, 4),
    )


def to_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The rows as plain JSON objects (the ``--json`` output).

    :param rows: the rows.
    """
    return [asdict(r) for r in rows]


def _hours(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


_HEAD = (
    "band",
    "policy",
    "cost vs OD",
    "deadlines met",
    "p50 h",
    "p95 h",
    "interr./job",
    "lost h/job",
    "OD h/job",
)


def format_table(rows: Sequence[Row]) -> str:
    """A fixed-width text table, grouped by band (also valid Markdown).

    :param rows: the rows.
    """
    body = [
        [
            r.band,
            r.policy,
            f"{r.cost_vs_on_demand:.1%}",
            f"{r.deadlines_met:.1%}",
            _hours(r.p50_hours),
            _hours(r.p95_hours),
            f"{r.interruptions_per_job:.2f}",
            f"{r.work_lost_hours_per_job:.2f}",
            f"{r.on_demand_hours_per_job:.2f}",
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in (_HEAD, *body)) for i in range(len(_HEAD))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|" + "|".join("-" * (w + 1) + (":" if i >= 2 else "-") for i, w in enumerate(widths)) + "|"
    )
    return "\n".join([line(_HEAD), rule, *(line(b) for b in body)])


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed; the message says how to install it."""


def plot_rows(rows: Sequence[Row], path: Path | str) -> None:
    """Plot cost against deadline misses, one panel per band, one point per policy (PNG).

    :param rows: the rows.
    :param path: the PNG to write.
    :raises PlotUnavailableError: matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise PlotUnavailableError(
            "--plot needs matplotlib: pip install 'airflow-spot-provider[plot]'"
        ) from err
    bands = list(dict.fromkeys(r.band for r in rows))
    policies = list(dict.fromkeys(r.policy for r in rows))
    fig, axes = plt.subplots(
        1, len(bands), figsize=(3.2 * len(bands), 3.6), sharey=True, squeeze=False
    )
    markers = "osD^v*Px"
    for axis, band in zip(axes[0], bands, strict=True):
        for index, policy in enumerate(policies):
            row = next((r for r in rows if r.band == band and r.policy == policy), None)
            if row is None:
                continue
            axis.scatter(
                100 * (1 - row.deadlines_met),
                100 * row.cost_vs_on_demand,
                marker=markers[index % len(markers)],
                label=policy,
                s=40,
            )
        axis.set_title(f"band {band}")
        axis.set_xlabel("deadlines missed (%)")
        axis.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("cost vs on-demand (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(policies), fontsize="small")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
