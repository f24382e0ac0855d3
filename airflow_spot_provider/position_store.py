"""Where a follower that runs in a new process each time keeps what it logged: Variables.

Only two followers need this: a sensor in ``mode="reschedule"`` (each poke is a new process:
it keeps its chain's state under ``airflow_spot_provider.chain.<first job>``) and a trigger
re-created by a triggerer restart from the kwargs it was first created with (it keeps its
:class:`~airflow_spot_provider.position.Position` under ``airflow_spot_provider.follow.<job>``).
Everything else travels with the task: in memory in the worker, in the deferral's kwargs and
the trigger's event while deferred. A trigger that fires hands its Variable's deletion to the
next batch; a task deletes its chain's Variables when the chain ends (completed, given up, or an
API error).

These calls block: a trigger's loads, saves and deletions go in batches in a thread of the loop's
executor, one thread hop for all the triggers of the loop
(:class:`~airflow_spot_provider.watch.saver.PositionSaver`; never ``sync_to_async``, whose
re-raised ``CancelledError`` loses the triggerer's user-action message).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow_spot_provider.position import Position
from airflow_spot_provider.supervisor_calls import one_at_a_time

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "airflow_spot_provider."
FOLLOW_PREFIX = VARIABLE_PREFIX + "follow."
CHAIN_PREFIX = VARIABLE_PREFIX + "chain."
_warned = False


def _warn_once(message: str) -> None:
    """Say once per process that saved positions do not work here (lines may then repeat)."""
    global _warned  # noqa: PLW0603  (one flag per process is the point)
    if not _warned:
        _warned = True
        log.warning("%s; lines may be logged again after a restart.", message)


def load(key: str) -> dict[str, Any] | None:
    """The JSON saved under a Variable key, if any.

    :param key: the Variable's key.
    """
    from airflow.sdk import Variable

    try:
        raw = one_at_a_time(Variable.get, key, default=None)
        return dict(json.loads(raw)) if raw else None
    except Exception as error:  # a position is a nicety: never fail a task over it
        _warn_once(f"Could not read Variable {key}: {error}")
        return None


def save(key: str, data: dict[str, Any]) -> None:
    """Save JSON under a Variable key.

    :param key: the Variable's key.
    :param data: plain JSON.
    """
    from airflow.sdk import Variable

    try:
        one_at_a_time(Variable.set, key, json.dumps(data))
    except Exception as error:
        _warn_once(f"Could not save Variable {key}: {error}")


def delete(key: str) -> None:
    """Delete a Variable (absent is fine).

    :param key: the Variable's key.
    """
    from airflow.sdk import Variable

    try:
        one_at_a_time(Variable.delete, key)
    except Exception as error:
        _warn_once(f"Could not delete Variable {key}: {error}")


def load_position(job_name: str) -> Position | None:
    """A trigger's saved position of a job.

    :param job_name: the job.
    """
    data = load(FOLLOW_PREFIX + job_name)
    return Position.from_json(data) if data else None


def save_position(position: Position) -> None:
    """Save a trigger's position of a job.

    :param position: the position.
    """
    save(FOLLOW_PREFIX + position.job_name, position.to_json())


def delete_position(job_name: str) -> None:
    """Delete a trigger's saved position of a job.

    :param job_name: the job.
    """
    delete(FOLLOW_PREFIX + job_name)
