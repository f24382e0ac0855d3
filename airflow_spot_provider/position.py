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


def load_position(job_name: str) -> FollowState | None:
    """The saved position of a job, if any.

    :param job_name: the training job.
    """
    from airflow.sdk import Variable

    try:
        raw = Variable.get(VARIABLE_PREFIX + job_name, default=None)
    except Exception as error:  # a position is a nicety: never fail a task over it
        log.debug("No saved log position for %s: %s", job_name, error)
        return None
    return FollowState.from_json(json.loads(raw)) if raw else None


def save_position(state: FollowState) -> None:
    """Save a job's position.

    :param state: what has been logged.
    """
    from airflow.sdk import Variable

    try:
        Variable.set(VARIABLE_PREFIX + state.job_name, json.dumps(state.to_json()))
    except Exception as error:
        log.debug("Could not save the log position of %s: %s", state.job_name, error)


def delete_position(job_name: str) -> None:
    """Forget a job's position once its chain has ended.

    :param job_name: the training job.
    """
    from airflow.sdk import Variable

    try:
        Variable.delete(VARIABLE_PREFIX + job_name)
    except Exception as error:
        log.debug("Could not delete the log position of %s: %s", job_name, error)


def furthest(state: FollowState, saved: FollowState | None) -> FollowState:
    """The further of two positions of the same job.

    :param state: the position at hand.
    :param saved: the saved one, if any.
    """
    if saved is not None and saved.transitions > state.transitions:
        return saved
    return state
