"""The spot market's seeded model, scenarios, the admin API's refusals and the configuration."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_spot_provider.emulator import Durations, EmulatorConfig, InstanceMarket
from airflow_spot_provider.emulator.admin import AdminApiError, AdminClient
from airflow_spot_provider.emulator.jobs import NO_CAPACITY_MESSAGE, STATUS_MESSAGES
from airflow_spot_provider.emulator.market import SpotMarket
from airflow_spot_provider.emulator.scenario import Scenario, ScenarioError, parse_events
from airflow_spot_provider.emulator.testing import (
    secondary_statuses,
    synthetic_request,
    wait_for_job,
    wait_for_secondary,
)
from airflow_spot_provider.lifecycle import SecondaryStatus as S


def _market(seed: int, tmp_path: Path) -> SpotMarket:
    flaky = InstanceMarket(
        interruption_rate_per_hour=7200, capacity_availability=0.5, mean_capacity_wait_seconds=3
    )
    config = EmulatorConfig(data_dir=tmp_path, seed=seed, markets={"ml.m5.large": flaky})
    return SpotMarket(config, Scenario())


def test_same_seed_same_market_events(tmp_path: Path) -> None:
    def draws(seed: int) -> list[tuple[float, float]]:
        market = _market(seed, tmp_path)
        # Asked in a different order each time: the draws do not depend on it.
        keys = [(f"job-{j}", a) for j in range(20) for a in (1, 2, 3)]
        for key in reversed(keys):
            market.plan(*key, "ml.m5.large")
        return [
            (p.capacity_delay, p.interrupt_after)
            for p in (market.plan(j, a, "ml.m5.large") for j, a in keys)
        ]

    first, again, other = draws(7), draws(7), draws(8)
    assert first == again
    assert first != other
    assert any(delay > 0 for delay, _ in first) and any(delay == 0 for delay, _ in first)
    # 7200 interruptions per hour: about one every half training second.
    mean_after = sum(after for _, after in first) / len(first)
    assert 0.2 < mean_after < 1.0


def test_scenario_validation() -> None:
    assert parse_events({"events": []}, 0.0) == []
    bad_events: list[Any] = [
        [{"explode": {"job": "x"}}],
        [{"interrupt": {"job": "x"}}],
        [{"interrupt": {"job": "x", "at_training_second": -1}}],
        [{"no_capacity": {"instance_type": "ml.*", "from": 5, "until": 1}}],
        [{"no_capacity": {"instance_type": "ml.*", "on_demand": "yes"}}],
        [{"throttle": {"operation": "ListTrainingJobs", "rate": 1, "count": 2}}],
        [{"fail_start": {"job": "x", "start": 0}}],
        [{"interrupt": {}, "extra": {}}],
        "not a list",
    ]
    for spec in bad_events:
        with pytest.raises(ScenarioError):
            parse_events(spec, 0.0)


def test_scripted_capacity_gap(sm: Any, bucket: str, job_name: str, admin: AdminClient) -> None:
    instance_type = "ml.g5.2xlarge"
    gap_ends = time.time() + 0.6  # at the earliest: the scenario's clock starts after this
    admin.load_scenario([{"no_capacity": {"instance_type": "ml.g5.*", "from": 0, "until": 0.6}}])
    sm.create_training_job(
        **synthetic_request(job_name, bucket, instance_type=instance_type, train_seconds=0.1)
    )
    final = wait_for_job(sm, job_name)
    transitions = final["SecondaryStatusTransitions"]
    assert secondary_statuses(final)[:2] == [S.STARTING, S.DOWNLOADING]
    # Starting lasted until capacity came back (however late the job was created in the gap).
    assert transitions[0]["EndTime"].timestamp() >= gap_ends


@pytest.mark.parametrize("on_demand_too", [False, True])
def test_a_capacity_gap_takes_spot_capacity_only_unless_it_says_on_demand(
    sm: Any, bucket: str, job_name: str, admin: AdminClient, on_demand_too: bool
) -> None:
    # On AWS on-demand capacity is a pool of its own: a spot gap does not refuse on-demand jobs.
    instance_type = "ml.r5.2xlarge"
    gap = {"instance_type": instance_type, "from": 0, "until": 30}
    admin.load_scenario([{"no_capacity": gap | ({"on_demand": True} if on_demand_too else {})}])
    spot_name = f"{job_name}-s"
    sm.create_training_job(**synthetic_request(spot_name, bucket, instance_type=instance_type))
    sm.create_training_job(
        **synthetic_request(job_name, bucket, spot=False, instance_type=instance_type)
    )
    final = wait_for_job(sm, job_name)
    spot = sm.describe_training_job(TrainingJobName=spot_name)
    sm.stop_training_job(TrainingJobName=spot_name)
    assert spot["SecondaryStatus"] == S.STARTING  # spot waits for its capacity either way
    if on_demand_too:
        assert final["TrainingJobStatus"] == "Failed"
        assert final["FailureReason"].startswith("CapacityError:")
    else:
        assert final["TrainingJobStatus"] == "Completed"
        assert secondary_statuses(final)[:2] == [S.STARTING, S.DOWNLOADING]


def test_admin_refusals(sm: Any, bucket: str, job_name: str, admin: AdminClient) -> None:
    with pytest.raises(AdminApiError) as raised:
        admin.interrupt("no-such-job")
    assert raised.value.status == 404
    with pytest.raises(AdminApiError) as raised:
        admin.load_scenario([{"interrupt": {"job": "x"}}])
    assert raised.value.status == 400 and "at_training_second" in raised.value.message
    with pytest.raises(AdminApiError) as raised:
        admin.set_capacity("m5.large", False)
    assert raised.value.status == 400

    admin.set_capacity("ml.p4d.24xlarge", False)
    try:
        request = synthetic_request(job_name, bucket, instance_type="ml.p4d.24xlarge")
        sm.create_training_job(**request)
        with pytest.raises(AdminApiError) as raised:
            admin.interrupt(job_name)  # still Starting: no instances to take away
        assert raised.value.status == 409
        sm.stop_training_job(TrainingJobName=job_name)
        wait_for_job(sm, job_name)
    finally:
        admin.set_capacity("ml.p4d.24xlarge", None)
    with pytest.raises(AdminApiError) as raised:
        admin.interrupt(job_name)
    assert raised.value.status == 409  # ended
    health = admin.health()
    assert health["status"] == "ok" and health["jobs"] >= 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 70000},
        {"tick_seconds": 0},
        {"region": "moon-1"},
        {"account": "12"},
        {"quotas": {"ml.m5.large": -1}},
        {"throttle_rates": {"ListTrainingJobs": 0}},
        {"durations": "fast"},
    ],
)
def test_config_is_validated(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        EmulatorConfig(data_dir=tmp_path, **kwargs)


def test_durations_and_markets_are_validated() -> None:
    with pytest.raises(ValueError, match="starting_seconds"):
        Durations(starting_seconds=-1)
    with pytest.raises(ValueError, match="spot_discount"):
        InstanceMarket(spot_discount=1.5)
    assert InstanceMarket(on_demand_price=2.0, spot_discount=0.75).spot_price == 0.5


def _wait_until(sm: Any, name: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        described: dict[str, Any] = sm.describe_training_job(TrainingJobName=name)
        if check(described):
            return described
        assert time.monotonic() < deadline, f"never true of {name}: {described}"
        time.sleep(0.02)


def _waits_for_capacity(described: dict[str, Any], starting: int) -> bool:
    """Whether the ``starting``-th Starting is the current phase and tells a capacity wait."""
    transitions = described["SecondaryStatusTransitions"]
    starts = [t for t in transitions if t["Status"] == S.STARTING]
    return (
        len(starts) == starting
        and transitions[-1] is starts[-1]
        and starts[-1]["StatusMessage"] == NO_CAPACITY_MESSAGE
    )


def test_each_starting_tells_its_wait_for_capacity(
    sm: Any, bucket: str, job_name: str, admin: AdminClient
) -> None:
    instance_type = "ml.g5.xlarge"
    admin.set_capacity(instance_type, False)
    try:
        request = synthetic_request(
            job_name,
            bucket,
            instance_type=instance_type,
            train_seconds=30,
            RetryStrategy={"MaximumRetryAttempts": 1},
        )
        sm.create_training_job(**request)
        _wait_until(sm, job_name, lambda d: _waits_for_capacity(d, starting=1))
        admin.set_capacity(instance_type, True)
        wait_for_secondary(sm, job_name, S.TRAINING)
        # An internal error is retried from Starting: a second Starting, short of capacity too.
        admin.set_capacity(instance_type, False)
        admin.fail(job_name)
        _wait_until(sm, job_name, lambda d: _waits_for_capacity(d, starting=2))
        sm.stop_training_job(TrainingJobName=job_name)
        final = wait_for_job(sm, job_name)
    finally:
        admin.set_capacity(instance_type, None)

    shown = [(t["Status"], t["StatusMessage"]) for t in final["SecondaryStatusTransitions"]]
    assert shown == [
        (S.STARTING, NO_CAPACITY_MESSAGE),  # a message on the transition, not a new one
        (S.DOWNLOADING, STATUS_MESSAGES[S.DOWNLOADING]),
        (S.TRAINING, STATUS_MESSAGES[S.TRAINING]),
        (S.STARTING, NO_CAPACITY_MESSAGE),
        (S.STOPPING, STATUS_MESSAGES[S.STOPPING]),
        (S.STOPPED, STATUS_MESSAGES[S.STOPPED]),
    ]


def test_an_armed_gap_cuts_capacity_in_the_step_of_the_interruption(
    sm: Any, bucket: str, job_name: str, admin: AdminClient
) -> None:
    # What CapacityGap arms: no watcher, however late, can let the restart find capacity.
    instance_type = "ml.m4.xlarge"  # no other test of this backend uses it
    admin.set_capacity(instance_type, False, after_interruption_of=f"{job_name}*")
    try:
        request = synthetic_request(job_name, bucket, instance_type=instance_type, train_seconds=30)
        sm.create_training_job(**request)  # armed is not cut: it gets its instances
        wait_for_secondary(sm, job_name, S.TRAINING)
        since = admin.events()[-1]["seq"]
        admin.interrupt(job_name)
        wait_for_secondary(sm, job_name, S.INTERRUPTED)
        events = [e for e in admin.events(since=since) if e["kind"] in ("interrupt", "capacity")]
        assert [(e["kind"], e.get("available")) for e in events[:2]] == [
            ("interrupt", None),
            ("capacity", False),
        ]
        assert events[1]["seq"] == events[0]["seq"] + 1  # the same step
        assert admin.health()["capacity_overrides"] == {instance_type: False}
        time.sleep(1.0)  # well past the restart delay: still waiting for capacity
        assert secondary_statuses(sm.describe_training_job(TrainingJobName=job_name))[-1] == (
            S.INTERRUPTED
        )
        admin.set_capacity(instance_type, None)  # back: the job trains again
        wait_for_secondary(sm, job_name, S.TRAINING)
        sm.stop_training_job(TrainingJobName=job_name)
        wait_for_job(sm, job_name)
    finally:
        admin.set_capacity(instance_type, None)
    assert instance_type not in admin.health()["capacity_overrides"]


def test_an_armed_gap_is_refused_unless_well_formed(admin: AdminClient) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"available": True, "after_interruption_of": "x*"}, "available=True: must be false"),
        ({"available": None, "after_interruption_of": "x*"}, "available=None: must be false"),
        ({"available": False, "after_interruption_of": ""}, "after_interruption_of='': must be"),
        ({"available": False, "after_interruption_of": 7}, "after_interruption_of=7: must be"),
        (
            {"available": False, "after_interruption_of": "j" * 5000},
            "after_interruption_of='jjjjjjjj",
        ),
    ]
    for body, message in bad:
        with pytest.raises(AdminApiError) as raised:
            admin._call("POST", "/capacity", {"instance_type": "ml.m4.2xlarge", **body})
        assert raised.value.status == 400, body
        assert message in raised.value.message, raised.value.message
        assert len(raised.value.message) < 300  # the value is shown clipped
    assert "ml.m4.2xlarge" not in admin.health()["capacity_overrides"]
