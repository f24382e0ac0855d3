"""Run a scenario: every compared policy on every market, the same market per job for all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from airflow_spot_provider.simulator.engine import BASE_TIME, ChainResult, run_chain
from airflow_spot_provider.simulator.jobs import JobModel, Price, price_of
from airflow_spot_provider.simulator.markets import BANDS, Availability, Market
from airflow_spot_provider.simulator.policies import POLICIES, ComparedPolicy
from airflow_spot_provider.simulator.report import Row, summarize

__all__ = ["Scenario", "run_job", "run_market", "simulate", "sweep_checkpoints"]


@dataclass(frozen=True)
class Scenario:
    """What to simulate. The defaults are the README's default scenario.

    :param jobs: jobs per market.
    :param seed: seeds the band markets (the same seed gives the same figures).
    :param job: the job model.
    :param markets: the markets (bands or trace columns).
    :param policies: names of the policies to compare (all by default).
    :param prices: price table overriding the built-in one.
    :param poll_seconds: the follower's poll interval while a job waits.
    """

    jobs: int = 1000
    seed: int = 1
    job: JobModel = field(default_factory=JobModel)
    markets: tuple[Market, ...] = BANDS
    policies: tuple[str, ...] = tuple(p.name for p in POLICIES)
    prices: Mapping[str, Price] | None = None
    poll_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError(f"Scenario.jobs={self.jobs!r}: must be >= 1")
        known = {p.name for p in POLICIES}
        unknown = sorted(set(self.policies) - known)
        if unknown:
            names = ", ".join(sorted(known))
            raise ValueError(f"Scenario.policies: unknown {', '.join(unknown)}; known: {names}")

    def compared(self) -> list[ComparedPolicy]:
        """The compared policies, in table order."""
        return [p for p in POLICIES if p.name in self.policies]


def _run(
    scenario: Scenario, compared: ComparedPolicy, capacity: Availability, index: int
) -> ChainResult:
    job = scenario.job
    deadline = BASE_TIME + timedelta(seconds=job.deadline_seconds)
    return run_chain(
        compared.make(job, deadline),
        job.request(spot=compared.spot),
        capacity,
        job,
        price_of(job.instance_type, scenario.prices),
        name=f"sim-{index}",
        poll_seconds=scenario.poll_seconds,
    )


def run_job(
    scenario: Scenario, market: Market, policy: str, index: int
) -> tuple[ChainResult, Availability]:
    """Run one job of a market under one policy; the result and the job's capacity timeline.

    :param scenario: the scenario.
    :param market: the market.
    :param policy: the policy's name.
    :param index: the job's index (the same job as in :func:`run_market`).
    """
    compared = next((p for p in POLICIES if p.name == policy), None)
    if compared is None:
        raise ValueError(f"unknown policy {policy!r}")
    capacity = market.availability(scenario.seed, index)
    return _run(scenario, compared, capacity, index), market.availability(scenario.seed, index)


def run_market(scenario: Scenario, market: Market) -> dict[str, list[ChainResult]]:
    """Run every policy over the scenario's jobs on one market.

    :param scenario: the scenario.
    :param market: the market.
    :return: policy name -> one result per job.
    """
    results: dict[str, list[ChainResult]] = {p.name: [] for p in scenario.compared()}
    for index in range(scenario.jobs):
        capacity = market.availability(scenario.seed, index)
        for compared in scenario.compared():
            results[compared.name].append(_run(scenario, compared, capacity, index))
    return results


def simulate(scenario: Scenario) -> list[Row]:
    """Run the scenario: one row per market and policy, markets first.

    :param scenario: the scenario.
    """
    price = price_of(scenario.job.instance_type, scenario.prices)
    on_demand_cost = scenario.job.on_demand_seconds / 3600.0 * price.on_demand_per_hour
    rows: list[Row] = []
    for market in scenario.markets:
        for name, results in run_market(scenario, market).items():
            rows.append(summarize(name, market.name, results, on_demand_cost))
    return rows


def sweep_checkpoints(
    scenario: Scenario, intervals_seconds: Sequence[float]
) -> list[tuple[float, Row]]:
    """Run the scenario once per checkpoint interval (the checkpoint cost stays the same).

    :param scenario: the scenario.
    :param intervals_seconds: the intervals to try.
    :return: (interval, row) pairs.
    """
    out: list[tuple[float, Row]] = []
    for interval in intervals_seconds:
        job = replace(scenario.job, checkpoint_interval_seconds=interval)
        for row in simulate(replace(scenario, job=job)):
            out.append((interval, row))
    return out
