"""``spot-simulate``: compare spot policies on simulated or replayed spot markets."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from airflow_spot_provider.economics import young_daly_interval_seconds
from airflow_spot_provider.simulator.compare import Scenario, run_job, simulate, sweep_checkpoints
from airflow_spot_provider.simulator.export import backend_scenario, decision_lines
from airflow_spot_provider.simulator.jobs import JobModel, load_prices
from airflow_spot_provider.simulator.markets import (
    BANDS,
    BandMarket,
    Market,
    TraceError,
    load_trace,
)
from airflow_spot_provider.simulator.policies import policy_names
from airflow_spot_provider.simulator.report import (
    PlotUnavailableError,
    format_table,
    plot_rows,
    to_json,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spot-simulate",
        description=(
            "Compare spot retry policies over thousands of simulated jobs per Spot Instance"
            " Advisor band (or a replayed availability trace), running the provider's own policy"
            " and lifecycle code on a virtual clock."
        ),
    )
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per market (1000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the band markets (1)")
    parser.add_argument("--work-hours", type=float, default=8.0, help="training work (8)")
    parser.add_argument(
        "--deadline-factor", type=float, default=1.5, help="deadline in on-demand durations (1.5)"
    )
    parser.add_argument(
        "--checkpoint-minutes", type=float, default=30.0, help="work between checkpoints (30)"
    )
    parser.add_argument(
        "--checkpoint-cost-seconds", type=float, default=60.0, help="time to write one (60)"
    )
    parser.add_argument(
        "--restart-overhead-seconds", type=float, default=300.0, help="per (re)start (300)"
    )
    parser.add_argument("--instance-type", default="ml.p3.2xlarge", help="sets the price")
    parser.add_argument("--prices", help="CSV instance_type,on_demand_per_hour,spot_discount")
    # argparse formats help with %: the bands' names ("<5%") need it doubled.
    names = ", ".join(b.name for b in BANDS).replace("%", "%%")
    parser.add_argument("--bands", help="comma-separated bands to run (all): " + names)
    parser.add_argument("--gap-median-hours", type=float, help="median capacity gap (1.0)")
    parser.add_argument("--gap-sigma", type=float, help="log-normal sigma of the gaps (1.0)")
    parser.add_argument("--trace", help="availability trace CSV to replay instead of the bands")
    parser.add_argument(
        "--policies", help="comma-separated policies (all): " + ", ".join(policy_names())
    )
    parser.add_argument(
        "--sweep-checkpoint-minutes",
        help="comma-separated checkpoint intervals: one run per interval (deadline-aware only)",
    )
    parser.add_argument(
        "--export-scenario",
        metavar="FILE.json",
        help="write job --export-job of the first market as an embedded-backend scenario"
        " (deadline-aware policy) and print its decisions",
    )
    parser.add_argument("--export-job", type=int, default=0, help="the job to export (0)")
    parser.add_argument(
        "--time-scale", type=float, default=0.001, help="backend s per simulated s (0.001)"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="plot cost against deadline misses")
    return parser


def _markets(args: argparse.Namespace) -> tuple[Market, ...]:
    if args.trace:
        return tuple(load_trace(args.trace, jobs=args.jobs))
    bands = BANDS
    if args.bands:
        wanted = [b.strip() for b in args.bands.split(",")]
        unknown = sorted(set(wanted) - {b.name for b in BANDS})
        if unknown:
            raise ValueError(
                f"--bands: unknown {', '.join(unknown)}; known: {', '.join(b.name for b in BANDS)}"
            )
        bands = tuple(b for b in BANDS if b.name in wanted)
    changes = {}
    if args.gap_median_hours is not None:
        changes["gap_median_hours"] = args.gap_median_hours
    if args.gap_sigma is not None:
        changes["gap_sigma"] = args.gap_sigma
    return tuple(replace(b, **changes) for b in bands)


def scenario_from(args: argparse.Namespace) -> Scenario:
    """The scenario the command line describes.

    :param args: the parsed arguments.
    """
    job = JobModel(
        work_hours=args.work_hours,
        deadline_factor=args.deadline_factor,
        checkpoint_interval_seconds=args.checkpoint_minutes * 60.0,
        checkpoint_cost_seconds=args.checkpoint_cost_seconds,
        restart_overhead_seconds=args.restart_overhead_seconds,
        instance_type=args.instance_type,
    )
    policies = tuple(policy_names())
    if args.policies:
        policies = tuple(p.strip() for p in args.policies.split(","))
    return Scenario(
        jobs=args.jobs,
        seed=args.seed,
        job=job,
        markets=_markets(args),
        policies=policies,
        prices=load_prices(args.prices) if args.prices else None,
    )


def _sweep(scenario: Scenario, minutes: str, as_json: bool) -> None:
    intervals = [float(m) * 60.0 for m in minutes.split(",")]
    scenario = replace(scenario, policies=("deadline-aware",))
    pairs = sweep_checkpoints(scenario, intervals)
    if as_json:
        print(
            json.dumps(
                [{"checkpoint_interval_seconds": i} | to_json([r])[0] for i, r in pairs], indent=2
            )
        )
        return
    print("| checkpoint every | band | cost vs OD | deadlines met | lost h/job | Young/Daly |")
    print("|---:|---|---:|---:|---:|---:|")
    cost = scenario.job.checkpoint_cost_seconds
    for interval, row in pairs:
        market = next(m for m in scenario.markets if m.name == row.band)
        advice = "-"
        if isinstance(market, BandMarket):
            best = young_daly_interval_seconds(cost, 3600.0 / market.interruptions_per_hour)
            advice = f"{best / 60:.0f} min"
        print(
            f"| {interval / 60:.0f} min | {row.band} | {row.cost_vs_on_demand:.1%}"
            f" | {row.deadlines_met:.1%} | {row.work_lost_hours_per_job:.2f} | {advice} |"
        )


def _export(scenario: Scenario, args: argparse.Namespace) -> None:
    market = scenario.markets[0]
    result, capacity = run_job(scenario, market, "deadline-aware", args.export_job)
    spec = backend_scenario(
        result,
        capacity,
        job_glob="*-a{attempt}",
        instance_type=scenario.job.instance_type,
        time_scale=args.time_scale,
    )
    Path(args.export_scenario).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    print(f"job {args.export_job} of market {market.name}, deadline-aware policy:")
    for line in decision_lines(result, time_scale=args.time_scale):
        print("  " + line)
    print(f"scenario with {len(spec['events'])} event(s) written to {args.export_scenario}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; the exit status.

    :param argv: the arguments (sys.argv[1:] by default).
    """
    args = _parser().parse_args(argv)
    try:
        scenario = scenario_from(args)
    except (ValueError, TraceError, OSError) as err:
        print(f"spot-simulate: {err}", file=sys.stderr)
        return 2
    if args.export_scenario:
        _export(scenario, args)
        return 0
    if args.sweep_checkpoint_minutes:
        _sweep(scenario, args.sweep_checkpoint_minutes, args.json)
        return 0
    started = time.perf_counter()
    rows = simulate(scenario)
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps(to_json(rows), indent=2))
    else:
        print(format_table(rows))
        chains = len(rows) * scenario.jobs
        print(f"\n{chains} job chains simulated in {elapsed:.1f} s", file=sys.stderr)
    if args.plot:
        try:
            plot_rows(rows, args.plot)
        except PlotUnavailableError as err:
            print(f"spot-simulate: {err}", file=sys.stderr)
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
