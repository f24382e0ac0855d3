"""The simulated spot market: capacity, interruptions and prices per instance type.

Three sources decide, in this order of precedence:

1. live overrides from the admin API (capacity on or off per type; interrupting a job);
2. the deterministic :class:`~airflow_spot_provider.emulator.scenario.Scenario`;
3. the seeded random model of :class:`~airflow_spot_provider.emulator.config.InstanceMarket`.

The random model draws per (seed, job, attempt) rather than from one shared stream, so that the
same seed gives the same events whatever the order in which jobs happen to be ticked.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from types import MappingProxyType

from airflow_spot_provider.emulator.config import EmulatorConfig, InstanceMarket
from airflow_spot_provider.emulator.scenario import Scenario

# On-demand USD/hour of SageMaker training in us-east-1 (rounded, for illustration only) and a
# typical spot discount. Only the ratio matters: it sets BillableTimeInSeconds. The other market
# parameters (interruption rate, capacity availability) come from the default market.
BUILTIN_PRICES: MappingProxyType[str, tuple[float, float]] = MappingProxyType(
    {
        "ml.m4.xlarge": (0.24, 0.7),
        "ml.m5.large": (0.115, 0.7),
        "ml.m5.xlarge": (0.23, 0.7),
        "ml.m5.2xlarge": (0.461, 0.7),
        "ml.m5.4xlarge": (0.922, 0.7),
        "ml.c5.xlarge": (0.204, 0.7),
        "ml.c5.2xlarge": (0.408, 0.7),
        "ml.c5.4xlarge": (0.816, 0.7),
        "ml.g4dn.xlarge": (0.736, 0.68),
        "ml.g4dn.2xlarge": (0.94, 0.68),
        "ml.g5.xlarge": (1.408, 0.66),
        "ml.g5.2xlarge": (1.515, 0.66),
        "ml.p3.2xlarge": (3.825, 0.7),
        "ml.p3.8xlarge": (14.688, 0.7),
        "ml.p4d.24xlarge": (37.688, 0.6),
    }
)


@dataclass(frozen=True)
class AttemptPlan:
    """What the random model holds for one attempt of one job.

    :param capacity_delay: extra seconds before capacity shows up (0 when it is there).
    :param interrupt_after: training seconds after which the attempt is interrupted (inf: never).
    """

    capacity_delay: float
    interrupt_after: float


class SpotMarket:
    """Capacity and interruption decisions, asked by the job state machine at every tick.

    :param config: the emulator configuration (seed, markets, default market).
    :param scenario: the scripted events.
    """

    def __init__(self, config: EmulatorConfig, scenario: Scenario) -> None:
        self._config = config
        self.scenario = scenario
        self._capacity_override: dict[str, bool] = {}
        self._armed: dict[str, str] = {}  # instance type -> glob of the jobs that cut it
        self._cache: dict[str, InstanceMarket] = {}
        self._plans: dict[str, dict[int, AttemptPlan]] = {}  # job -> attempt -> draw

    def market(self, instance_type: str) -> InstanceMarket:
        """The market of an instance type: its own from the config, else the default market
        with the built-in price and discount of the type, if it has some.

        :param instance_type: e.g. ``ml.m5.large``.
        """
        market = self._cache.get(instance_type)
        if market is None:
            market = self._config.markets.get(instance_type)
            if market is None:
                market = self._config.market_default
                if instance_type in BUILTIN_PRICES:
                    price, discount = BUILTIN_PRICES[instance_type]
                    market = replace(market, on_demand_price=price, spot_discount=discount)
            self._cache[instance_type] = market
        return market

    def price_ratio(self, instance_type: str) -> float:
        """Spot price over on-demand price (what ``BillableTimeInSeconds`` scales by).

        :param instance_type: e.g. ``ml.m5.large``.
        """
        market = self.market(instance_type)
        return market.spot_price / market.on_demand_price

    def set_capacity(self, instance_type: str, available: bool | None) -> None:
        """Force capacity on or off for a type; None gives the decision back to the models.

        Either also disarms a gap armed by :meth:`arm_gap`.

        :param instance_type: e.g. ``ml.m5.large``.
        :param available: the forced state, or None.
        """
        self._armed.pop(instance_type, None)
        if available is None:
            self._capacity_override.pop(instance_type, None)
        else:
            self._capacity_override[instance_type] = available

    def arm_gap(self, instance_type: str, job_glob: str) -> None:
        """Take a type's capacity away (as ``set_capacity(type, False)``) at the moment a job
        matching ``job_glob`` is interrupted, in the same step as the interruption.

        A watcher that took it away on seeing the interruption could come later than the
        restart on a loaded machine; armed here, the gap cannot miss it.

        :param instance_type: e.g. ``ml.m5.large``.
        :param job_glob: the jobs whose interruption cuts capacity.
        """
        self._armed[instance_type] = job_glob

    def interrupted(self, job: str, instance_type: str) -> bool:
        """Note a job's interruption: fires a gap armed for it. Returns whether one fired.

        :param job: the job name.
        :param instance_type: the job's instance type.
        """
        glob = self._armed.get(instance_type)
        if glob is None or not fnmatchcase(job, glob):
            return False
        self.set_capacity(instance_type, False)
        return True

    def capacity_overrides(self) -> dict[str, bool]:
        """The live overrides in force."""
        return dict(self._capacity_override)

    def capacity_available(self, instance_type: str, now: float, *, spot: bool = True) -> bool:
        """Whether instances of this type can be had now (before the random per-job delay).

        The admin override takes both pools away (or gives them back); a scenario's
        ``no_capacity`` window takes only spot's unless it says ``on_demand``.

        :param instance_type: e.g. ``ml.m5.large``.
        :param now: epoch seconds.
        :param spot: asked for a spot job (else for an on-demand one).
        """
        forced = self._capacity_override.get(instance_type)
        if forced is not None:
            return forced
        return not self.scenario.no_capacity(instance_type, now, spot=spot)

    def plan(self, job: str, attempt: int, instance_type: str) -> AttemptPlan:
        """The random model's draw for one attempt (memoised; the same for the same seed).

        :param job: the job name.
        :param attempt: the start number (1-based); 0 for the wait before the first start.
        :param instance_type: the job's instance type.
        """
        plans = self._plans.setdefault(job, {})
        plan = plans.get(attempt)
        if plan is None:
            market = self.market(instance_type)
            rng = random.Random(f"{self._config.seed}:{job}:{attempt}")
            delay = 0.0
            if rng.random() >= market.capacity_availability:
                delay = rng.expovariate(1 / max(market.mean_capacity_wait_seconds, 1e-9))
            rate = market.interruption_rate_per_hour / 3600
            after = rng.expovariate(rate) if rate > 0 else math.inf
            plan = plans[attempt] = AttemptPlan(capacity_delay=delay, interrupt_after=after)
        return plan

    def forget(self, job: str) -> None:
        """Drop the memoised draws of a finished job.

        :param job: the job name.
        """
        self._plans.pop(job, None)

    def should_interrupt(
        self, job: str, attempt: int, instance_type: str, training_elapsed: float
    ) -> bool:
        """Whether a spot job in its Training phase is interrupted now.

        :param job: the job name.
        :param attempt: the start number (1-based).
        :param instance_type: the job's instance type.
        :param training_elapsed: seconds trained in this attempt.
        """
        if self.scenario.interrupt_due(job, attempt, training_elapsed):
            return True
        return training_elapsed >= self.plan(job, attempt, instance_type).interrupt_after
