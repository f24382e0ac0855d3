"""Component crashes in a real deployment, one crash at a time.

These cells run after ``test_chains.py`` (whose runs have all ended by then): a ``kill -9`` of
the triggerer or the scheduler hits every run in flight, so each disturbance here has only the
runs of its own cells in flight.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.lifecycle import SecondaryStatus
from tests.deployment.cells import LONG_JOB, Cell, Checks, assert_no_problems, spot_conf
from tests.deployment.conftest import cell_name
from tests.deployment.deployment import (
    TRIGGERER_HEALTH_CHECK_THRESHOLD,
    AirflowDeployment,
    wait_for,
)
from tests.deployment.rest import AirflowApi
from tests.e2e.conftest import synthetic_config

pytestmark = [pytest.mark.deployment, pytest.mark.xdist_group("deployment")]


@pytest.fixture(scope="module")
def checks(api: AirflowApi, spot_backend: SpotEmulator) -> Checks:
    """The checks of every cell."""
    return Checks(api, spot_backend)


def _trigger(api: AirflowApi, dag_id: str, config: dict[str, Any]) -> Cell:
    name = cell_name()
    return Cell(name, api.trigger(dag_id, spot_conf(name, config, 900, 900)))


def _deferred_while_training(api: AirflowApi, checks: Checks, cell: Cell) -> dict[str, Any]:
    checks.job_in(cell, SecondaryStatus.TRAINING)
    return api.wait_task(cell.run, {"deferred"})


def _triggerer_of(api: AirflowApi, cell: Cell) -> int | None:
    trigger = api.task_instance(cell.run).get("trigger") or {}
    triggerer: int | None = trigger.get("triggerer_id")
    return triggerer


@pytest.fixture(scope="module")
def triggerer_restart(
    api: AirflowApi, checks: Checks, airflow: AirflowDeployment
) -> dict[str, Any]:
    """Two deferred runs whose triggerer is killed with ``kill -9`` mid-wait, then restarted."""
    cells = {
        "completes": _trigger(api, "deploy_once_deferred", synthetic_config(15.0, 0.5)),
        "marked_failed": _trigger(api, "deploy_once_deferred", LONG_JOB),
    }
    for cell in cells.values():
        _deferred_while_training(api, checks, cell)
    old = _triggerer_of(api, cells["marked_failed"])
    assert old is not None, "the deferred task's trigger runs in no triggerer"
    airflow.restart("triggerer")
    return {"cells": cells, "old_triggerer": old, "restarted_at": time.monotonic()}


def test_mark_failed_right_after_a_triggerer_restart_stops_the_job(
    api: AirflowApi, checks: Checks, triggerer_restart: dict[str, Any]
) -> None:
    cell = triggerer_restart["cells"]["marked_failed"]
    old = triggerer_restart["old_triggerer"]
    # The new triggerer takes the dead one's triggers after the health-check threshold.
    wait_for(
        lambda: _triggerer_of(api, cell) not in (None, old),
        TRIGGERER_HEALTH_CHECK_THRESHOLD + 60,
        "the new triggerer to take the trigger over",
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
    api: AirflowApi, checks: Checks, airflow: AirflowDeployment
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
