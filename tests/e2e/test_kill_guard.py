"""A trigger cancelled "by user action" stops its job only if a user really ended the task.

apache/airflow#73454: a triggerer whose heartbeat was late cancels, with the user-action marker,
the triggers another triggerer took over; the task is still deferred then. Real Airflow: a task
instance row from a ``dag.test()`` run, its state set as the scenario needs, read back by the
trigger through the in-process supervisor's comms and the Execution API.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.jobs.triggerer_job_runner import _USER_ACTION_CANCEL_MSG
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
from airflow.utils.state import TaskInstanceState
from sqlalchemy import select, update

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.lifecycle import TrainingJobStatus
from airflow_spot_provider.triggers.kill_guard import decide, kill_verdict
from tests.conftest import E2E_DAGS_FOLDER
from tests.e2e.test_trigger import (
    _wait_until,
    create_job,
    run_like_the_triggerer,
    supervisor_comms,
    trigger_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def task_row(emulator: SpotEmulator) -> tuple[str, str, str]:
    """A real task instance row (dag_id, run_id, task_id): a run whose request is refused.

    :param emulator: the backend (the run never reaches it: the empty config is refused first).
    """
    dag = DagBag(dag_folder=str(E2E_DAGS_FOLDER)).get_dag("e2e_worker_lost")
    assert dag is not None
    conf = {"config": {}, "max_run": 60, "max_wait": 60, "name": "refused"}
    run = dag.test(run_conf=conf, logical_date=datetime.now(UTC))
    return run.dag_id, run.run_id, "train"


def _set_state(row: tuple[str, str, str], state: TaskInstanceState | None) -> Any:
    """Set the row's state as a user (or the scheduler) would; the row, detached.

    :param row: dag_id, run_id, task_id.
    :param state: the new state.
    """
    dag_id, run_id, task_id = row
    where = (TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
    with create_session() as session:
        session.execute(
            update(TaskInstance).where(*where, TaskInstance.task_id == task_id).values(state=state)
        )
    with create_session() as session:
        ti = session.scalar(select(TaskInstance).where(*where, TaskInstance.task_id == task_id))
        assert ti is not None
        session.expunge(ti)
        return ti


def _status(sm: Any, name: str) -> str:
    return str(sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"])


def test_taken_over_trigger_leaves_the_job_running_until_a_user_ends_the_task(
    emulator: SpotEmulator, sm: Any, name: str, task_row: tuple[str, str, str]
) -> None:
    create_job(sm, name, train_seconds=60.0)
    ti = _set_state(task_row, TaskInstanceState.DEFERRED)  # followed by another triggerer

    async def cancel_as_the_late_triggerer_does() -> None:
        trigger = trigger_for(name)
        trigger.task_instance = ti
        task = asyncio.ensure_future(run_like_the_triggerer(trigger))
        await asyncio.sleep(2.0)  # following
        task.cancel(msg=_USER_ACTION_CANCEL_MSG)
        with pytest.raises(asyncio.CancelledError):
            await task  # on_kill has decided and returned

    with supervisor_comms():
        asyncio.run(cancel_as_the_late_triggerer_does())
        # on_kill has returned, after any stop it sent: the status would show it already.
        assert _status(sm, name) == TrainingJobStatus.IN_PROGRESS

        # Then the user marks the task failed: the new owner's on_kill stops the job.
        trigger = trigger_for(name)
        trigger.task_instance = _set_state(task_row, TaskInstanceState.FAILED)
        asyncio.run(trigger.on_kill())
    _wait_until(lambda: _status(sm, name) == TrainingJobStatus.STOPPED)


@pytest.mark.parametrize(
    ("state", "stop"),
    [
        (TaskInstanceState.DEFERRED, False),
        (TaskInstanceState.FAILED, True),  # mark failed
        (TaskInstanceState.SUCCESS, True),  # mark success
        (None, True),  # cleared
        (TaskInstanceState.RESTARTING, True),
        (TaskInstanceState.SCHEDULED, True),  # the cleared task's new try, on a new chain
    ],
)
def test_states_read_from_airflow_decide_the_stop(
    emulator: SpotEmulator, task_row: tuple[str, str, str], state: Any, stop: bool
) -> None:
    ti = _set_state(task_row, state)
    with supervisor_comms():
        verdict = asyncio.run(kill_verdict(ti))
    assert verdict == decide(None if state is None else state.value)
    assert verdict.stop is stop, verdict.reason


def test_unreadable_state_keeps_stopping() -> None:
    class Stray:  # a run that is not in the DB: no comms in this process either
        dag_id, run_id, task_id, map_index = "nowhere", "nothing", "train", -1

    verdict = asyncio.run(kill_verdict(Stray()))
    assert verdict.stop
    assert "could not be read" in verdict.reason
    assert asyncio.run(kill_verdict(None)).stop
