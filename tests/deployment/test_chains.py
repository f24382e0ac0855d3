"""Spot chains in a real deployment, all runs at once: they share the components, not the jobs.

The batch fixture triggers every cell's DAG run before the first test; each test then acts on
its own run (kill its task, mark it failed) or waits for it, and asserts. Cells here crash no
component; the one disturbance they share is two short bursts of API throttling, which every
follower must wait out. ``test_crashes.py`` has the cells that crash a component.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from typing import Any

import pytest

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.chaos import CapacityGap
from airflow_spot_provider.lifecycle import SecondaryStatus
from tests.deployment.cells import LONG_JOB, Cell, Checks, assert_no_problems, spot_conf
from tests.deployment.conftest import cell_name
from tests.deployment.deployment import wait_for
from tests.deployment.rest import AirflowApi
from tests.deployment.task_log import error_text, repeated_provider_lines
from tests.e2e.conftest import synthetic_config

pytestmark = [pytest.mark.deployment, pytest.mark.xdist_group("deployment")]


def _instance(config: dict[str, Any], instance_type: str) -> dict[str, Any]:
    config["ResourceConfig"]["InstanceType"] = instance_type
    return config


def _start_interrupted(api: AirflowApi, backend: SpotEmulator, _: ExitStack) -> Cell:
    name = cell_name()
    backend.admin.load_scenario(
        [{"interrupt": {"job": f"{name}*", "at_training_second": 1.0, "attempt": 1}}]
    )
    conf = spot_conf(name, synthetic_config(4.0), 60, 120)
    return Cell(name, api.trigger("deploy_once_deferred", conf))


def _max_wait_starter(mode: str, instance_type: str) -> Callable[..., Cell]:
    def start(api: AirflowApi, backend: SpotEmulator, stack: ExitStack) -> Cell:
        name = cell_name()
        # Attempt 1 is interrupted, then finds no capacity until it has hit MaxWait.
        backend.admin.load_scenario(
            [{"interrupt": {"job": f"{name}-*a1", "at_training_second": 1.0}}]
        )
        stack.enter_context(CapacityGap(backend, instance_type, name))
        conf = spot_conf(name, _instance(synthetic_config(4.0), instance_type), 6, 7)
        return Cell(name, api.trigger(f"deploy_retry_{mode}", conf))

    return start


def _never_capacity_starter(dag_id: str, instance_type: str, seconds: int) -> Callable[..., Cell]:
    def start(api: AirflowApi, backend: SpotEmulator, _: ExitStack) -> Cell:
        name = cell_name()
        backend.admin.load_scenario([{"no_capacity": {"instance_type": instance_type}}])
        config = _instance(synthetic_config(1.0), instance_type)
        return Cell(name, api.trigger(dag_id, spot_conf(name, config, seconds, seconds)))

    return start


def _long_job_starter(dag_id: str, config: dict[str, Any]) -> Callable[..., Cell]:
    def start(api: AirflowApi, backend: SpotEmulator, _: ExitStack) -> Cell:
        name = cell_name()
        return Cell(name, api.trigger(dag_id, spot_conf(name, config, 900, 900)))

    return start


STARTERS: dict[str, Callable[[AirflowApi, SpotEmulator, ExitStack], Cell]] = {
    "killed_task": _long_job_starter(
        "deploy_once_worker_retried", synthetic_config(20.0, step_seconds=0.5)
    ),
    "mark_failed_deferred": _long_job_starter("deploy_once_deferred", LONG_JOB),
    "mark_failed_worker": _long_job_starter("deploy_once_worker", LONG_JOB),
    "throttled_deferred": _long_job_starter("deploy_once_deferred", synthetic_config(10.0, 0.5)),
    "throttled_worker": _long_job_starter("deploy_once_worker", synthetic_config(10.0, 0.5)),
    "interrupted": _start_interrupted,
    "max_wait_deferred": _max_wait_starter("deferred", "ml.g4dn.xlarge"),
    "max_wait_worker": _max_wait_starter("worker", "ml.g5.xlarge"),
    "exhausted": _never_capacity_starter("deploy_retry_deferred", "ml.c5.4xlarge", 2),
    # Bug 3 of issue #7, as reported: max_run = max_wait = 5, backoff 4 s, two attempts.
    "backoff": _never_capacity_starter("deploy_backoff_deferred", "ml.c5.9xlarge", 5),
    # The same with a backoff that surely outlasts the hand-back, even on a loaded machine.
    "long_backoff": _never_capacity_starter("deploy_long_backoff_deferred", "ml.c5.2xlarge", 5),
}


@pytest.fixture(scope="module")
def batch(api: AirflowApi, spot_backend: SpotEmulator) -> Iterator[dict[str, Cell]]:
    """Every cell of this module, triggered at once; on teardown, every run has ended."""
    with ExitStack() as stack:
        cells = {key: start(api, spot_backend, stack) for key, start in STARTERS.items()}
        yield cells
        for cell in cells.values():  # the crash cells that follow must find no run of ours
            with suppress(TimeoutError):
                api.wait_run(cell.run, timeout=120)


@pytest.fixture(scope="module")
def checks(api: AirflowApi, spot_backend: SpotEmulator) -> Checks:
    """The checks of every cell."""
    return Checks(api, spot_backend)


def _duplicates(checks: Checks, cell: Cell, try_number: int = 1) -> list[str]:
    return [
        p
        for p in checks.log_problems(cell, checks.jobs(cell), try_number)
        if p.startswith("logged")
    ]


# --- acting on a running task -----------------------------------------------------------------


def test_killed_task_process_is_retried_and_reattaches(
    api: AirflowApi, checks: Checks, batch: dict[str, Cell]
) -> None:
    cell = batch["killed_task"]
    wait_for(lambda: checks.jobs(cell), 180, "the job to be created", every=0.1)
    pid = api.task_instance(cell.run)["pid"]
    os.kill(pid, signal.SIGKILL)  # the task's own process, right after CreateTrainingJob
    assert api.wait_run(cell.run) == "success"
    ti = api.task_instance(cell.run)
    assert ti["try_number"] == 2, "the killed try was not retried"
    (job,) = checks.chain(cell, attempts=1)  # the retry re-attached: no second job, no call
    assert job["SecondaryStatus"] == SecondaryStatus.COMPLETED
    assert_no_problems(checks.log_problems(cell, [job], try_number=2))
    assert_no_problems(_duplicates(checks, cell, try_number=1))


@pytest.mark.parametrize("mode", ["deferred", "worker"])
def test_marking_the_task_failed_stops_its_job(
    api: AirflowApi, checks: Checks, batch: dict[str, Cell], mode: str
) -> None:
    cell = batch[f"mark_failed_{mode}"]
    checks.job_in(cell, SecondaryStatus.TRAINING)
    api.wait_task(cell.run, {"deferred" if mode == "deferred" else "running"})
    api.mark_failed(cell.run)
    checks.assert_stopped_soon(cell)
    assert api.wait_run(cell.run) == "failed"
    assert_no_problems(_duplicates(checks, cell))


@pytest.fixture(scope="module")
def throttle_bursts(checks: Checks, spot_backend: SpotEmulator, batch: dict[str, Cell]) -> int:
    """Two bursts of throttled describes and listings while the throttled cells' jobs train.

    The bursts hit every cell polling at that moment: all of them must take it in their stride.
    Returns how many calls were throttled.
    """
    for mode in ("deferred", "worker"):
        checks.job_in(batch[f"throttled_{mode}"], SecondaryStatus.TRAINING)
    since = spot_backend.admin.stats()["last_seq"]
    burst = [
        {"throttle": {"operation": "DescribeTrainingJob", "count": 20}},
        {"throttle": {"operation": "ListTrainingJobs", "count": 5}},
    ]
    for _ in range(2):
        spot_backend.admin.load_scenario(burst)
        time.sleep(3)
    return len([e for e in spot_backend.admin.events(since=since) if e["kind"] == "throttle"])


@pytest.mark.parametrize("mode", ["deferred", "worker"])
def test_throttling_bursts_during_the_wait(
    api: AirflowApi, checks: Checks, batch: dict[str, Cell], throttle_bursts: int, mode: str
) -> None:
    assert throttle_bursts > 0, "the bursts throttled no call"
    cell = batch[f"throttled_{mode}"]
    assert api.wait_run(cell.run) == "success"
    (job,) = checks.chain(cell, attempts=1)
    assert job["SecondaryStatus"] == SecondaryStatus.COMPLETED
    assert_no_problems(checks.log_problems(cell, [job], try_number=1))


# --- chains followed to their end ---------------------------------------------------------------


def test_interruption_then_completion(
    api: AirflowApi, checks: Checks, batch: dict[str, Cell]
) -> None:
    cell = batch["interrupted"]
    assert api.wait_run(cell.run) == "success"
    (job,) = checks.chain(cell, attempts=1)
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert statuses.count(SecondaryStatus.INTERRUPTED) == 1
    assert statuses[-1] == SecondaryStatus.COMPLETED
    assert (checks.resumed_step(job["TrainingJobName"]) or 0) > 0, "did not resume"
    assert_no_problems(checks.log_problems(cell, [job], try_number=1))


@pytest.mark.parametrize("mode", ["deferred", "worker"])
def test_max_wait_resubmits_and_resumes(
    api: AirflowApi, checks: Checks, batch: dict[str, Cell], mode: str
) -> None:
    cell = batch[f"max_wait_{mode}"]
    assert api.wait_run(cell.run) == "success"
    first, second = checks.chain(cell, attempts=2)
    assert first["SecondaryStatus"] == SecondaryStatus.MAX_WAIT_TIME_EXCEEDED
    assert second["SecondaryStatus"] == SecondaryStatus.COMPLETED
    assert (checks.resumed_step(second["TrainingJobName"]) or 0) > 0, "did not resume"
    assert_no_problems(checks.log_problems(cell, [first, second], try_number=1))


def test_capacity_never_returns_exhausts_the_policy(
    api: AirflowApi, checks: Checks, batch: dict[str, Cell]
) -> None:
    cell = batch["exhausted"]
    assert api.wait_run(cell.run) == "failed"
    jobs = checks.chain(cell, attempts=3)  # the policy's budget, no more
    assert {j["SecondaryStatus"] for j in jobs} == {SecondaryStatus.MAX_WAIT_TIME_EXCEEDED}
    entries = api.log(cell.run, 1)
    error = error_text(entries)
    assert "after 3 attempt(s)" in error
    assert all(j["TrainingJobName"] in error for j in jobs), "an attempt missing from the error"
    assert_no_problems(checks.log_problems(cell, jobs, try_number=1))


@pytest.mark.parametrize("cell_key", ["backoff", "long_backoff"])
def test_backoff_longer_than_the_poll_logs_nothing_twice(
    api: AirflowApi, checks: Checks, batch: dict[str, Cell], cell_key: str
) -> None:
    cell = batch[cell_key]
    assert api.wait_run(cell.run) == "failed"
    jobs = checks.chain(cell, attempts=2)
    entries = api.log(cell.run, 1)
    assert_no_problems(
        repeated_provider_lines(entries) + checks.log_problems(cell, jobs, try_number=1)
    )
