"""Spot chains in a real Airflow deployment: every cell of issue #7, part A.

First the batch: every cell that crashes no component is triggered at once, before the first
test; each test then acts on its own run (kills its task, marks it failed) or waits for it, and
asserts. They share the components, not the jobs; the one disturbance they share is two short
bursts of API throttling, which every follower must wait out. Then the crash cells, once every
run of the batch has ended: a ``kill -9`` of the triggerer or the scheduler hits every run in
flight, so each crash has only the runs of its own cells in flight.

One module, so that ``--dist loadfile`` keeps the cells on one pytest worker with one deployment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from typing import Any

import pytest

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.chaos import CapacityGap
from airflow_spot_provider.lifecycle import SecondaryStatus
from tests.deployment.cells import LONG_JOB, Cell, Checks, assert_no_problems
from tests.deployment.conftest import cell_name
from tests.deployment.deployment import (
    TRIGGERER_HEALTH_CHECK_THRESHOLD,
    AirflowDeployment,
    wait_for,
)
from tests.deployment.rest import FINISHED_RUN_STATES, AirflowApi
from tests.deployment.task_log import error_text, repeated_provider_lines
from tests.e2e.conftest import synthetic_config
from tests.e2e.test_spot_training_dags import spot_conf

pytestmark = pytest.mark.deployment


def _instance(config: dict[str, Any], instance_type: str) -> dict[str, Any]:
    config["ResourceConfig"]["InstanceType"] = instance_type
    return config


def _start_interrupted(api: AirflowApi, backend: SpotEmulator, _: ExitStack) -> Cell:
    name = cell_name()
    backend.admin.load_scenario(
        [{"interrupt": {"job": f"{name}*", "at_training_second": 1.0, "attempt": 1}}]
    )
    conf = spot_conf(name, synthetic_config(8.0), 60, 120)
    return Cell(name, api.trigger("deploy_once_deferred", conf))


def _max_wait_starter(mode: str, instance_type: str) -> Callable[..., Cell]:
    def start(api: AirflowApi, backend: SpotEmulator, stack: ExitStack) -> Cell:
        name = cell_name()
        # Attempt 1 is interrupted, then finds no capacity until it has hit MaxWait.
        backend.admin.load_scenario(
            [{"interrupt": {"job": f"{name}-*a1", "at_training_second": 2.0}}]
        )
        stack.enter_context(CapacityGap(backend, instance_type, name))
        config = _instance(synthetic_config(14.0, step_seconds=0.5), instance_type)
        conf = spot_conf(name, config, max_run=18, max_wait=20)
        if mode == "group":
            return Cell(name, api.trigger("deploy_group", conf), task_id="spot.wait")
        return Cell(name, api.trigger(f"deploy_retry_{mode}", conf))

    return start


def _never_capacity_starter(dag_id: str, instance_type: str, seconds: int) -> Callable[..., Cell]:
    def start(api: AirflowApi, backend: SpotEmulator, _: ExitStack) -> Cell:
        name = cell_name()
        backend.admin.load_scenario([{"no_capacity": {"instance_type": instance_type}}])
        config = _instance(synthetic_config(1.0), instance_type)
        return Cell(name, api.trigger(dag_id, spot_conf(name, config, seconds, seconds)))

    return start


def _trigger(api: AirflowApi, dag_id: str, config: dict[str, Any]) -> Cell:
    name = cell_name()
    return Cell(name, api.trigger(dag_id, spot_conf(name, config, 900, 900)))


def _long_job_starter(dag_id: str, config: dict[str, Any]) -> Callable[..., Cell]:
    def start(api: AirflowApi, backend: SpotEmulator, _: ExitStack) -> Cell:
        return _trigger(api, dag_id, config)

    return start


class ThrottleBursts(threading.Thread):
    """Two bursts of throttled describes and listings once the throttled cells' jobs train.

    The bursts hit every cell polling at that moment: all of them must take it in their stride.
    What happened goes to the cells' notes.

    :param checks: the checks (backend access).
    :param cells: the throttled cells.
    """

    def __init__(self, checks: Checks, cells: list[Cell]) -> None:
        super().__init__(name="throttle-bursts", daemon=True)
        self.checks = checks
        self.cells = cells

    def run(self) -> None:
        """Wait for the jobs to train, throttle twice, note how many calls were refused."""
        admin = self.checks.backend.admin
        try:
            for cell in self.cells:
                self.checks.job_in(cell, SecondaryStatus.TRAINING)
            since = admin.stats()["last_seq"]
            burst = [
                {"throttle": {"operation": "DescribeTrainingJob", "count": 20}},
                # At most 3 in a row: any boto3 client with default retries (the CapacityGaps'
                # among them) rides it out.
                {"throttle": {"operation": "ListTrainingJobs", "count": 3}},
            ]
            for _ in range(2):
                admin.load_scenario(burst)
                time.sleep(3)
            refused = [e for e in admin.events(since=since) if e["kind"] == "throttle"]
            note = f"throttled {len(refused)} call(s)" if refused else "no call throttled"
        except Exception as err:  # the test reads the note and reports it
            note = f"bursts failed: {err!r}"
        for cell in self.cells:
            cell.notes.append(note)


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
    "max_wait_group": _max_wait_starter("group", "ml.p3.2xlarge"),
    # Deferrals of 10 s or more: one shorter than the executor's report of the previous process
    # exit makes Airflow's scheduler fail the task ("finished with state success, but the task
    # instance's state attribute is queued") on a loaded machine.
    "exhausted": _never_capacity_starter("deploy_retry_deferred", "ml.c5.4xlarge", 10),
    # Bug 3 of issue #7, as reported: max_run = max_wait = 5, backoff 4 s, two attempts.
    "backoff": _never_capacity_starter("deploy_backoff_deferred", "ml.c5.9xlarge", 5),
    # The same with a backoff of 45 s, which outlasts the hand-back on a loaded machine too, and
    # MaxWaits of 10 s (the spec's 5 s are exposed to the scheduler race above).
    "long_backoff": _never_capacity_starter("deploy_long_backoff_deferred", "ml.c5.2xlarge", 10),
}


@pytest.fixture(scope="module")
def batch(api: AirflowApi, spot_backend: SpotEmulator) -> Iterator[dict[str, Cell]]:
    """Every cell of this module, triggered at once; on teardown, every run has ended."""
    with ExitStack() as stack:
        cells = {key: start(api, spot_backend, stack) for key, start in STARTERS.items()}
        bursts = ThrottleBursts(
            Checks(api, spot_backend), [cells["throttled_deferred"], cells["throttled_worker"]]
        )
        bursts.start()
        yield cells
        bursts.join(timeout=60)


@pytest.fixture(scope="module")
def checks(api: AirflowApi, spot_backend: SpotEmulator, airflow: AirflowDeployment) -> Checks:
    """The checks of every cell."""
    return Checks(api, spot_backend, airflow)


def _duplicates(checks: Checks, cell: Cell, try_number: int = 1) -> list[str]:
    return [
        p
        for p in checks.log_problems(cell, checks.jobs(cell), try_number)
        if p.startswith("logged")
    ]


# --- acting on a running task -----------------------------------------------------------------


def test_killed_task_process_is_retried_and_reattaches(
    api: AirflowApi, checks: Checks, airflow: AirflowDeployment, batch: dict[str, Cell]
) -> None:
    cell = batch["killed_task"]
    wait_for(lambda: checks.jobs(cell), 180, "the job to be created", every=0.1)
    # The task's own process, right after CreateTrainingJob; its supervisor lives on.
    airflow.kill_task_process(api.task_instance(cell.run)["id"])
    assert api.wait_run(cell.run) == "success"
    ti = api.task_instance(cell.run)
    assert ti["try_number"] == 2, "the killed try was not retried"
    (job,) = checks.chain(cell, attempts=1)  # the retry re-attached: no second job, no call
    assert job["SecondaryStatus"] == SecondaryStatus.COMPLETED
    assert_no_problems(checks.log_problems(cell, [job], try_number=2))
    assert_no_problems(_duplicates(checks, cell, try_number=1))


@pytest.mark.parametrize("mode", ["deferred", "worker"])
def test_marking_the_task_failed_stops_its_job(
    api: AirflowApi,
    checks: Checks,
    batch: dict[str, Cell],
    airflow: AirflowDeployment,
    mode: str,
) -> None:
    cell = batch[f"mark_failed_{mode}"]
    checks.job_in(cell, SecondaryStatus.TRAINING)
    api.wait_task(cell.run, {"deferred" if mode == "deferred" else "running"})
    if mode == "deferred":
        # Marked failed before a triggerer runs it, a trigger is deleted unrun: no code of ours
        # runs to stop the job (README "Known limits"). The user here acts once it runs.
        wait_for(
            lambda: airflow.trigger_runners(cell.run.dag_id, cell.run.run_id),
            120,
            "a triggerer to run the trigger",
        )
    api.mark_failed(cell.run)
    checks.assert_stopped_soon(cell)
    assert api.wait_run(cell.run) == "failed"
    assert_no_problems(_duplicates(checks, cell))


@pytest.mark.parametrize("mode", ["deferred", "worker"])
def test_throttling_bursts_during_the_wait(
    api: AirflowApi, checks: Checks, batch: dict[str, Cell], mode: str
) -> None:
    cell = batch[f"throttled_{mode}"]
    (bursts,) = wait_for(lambda: cell.notes, 240, "the throttle bursts")
    assert bursts.startswith("throttled "), bursts
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


@pytest.mark.parametrize("mode", ["deferred", "worker", "group"])
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


def _check_backoff(api: AirflowApi, checks: Checks, cell: Cell) -> None:
    assert api.wait_run(cell.run) == "failed"
    jobs = checks.chain(cell, attempts=2)
    entries = api.log(cell.run, 1)
    assert_no_problems(
        repeated_provider_lines(entries) + checks.log_problems(cell, jobs, try_number=1)
    )


@pytest.mark.parametrize("cell_key", ["backoff", "long_backoff"])
def test_backoff_longer_than_the_poll_logs_nothing_twice(
    api: AirflowApi,
    checks: Checks,
    batch: dict[str, Cell],
    spot_backend: SpotEmulator,
    cell_key: str,
) -> None:
    cell = batch[cell_key]
    try:
        _check_backoff(api, checks, cell)
    except AssertionError:
        # The "backoff" cell's 5 s deferrals are the bug as reported, and exposed to Airflow's
        # own scheduler race (see STARTERS): when the scheduler says that race failed the try,
        # the cell runs once more on fresh jobs; any other failure, or a second one, stands.
        race = checks.airflow_race(cell)
        if not race:
            raise
        print(f"Airflow's scheduler race failed {cell.name}'s try, the cell runs again: {race[0]}")
        with ExitStack() as stack:
            _check_backoff(api, checks, STARTERS[cell_key](api, spot_backend, stack))


# --- crashes, one at a time -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def settled(api: AirflowApi, batch: dict[str, Cell]) -> None:
    """Every run of the batch has ended (a failed cell's run is marked failed, as a user would)."""
    for cell in batch.values():
        if api.run_state(cell.run) not in FINISHED_RUN_STATES:
            with suppress(AssertionError):
                api.mark_failed(cell.run)
        with suppress(TimeoutError):
            api.wait_run(cell.run, timeout=60)


def _deferred_while_training(api: AirflowApi, checks: Checks, cell: Cell) -> dict[str, Any]:
    checks.job_in(cell, SecondaryStatus.TRAINING)
    return api.wait_task(cell.run, {"deferred"})


def _triggerer_of(api: AirflowApi, cell: Cell) -> int | None:
    trigger = api.task_instance(cell.run).get("trigger") or {}
    triggerer: int | None = trigger.get("triggerer_id")
    return triggerer


@pytest.fixture(scope="module")
def triggerer_restart(
    api: AirflowApi, checks: Checks, airflow: AirflowDeployment, settled: None
) -> dict[str, Any]:
    """Two deferred runs whose triggerer is killed with ``kill -9`` mid-wait, then restarted."""
    cells = {
        "completes": _trigger(api, "deploy_once_deferred", synthetic_config(15.0, 0.5)),
        "marked_failed": _trigger(api, "deploy_once_deferred", LONG_JOB),
    }
    for cell in cells.values():
        _deferred_while_training(api, checks, cell)
    old = wait_for(
        lambda: _triggerer_of(api, cells["marked_failed"]), 120, "a triggerer to take the trigger"
    )
    airflow.restart("triggerer")
    return {"cells": cells, "old_triggerer": old, "restarted_at": time.monotonic()}


def test_mark_failed_right_after_a_triggerer_restart_stops_the_job(
    api: AirflowApi,
    checks: Checks,
    airflow: AirflowDeployment,
    triggerer_restart: dict[str, Any],
) -> None:
    cell = triggerer_restart["cells"]["marked_failed"]
    old = triggerer_restart["old_triggerer"]

    # The new triggerer takes the dead one's triggers after the health-check threshold.
    def taken_over() -> int | None:
        triggerer = _triggerer_of(api, cell)
        return triggerer if triggerer not in (None, old) else None

    new = wait_for(
        taken_over,
        TRIGGERER_HEALTH_CHECK_THRESHOLD + 60,
        "the new triggerer to take the trigger over",
        every=0.2,
    )
    # Assigned is not yet running: a trigger deleted before it runs runs no code of ours.
    wait_for(
        lambda: new in airflow.trigger_runners(cell.run.dag_id, cell.run.run_id),
        60,
        "the new triggerer to run the trigger",
        every=0.2,
    )
    api.mark_failed(cell.run)  # at once: the new trigger has just started
    checks.assert_stopped_soon(cell)
    assert api.wait_run(cell.run) == "failed"


def test_triggerer_killed_mid_wait_resumes_the_follow(
    api: AirflowApi, checks: Checks, triggerer_restart: dict[str, Any]
) -> None:
    cell = triggerer_restart["cells"]["completes"]
    assert api.wait_run(cell.run) == "success"
    (job,) = checks.chain(cell, attempts=1)
    assert job["SecondaryStatus"] == SecondaryStatus.COMPLETED
    assert_no_problems(checks.log_problems(cell, [job], try_number=1))


def test_scheduler_killed_mid_run_and_restarted(
    api: AirflowApi, checks: Checks, airflow: AirflowDeployment, settled: None
) -> None:
    cell = _trigger(api, "deploy_once_deferred", synthetic_config(10.0, 0.5))
    _deferred_while_training(api, checks, cell)
    airflow.kill("scheduler")
    time.sleep(2)  # the job goes on without a scheduler
    airflow.start("scheduler")
    assert api.wait_run(cell.run) == "success"
    (job,) = checks.chain(cell, attempts=1)
    assert job["SecondaryStatus"] == SecondaryStatus.COMPLETED
    assert_no_problems(checks.log_problems(cell, [job], try_number=1))
