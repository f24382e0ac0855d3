"""Whether a trigger cancelled "by user action" was really ended by a user (apache/airflow#73454).

Airflow 3.3's triggerer cancels, with the user-action marker, every trigger it runs but no longer
owns. That includes the triggers another triggerer took over while this one's heartbeat was
late: their ``on_kill`` runs although the task is still deferred and followed elsewhere. Before
stopping its job, the trigger asks Airflow for the task instance's state through the triggerer's
supervisor (``GetTaskStates``, one of the few requests the triggerer's supervisor answers).

At the moment the triggerer calls ``on_kill``, a user's action has left the task instance:

- mark failed / mark success: ``failed`` / ``success``;
- clear: ``None`` (or ``restarting``), then ``scheduled``, ``queued``, ``running`` for the new try,
  which follows a new chain (the run's ``clear_number`` is in the job names), so the old job
  must stop whatever the new try is doing.

Only ``deferred`` means that someone else (the other triggerer) carries on with this job. A task
that the other triggerer's event already resumed (``scheduled``, ``queued``, ``running`` in the
same try) has a job that ended, so stopping it is harmless; those states cannot be told apart
from a cleared task's new try (``GetTaskStates`` gives no try number), so they stop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from airflow.utils.state import TaskInstanceState

from airflow_spot_provider.supervisor_calls import one_at_a_time


@dataclass(frozen=True)
class KillVerdict:
    """Whether ``on_kill`` stops the job, and why (for the log).

    :param stop: stop the job.
    :param reason: the state read, or why none could be read.
    """

    stop: bool
    reason: str


def decide(state: str | None) -> KillVerdict:
    """The verdict for the task instance's current state.

    :param state: the state Airflow reports now (None: no state, e.g. just cleared).
    """
    if state == TaskInstanceState.DEFERRED.value:
        return KillVerdict(
            stop=False,
            reason="the task instance is still deferred: another triggerer took the trigger "
            "over (apache/airflow#73454), the job goes on",
        )
    return KillVerdict(stop=True, reason=f"the task instance is now {state or 'without a state'}")


def _state_key(task_id: str, map_index: int) -> str:
    """The key of a task instance in a ``TaskStatesResult`` run (``task_id_N`` when mapped).

    :param task_id: the task's id.
    :param map_index: its map index (negative when not mapped).
    """
    return task_id if map_index < 0 else f"{task_id}_{map_index}"


async def _ask(comms: Any, message: Any) -> Any:
    """Send one request to the supervisor; the triggerer's comms are async, others blocking.

    :param comms: ``SUPERVISOR_COMMS`` of the process.
    :param message: the request.
    """
    asend = getattr(comms, "asend", None)
    if asend is not None:
        return await asend(message)
    # A blocking send (the in-process supervisor): off the loop, keeping a cancel's message, and
    # never at the same time as another thread's (its comms are not thread-safe).
    return await asyncio.to_thread(one_at_a_time, comms.send, message)


async def kill_verdict(task_instance: Any) -> KillVerdict:
    """Read the task instance's state from Airflow and decide; stop when it cannot be read.

    :param task_instance: the trigger's ``task_instance`` (set by the triggerer; None otherwise).
    """
    if task_instance is None:
        return KillVerdict(stop=True, reason="the trigger knows no task instance to ask about")
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.comms import GetTaskStates

        index = getattr(task_instance, "map_index", None)
        map_index = -1 if index is None else int(index)
        run_id, task_id = str(task_instance.run_id), str(task_instance.task_id)
        message = GetTaskStates(
            dag_id=str(task_instance.dag_id),
            task_ids=[task_id],
            run_ids=[run_id],
            map_index=map_index if map_index >= 0 else None,
        )
        answer = await _ask(task_runner.SUPERVISOR_COMMS, message)
        state = answer.task_states.get(run_id, {}).get(_state_key(task_id, map_index))
    except Exception as error:  # old Airflow, no comms, an API error: today's behaviour
        return KillVerdict(
            stop=True, reason=f"its state could not be read ({type(error).__name__}: {error})"
        )
    return decide(None if state is None else str(getattr(state, "value", state)))
