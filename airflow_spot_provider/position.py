"""Where a follower remembers what it has logged of a job, across processes.

A re-created trigger (triggerer restart) and a sensor in ``mode="reschedule"`` run in a new
process each time; without a saved position they would log the same transitions again. The
position lives in an Airflow Variable named after the job (job names are unique per account and
region) and is deleted when the chain ends.
"""

from __future__ import annotations

import json
import logging

from airflow_spot_provider.attempts import FollowState

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "airflow_spot_provider.follow."
_warned = False


def _warn_once(message: str) -> None:
    """Say once per process that positions do not work here (transitions may then repeat)."""
    global _warned  # noqa: PLW0603  (one flag per process is the point)
    if not _warned:
        _warned = True
        log.warning("%s; transitions may be logged again after a restart.", message)


def load_position(job_name: str) -> FollowState | None:
    """The saved position of a job, if any.

    :param job_name: the training job.
    """
    from airflow.sdk import Variable

    try:
        raw = Variable.get(VARIABLE_PREFIX + job_name, default=None)
        return FollowState.from_json(json.loads(raw)) if raw else None
    except Exception as error:  # a position is a nicety: never fail a task over it
        _warn_once(f"Could not read the saved log position of {job_name}: {error}")
        return None


def save_position(state: FollowState) -> None:
    """Save a job's position.

    :param state: what has been logged.
    """
    from airflow.sdk import Variable

    try:
        Variable.set(VARIABLE_PREFIX + state.job_name, json.dumps(state.to_json()))
    except Exception as error:
        _warn_once(f"Could not save the log position of {state.job_name}: {error}")


def delete_position(job_name: str) -> None:
    """Forget a job's position once its chain has ended.

    :param job_name: the training job.
    """
    from airflow.sdk import Variable

    try:
        Variable.delete(VARIABLE_PREFIX + job_name)
    except Exception as error:
        _warn_once(f"Could not delete the log position of {job_name}: {error}")


def furthest(state: FollowState, saved: FollowState | None) -> FollowState:
    """The further of two positions of the same job.

    :param state: the position at hand.
    :param saved: the saved one, if any.
    """
    if saved is not None and saved.transitions > state.transitions:
        return saved
    return state
